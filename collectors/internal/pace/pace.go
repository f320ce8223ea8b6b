// Package pace is the adaptive rate limiter of the cloud API pollers: one
// per account × region, subscription or quota, placed below the SDK's
// retry loop so that every attempt waits its turn (clouds count attempts).
package pace

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter spaces requests under a ceiling. A throttling answer halves the
// rate (down to a sixteenth of the ceiling) and pauses for the retry hint
// when there is one; every success climbs back by a twentieth of the
// ceiling.
type Limiter struct {
	ceiling rate.Limit
	lim     *rate.Limiter
	now     func() time.Time

	mu    sync.Mutex
	until time.Time // no request before this (a Retry-After)
}

// New returns a limiter at perSecond.
func New(perSecond float64) *Limiter {
	// Burst 1: requests are spaced, so no second holds more than the rate.
	return &Limiter{ceiling: rate.Limit(perSecond), lim: rate.NewLimiter(rate.Limit(perSecond), 1), now: time.Now}
}

// Wait blocks until the next request may go.
func (l *Limiter) Wait(ctx context.Context) error {
	l.mu.Lock()
	pause := l.until.Sub(l.now())
	l.mu.Unlock()
	if pause > 0 {
		t := time.NewTimer(pause)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return l.lim.Wait(ctx)
}

// Throttled slows down after a throttling answer; retryAfter is its hint
// (0: none).
func (l *Limiter) Throttled(retryAfter time.Duration) {
	l.lim.SetLimit(max(l.lim.Limit()/2, l.ceiling/16))
	if retryAfter > 0 {
		l.mu.Lock()
		l.until = l.now().Add(retryAfter)
		l.mu.Unlock()
	}
}

// Succeeded climbs back toward the ceiling.
func (l *Limiter) Succeeded() {
	if cur := l.lim.Limit(); cur < l.ceiling {
		l.lim.SetLimit(min(cur+l.ceiling/20, l.ceiling))
	}
}

// Rate is the current limit, for metrics.
func (l *Limiter) Rate() float64 { return float64(l.lim.Limit()) }
