package cloudtrail

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/time/rate"
)

// limiter paces the requests of one account × region. It sits below the
// SDK's retry loop, so every attempt, retries included, waits its turn:
// what AWS counts is attempts. It is adaptive: a throttling error halves
// the rate (down to a sixteenth of the ceiling) and pauses for the retry
// hint when the response has one; every success climbs back by a
// twentieth of the ceiling.
type limiter struct {
	ceiling rate.Limit
	lim     *rate.Limiter
	now     func() time.Time

	mu    sync.Mutex
	until time.Time // no request before this (a Retry-After)
}

func newLimiter(perSecond float64) *limiter {
	// Burst 1: requests are spaced, so no second holds more than the rate.
	return &limiter{ceiling: rate.Limit(perSecond), lim: rate.NewLimiter(rate.Limit(perSecond), 1), now: time.Now}
}

// wait blocks until the next request may go.
func (l *limiter) wait(ctx context.Context) error {
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

func (l *limiter) throttled(retryAfter time.Duration) {
	l.lim.SetLimit(max(l.lim.Limit()/2, l.ceiling/16))
	if retryAfter > 0 {
		l.mu.Lock()
		l.until = l.now().Add(retryAfter)
		l.mu.Unlock()
	}
}

func (l *limiter) succeeded() {
	if cur := l.lim.Limit(); cur < l.ceiling {
		l.lim.SetLimit(min(cur+l.ceiling/20, l.ceiling))
	}
}

// rate is the current limit, for tests and metrics.
func (l *limiter) rate() float64 { return float64(l.lim.Limit()) }

// throttleCodes are the error codes AWS uses for "slow down".
var throttleCodes = map[string]bool{
	"ThrottlingException": true, "Throttling": true, "TooManyRequestsException": true,
	"RequestLimitExceeded": true, "SlowDown": true, "RequestThrottled": true,
}

// middleware returns the SDK stack option that paces every attempt.
func (l *limiter) middleware(onThrottle func()) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		mw := middleware.FinalizeMiddlewareFunc("trailkeeperRateLimit",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if err := l.wait(ctx); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, err
				}
				out, md, err := next.HandleFinalize(ctx, in)
				var apiErr smithy.APIError
				if errors.As(err, &apiErr) && throttleCodes[apiErr.ErrorCode()] {
					l.throttled(retryAfter(md))
					if onThrottle != nil {
						onThrottle()
					}
				} else if err == nil {
					l.succeeded()
				}
				return out, md, err
			})
		// Inside the retry loop (once per attempt), before signing (so a
		// long wait does not age the signature).
		if err := st.Finalize.Insert(mw, "Signing", middleware.Before); err == nil {
			return nil
		}
		return st.Finalize.Add(mw, middleware.After)
	}
}

// retryAfter reads a Retry-After header (seconds), if the response had one.
func retryAfter(md middleware.Metadata) time.Duration {
	resp, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if !ok || resp == nil {
		return 0
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
