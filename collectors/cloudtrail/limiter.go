package cloudtrail

import (
	"context"
	"errors"
	"strconv"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/trailkeeper/trailkeeper/collectors/internal/pace"
)

// throttleCodes are the error codes AWS uses for "slow down".
var throttleCodes = map[string]bool{
	"ThrottlingException": true, "Throttling": true, "TooManyRequestsException": true,
	"RequestLimitExceeded": true, "SlowDown": true, "RequestThrottled": true,
}

// awsMiddleware returns the SDK stack option that paces every attempt
// with l.
func awsMiddleware(l *pace.Limiter, onThrottle func()) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		mw := middleware.FinalizeMiddlewareFunc("trailkeeperRateLimit",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if err := l.Wait(ctx); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, err
				}
				out, md, err := next.HandleFinalize(ctx, in)
				var apiErr smithy.APIError
				if errors.As(err, &apiErr) && throttleCodes[apiErr.ErrorCode()] {
					l.Throttled(retryAfter(md))
					if onThrottle != nil {
						onThrottle()
					}
				} else if err == nil {
					l.Succeeded()
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
