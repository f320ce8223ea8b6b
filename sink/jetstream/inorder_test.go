package jetstream_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Deliveries 1, 2, 5, 3, 4, 2, 6 (3 and 4 lost in flight and sent again,
// then a redelivery after a reconnect) come out as 1…6 once each, the gap
// read from the stream with the headers a delivery has; with and without
// direct gets.
func TestInOrderFillsGapsAndDropsRedeliveries(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "msg get", true: "direct get"}[direct], func(t *testing.T) {
			ctx := context.Background()
			_, _, js := embednatstest.Start(t)
			st, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "AUDIT", Subjects: jetstream.Subjects, AllowDirect: direct})
			if err != nil {
				t.Fatal(err)
			}
			if err := jetstream.NewPublisher(js, "AUDIT").Publish(ctx, msgs("a", "b", "c", "d", "e", "f")); err != nil {
				t.Fatal(err)
			}
			cons, err := st.CreateConsumer(ctx, natsjs.ConsumerConfig{AckPolicy: natsjs.AckExplicitPolicy})
			if err != nil {
				t.Fatal(err)
			}
			batch, err := cons.Fetch(6, natsjs.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var ds []natsjs.Msg
			for m := range batch.Messages() {
				ds = append(ds, m)
			}
			o := jetstream.InOrder{Stream: st, Name: "AUDIT", Next: 1}
			var seqs []uint64
			var dropped []int
			for _, i := range []int{1, 2, 5, 3, 4, 2, 6} {
				took, err := o.Take(ctx, ds[i-1], func(m jetstream.StreamMsg) error {
					seqs = append(seqs, m.Seq)
					// What the archive writes of it is what a delivery gives.
					d := ds[m.Seq-1]
					md, _ := d.Metadata()
					if !reflect.DeepEqual(m.Header, d.Headers()) || !m.Time.Equal(md.Timestamp) || m.Subject != d.Subject() || string(m.Data) != string(d.Data()) {
						t.Errorf("seq %d: headers %v time %v data %s; delivered %v %v %s", m.Seq, m.Header, m.Time, m.Data, d.Headers(), md.Timestamp, d.Data())
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !took {
					dropped = append(dropped, i)
				}
			}
			if !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6}) || !slices.Equal(dropped, []int{3, 4, 2}) || o.Filled != 2 {
				t.Errorf("handed on %v, dropped %v, filled %d", seqs, dropped, o.Filled)
			}
			// A gap the stream cannot fill.
			if err := st.DeleteMsg(ctx, 2); err != nil {
				t.Fatal(err)
			}
			o = jetstream.InOrder{Stream: st, Name: "AUDIT", Next: 2}
			_, err = o.Take(ctx, ds[2], func(jetstream.StreamMsg) error { return nil })
			var gone *jetstream.GoneError
			if !errors.As(err, &gone) || gone.Seq != 2 || o.Next != 2 {
				t.Errorf("err %v, next %d", err, o.Next)
			}
		})
	}
}

// A reader makes its consumer afresh at once when it is gone, and after
// fetches failed for FetchPatience in a row; timeouts are no failures.
func TestFetchFailures(t *testing.T) {
	var f jetstream.FetchFailures
	if f.Note(natsjs.ErrNoMessages) != nil || f.Note(nil) != nil {
		t.Error("a fetch that found nothing is no failure")
	}
	if f.Note(natsjs.ErrConsumerNotFound) == nil || f.Note(natsjs.ErrConsumerDeleted) == nil {
		t.Error("a consumer that is gone is not made afresh")
	}
	other := errors.New("nats: connection closed")
	if f.Note(other) != nil {
		t.Error("one failure gave up")
	}
	if f.Note(nil) != nil || f.Note(other) != nil {
		t.Error("a success did not reset the count")
	}
}
