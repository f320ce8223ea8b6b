package lease

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHoldExtendsUntilRelease(t *testing.T) {
	var extended atomic.Int32
	p := &Pages{Every: 20 * time.Millisecond, Extend: func(context.Context, []string) error { extended.Add(1); return nil }}
	p.Hold(context.Background(), []byte("p1"), []string{"a", "b"})
	p.Hold(context.Background(), []byte("p2"), []string{"c"})
	if p.Outstanding() != 3 {
		t.Errorf("outstanding %d", p.Outstanding())
	}
	time.Sleep(70 * time.Millisecond)
	if extended.Load() < 2 {
		t.Errorf("extended %d times", extended.Load())
	}
	if ids := p.Release([]byte("p1")); !slices.Equal(ids, []string{"a", "b"}) || p.Outstanding() != 1 {
		t.Errorf("release: %v, %d left", ids, p.Outstanding())
	}
	if p.Release([]byte("p1")) != nil {
		t.Error("released twice")
	}
	if all := p.ReleaseAll(); len(all) != 1 || p.Outstanding() != 0 {
		t.Errorf("release all: %v", all)
	}
}

func TestStopsWithThePipeline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pages{Every: time.Hour, Extend: func(context.Context, []string) error { return nil }}
	p.Hold(ctx, []byte("p"), []string{"a"})
	cancel()
	if ids := p.Release([]byte("p")); len(ids) != 1 {
		t.Errorf("ids %v", ids)
	}
}
