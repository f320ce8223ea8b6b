package jetstream_test

import (
	"fmt"

	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Subjects are audit.<cloud>.<account>.<service>, one token each.
func ExampleEventSubject() {
	fmt.Println(jetstream.EventSubject("aws", "123456789012", "iam.amazonaws.com"))
	fmt.Println(jetstream.EventSubject("gcp", "my-project", "compute.googleapis.com"))
	fmt.Println(jetstream.EventSubject("azure", "0000-1111", "Microsoft.Network"))
	fmt.Println(jetstream.DeadLetterSubject("azure"))
	// Output:
	// audit.aws.123456789012.iam
	// audit.gcp.my-project.compute
	// audit.azure.0000-1111.microsoft_network
	// audit.deadletter.azure
}
