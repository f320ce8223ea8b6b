package cloudtrail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/lease"
)

// sqsAPI is the part of the SQS client the notification reader uses.
type sqsAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// SQSCollector reads the trail files that bucket notifications announce:
// S3 event notifications sent to SQS directly or through SNS, EventBridge
// "Object Created" events, and CloudTrail's own SNS notifications.
//
// A message is deleted only when Commit says every record of its page is
// on the stream (acknowledged and synced); until then its visibility is
// extended, so a large file in flight is not handed to another reader. A
// process that dies before the delete leaves the message to come back,
// and the stream drops what it already holds. A message that is not a
// notification (poison) goes to the dead-letter subject, is counted, and
// is then deleted like any other: it is kept on the stream, not in the
// queue.
type SQSCollector struct {
	client     sqsAPI
	queueURL   string
	files      *trailFiles
	visibility time.Duration
	now        func() time.Time
	log        *slog.Logger
	nonce      string

	mu       sync.Mutex
	seq      int
	inflight *lease.Pages // receipt handles of pages not yet committed
}

func newSQSCollector(cfg *S3Config, client sqsAPI, files *trailFiles, now func() time.Time, log *slog.Logger) *SQSCollector {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := &SQSCollector{client: client, queueURL: cfg.QueueURL, files: files, visibility: cfg.Visibility,
		now: now, log: log, nonce: hex.EncodeToString(b)}
	c.inflight = &lease.Pages{Every: cfg.Visibility / 2, Extend: c.extend, OnError: func(err error) {
		c.log.Warn("could not extend an SQS message's visibility; it may be read twice", "err", err)
	}}
	return c
}

// extend renews the visibility of receipt handles.
func (c *SQSCollector) extend(ctx context.Context, handles []string) error {
	var errs []error
	for _, h := range handles {
		_, err := c.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(c.queueURL), ReceiptHandle: aws.String(h), VisibilityTimeout: int32(c.visibility / time.Second),
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Poll implements collectors.Collector. The cursor only names the page, for
// Commit: a queue has no position to resume from.
func (c *SQSCollector) Poll(ctx context.Context, cur []byte) (collectors.Page, error) {
	vis := int32(c.visibility / time.Second)
	out, err := c.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(c.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: vis,
	})
	if err != nil {
		return collectors.Page{}, fmt.Errorf("sqs receive: %w", err)
	}
	if len(out.Messages) == 0 {
		return collectors.Page{Next: cur}, nil
	}
	var page collectors.Page
	var handles []string
	for _, m := range out.Messages {
		handles = append(handles, aws.ToString(m.ReceiptHandle))
		body := aws.ToString(m.Body)
		objs, err := notifiedObjects([]byte(body))
		if err != nil {
			c.files.metrics.poison.Inc()
			c.log.Warn("SQS message is not a bucket notification; kept on the dead-letter subject", "message", aws.ToString(m.MessageId), "err", err)
			page.Records = append(page.Records, collectors.Record{Raw: []byte(body), Err: err, Origin: "sqs " + aws.ToString(m.MessageId)})
			continue
		}
		for _, o := range objs {
			k, ok := parseTrailKey(o.key)
			if !ok {
				continue // another object in the bucket
			}
			if k.Kind == kindDigest {
				rec, err := c.files.digest(ctx, k, o.bucket)
				if err != nil {
					return collectors.Page{}, err // the messages come back after their visibility
				}
				if rec != nil {
					page.Records = append(page.Records, *rec)
				}
				continue
			}
			recs, err := c.files.logFile(ctx, k, o.bucket)
			if err != nil {
				return collectors.Page{}, err
			}
			page.Records = append(page.Records, recs...)
		}
	}
	c.mu.Lock()
	c.seq++
	page.Next = fmt.Appendf(nil, `{"p":%q,"n":%d}`, c.nonce, c.seq)
	c.mu.Unlock()
	c.inflight.Hold(ctx, page.Next, handles)
	page.More = true // a full queue is drained without waiting a poll interval
	return page, nil
}

// Commit implements collectors.Committer: the page is on the stream, its
// messages are deleted.
func (c *SQSCollector) Commit(ctx context.Context, next []byte) error {
	var errs []error
	for _, h := range c.inflight.Release(next) {
		if _, err := c.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(c.queueURL), ReceiptHandle: aws.String(h)}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the visibility heartbeats of pages never committed.
func (c *SQSCollector) Close() error {
	c.inflight.ReleaseAll()
	return nil
}

type s3Object struct{ bucket, key string }

// notifiedObjects reads the objects a notification announces.
func notifiedObjects(body []byte) ([]s3Object, error) {
	var msg struct {
		// S3 event notification.
		Records []struct {
			EventSource string `json:"eventSource"`
			EventName   string `json:"eventName"`
			S3          struct {
				Bucket struct{ Name string } `json:"bucket"`
				Object struct{ Key string }  `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
		Event string `json:"Event"` // s3:TestEvent
		// SNS envelope.
		Type    string `json:"Type"`
		Message string `json:"Message"`
		// EventBridge.
		Source     string `json:"source"`
		DetailType string `json:"detail-type"`
		Detail     struct {
			Bucket struct{ Name string } `json:"bucket"`
			Object struct{ Key string }  `json:"object"`
		} `json:"detail"`
		// CloudTrail's own SNS notification.
		S3Bucket    string   `json:"s3Bucket"`
		S3ObjectKey []string `json:"s3ObjectKey"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch {
	case msg.Type == "Notification" && msg.Message != "":
		return notifiedObjects([]byte(msg.Message))
	case msg.Event == "s3:TestEvent":
		return nil, nil
	case msg.S3Bucket != "" && len(msg.S3ObjectKey) > 0:
		var out []s3Object
		for _, k := range msg.S3ObjectKey {
			out = append(out, s3Object{msg.S3Bucket, k})
		}
		return out, nil
	case msg.Source == "aws.s3" && msg.Detail.Object.Key != "":
		return []s3Object{{msg.Detail.Bucket.Name, msg.Detail.Object.Key}}, nil // EventBridge keys are not encoded
	case len(msg.Records) > 0:
		var out []s3Object
		for _, r := range msg.Records {
			if r.EventSource != "aws:s3" {
				return nil, fmt.Errorf("record from %q, not aws:s3", r.EventSource)
			}
			// S3 notifications URL-encode keys, spaces as '+'.
			key, err := url.QueryUnescape(r.S3.Object.Key)
			if err != nil {
				return nil, fmt.Errorf("object key %q: %w", r.S3.Object.Key, err)
			}
			out = append(out, s3Object{r.S3.Bucket.Name, key})
		}
		return out, nil
	}
	return nil, errors.New("not an S3, SNS, EventBridge or CloudTrail notification")
}
