package normalize_test

import (
	"fmt"

	"github.com/trailkeeper/trailkeeper/normalize"
)

// A CloudTrail record delivered through EventBridge maps like the same
// record read from a trail's S3 file: the envelope is peeled first.
func ExampleNormalize() {
	raw := []byte(`{"detail-type":"AWS API Call via CloudTrail","source":"aws.s3","detail":` +
		`{"eventVersion":"1.09","eventTime":"2024-05-01T10:00:00Z","eventSource":"s3.amazonaws.com",` +
		`"eventName":"DeleteBucket","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.7",` +
		`"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/ops","accountId":"111122223333"},` +
		`"eventID":"8b1f0e4e-1111-2222-3333-444455556666","recipientAccountId":"111122223333"}}`)
	ev, err := normalize.Normalize(raw, normalize.FormatUnknown)
	if err != nil {
		fmt.Println(err)
		return
	}
	o := ev.OCSF
	fmt.Println(ev.UID, ev.Cloud, ev.Account, ev.Service)
	fmt.Println(o.ClassName, o.ActivityName, o.API.Operation, o.Actor.User.UID, o.SrcEndpoint.IP)
	// Output:
	// aws:8b1f0e4e-1111-2222-3333-444455556666 aws 111122223333 s3.amazonaws.com
	// API Activity Delete DeleteBucket arn:aws:iam::111122223333:user/ops 198.51.100.7
}
