// Package sink defines where normalized events go.
package sink

import "context"

// Message is one thing to publish.
type Message struct {
	Subject string
	// ID is deterministic for the same input (the event's metadata.uid, or a
	// hash for dead letters); the broker drops a second message with the
	// same ID inside its duplicate window.
	ID     string
	Header map[string]string
	Data   []byte
}

// Sink publishes pages of messages.
//
// Publish returns nil only when every message is durably stored by the
// broker (a duplicate that the broker dropped counts as stored). A non-nil
// error means some messages may be stored and some not; the caller retries
// the whole page, which is safe because IDs are deterministic. Publish does
// not keep msgs after it returns. It may be called concurrently.
type Sink interface {
	Publish(ctx context.Context, msgs []Message) error
}
