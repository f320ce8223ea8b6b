package pace

import (
	"context"
	"testing"
	"time"
)

func TestThrottledHalvesPausesAndRecovers(t *testing.T) {
	l := New(2)
	l.Throttled(0)
	if l.Rate() != 1 {
		t.Errorf("rate %v after one throttle", l.Rate())
	}
	for range 10 {
		l.Throttled(0)
	}
	if l.Rate() != 2.0/16 {
		t.Errorf("rate %v: floor is a sixteenth", l.Rate())
	}
	for range 40 {
		l.Succeeded()
	}
	if l.Rate() != 2 {
		t.Errorf("rate %v after successes", l.Rate())
	}
	l.Throttled(300 * time.Millisecond)
	start := time.Now()
	_ = l.Wait(context.Background())
	_ = l.Wait(context.Background())
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("waited %s through a 300ms Retry-After", d)
	}
}
