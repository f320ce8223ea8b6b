package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamMsg is one stream message as a whole-stream reader sees it.
type StreamMsg struct {
	Seq     uint64
	Time    time.Time // when the stream stored it
	Subject string
	Header  nats.Header
	Data    []byte
	// Msg is the consumer's delivery, to acknowledge; nil for a message
	// read from the stream by its sequence (filling a gap).
	Msg jetstream.Msg
}

var directGetHeaders = []string{jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer,
	jetstream.SubjectHeader, "Nats-Last-Sequence", "Nats-Num-Pending"}

// GoneError is a sequence a reader needs that the stream no longer holds
// (aged out, or deleted, which the daemon's stream denies): whatever the
// reader builds cannot be complete.
type GoneError struct {
	Stream string
	Seq    uint64
	Err    error
}

func (e *GoneError) Error() string {
	return fmt.Sprintf("stream %s no longer holds sequence %d: %v", e.Stream, e.Seq, e.Err)
}

func (e *GoneError) Unwrap() error { return e.Err }

// InOrder hands on the messages of a consumer of a whole stream (no
// subject filter) in stream order, every sequence exactly once.
//
// A pull consumer loses the replies to a pull in flight when the
// connection drops; the server sends those messages again only after
// AckWait, and meanwhile delivers the ones after them. A reader that takes
// "any sequence above the last one" would skip the lost ones and drop them
// as redeliveries when they come back. InOrder instead reads a gap's
// sequences from the stream by number, in order, before the message that
// revealed it, and drops a delivery below Next as the redelivery it is.
type InOrder struct {
	Stream jetstream.Stream
	Name   string // the stream's name, for errors
	// Next is the next sequence to hand on; 0 takes the first message
	// delivered as the start.
	Next uint64
	// Filled counts the messages read from the stream to fill gaps.
	Filled uint64
}

// Take hands m on to fn, after every sequence missing before it. A
// delivery below Next is a redelivery: fn is not called, and Take returns
// (false, nil) so the caller can acknowledge it. An error from fn is
// returned as is; a sequence the stream no longer holds is a *GoneError.
// After an error, Next is the first sequence not handed on.
func (o *InOrder) Take(ctx context.Context, m jetstream.Msg, fn func(StreamMsg) error) (bool, error) {
	meta, err := m.Metadata()
	if err != nil {
		return false, fmt.Errorf("message metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	if o.Next == 0 {
		o.Next = seq
	}
	if seq < o.Next {
		return false, nil
	}
	for o.Next < seq {
		raw, err := o.Stream.GetMsg(ctx, o.Next)
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return false, &GoneError{Stream: o.Name, Seq: o.Next, Err: err}
			}
			return false, fmt.Errorf("read sequence %d of stream %s to fill a gap: %w", o.Next, o.Name, err)
		}
		// A direct get adds where the message lives; a delivery carries
		// only what was published.
		var h nats.Header
		for k, v := range raw.Header {
			if !slices.Contains(directGetHeaders, k) {
				if h == nil {
					h = nats.Header{}
				}
				h[k] = v
			}
		}
		if err := fn(StreamMsg{Seq: raw.Sequence, Time: raw.Time, Subject: raw.Subject, Header: h, Data: raw.Data}); err != nil {
			return false, err
		}
		o.Filled++
		o.Next++
	}
	if err := fn(StreamMsg{Seq: seq, Time: meta.Timestamp, Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Msg: m}); err != nil {
		return false, err
	}
	o.Next = seq + 1
	return true, nil
}

// FetchTimeout: a fetch that found nothing in its wait, which is no
// failure.
func FetchTimeout(err error) bool {
	return errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// FetchFailures tells a consumer's reader when to give up on its
// consumer and make it afresh: at once when the consumer is gone, or
// after a fetch has failed for FetchPatience in a row. The zero value is
// ready.
type FetchFailures struct{ since time.Time }

// FetchPatience is how long fetches may fail in a row.
const FetchPatience = 10 * time.Second

// Note records a fetch's outcome (nil or a timeout: it worked) and
// returns an error when the reader should make its consumer afresh.
func (f *FetchFailures) Note(err error) error {
	if err == nil || FetchTimeout(err) {
		f.since = time.Time{}
		return nil
	}
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
		return err
	}
	if f.since.IsZero() {
		f.since = time.Now()
	}
	if time.Since(f.since) > FetchPatience {
		return fmt.Errorf("fetches failing since %s: %w", f.since.Format(time.RFC3339), err)
	}
	return nil
}
