package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

// fakeAWSCmd serves the local AWS fake with sample data, so that the AWS
// collectors can be tried without an account (examples/aws.yaml).
func fakeAWSCmd() *cobra.Command {
	var listen, bucket, queue string
	c := &cobra.Command{
		Use:   "fake-aws [--listen ADDR] DIR",
		Short: "Serve a local AWS fake (CloudTrail, STS, EC2, S3, SQS) with the trail data in DIR, for trying the AWS collectors",
		Long: `Serves the trail data in DIR the way AWS would: every file as an object of
the bucket (keys are paths below DIR), every CloudTrail record as a
LookupEvents event. Times are moved so that the newest record is 10 minutes
old. Any access key works; point the collectors at it with endpoint_url.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := awsfake.New(awsfake.WithListener(ln))
			defer srv.Close()
			n, err := srv.LoadDir(bucket, args[0], true)
			if err != nil {
				return err
			}
			srv.CreateQueue(queue)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "fake AWS on %s: %d LookupEvents events, bucket %s, queue %s/%s/%s\n", srv.URL, n, bucket, srv.URL, awsfake.DefaultAccount, queue)
			fmt.Fprintf(out, "try: AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo go run ./cmd/trailkeeper run --config examples/aws.yaml\n")
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:4566", "address to serve on")
	c.Flags().StringVar(&bucket, "bucket", "demo-trail", "bucket that holds DIR")
	c.Flags().StringVar(&queue, "queue", "demo-trail-events", "SQS queue to create (empty)")
	return c
}
