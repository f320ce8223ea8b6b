package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// healthCmd is the container health check: distroless images have no
// curl, and the binary is already there.
func healthCmd() *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "health [--url URL]",
		Short: "Exit 0 when the daemon's /healthz answers 200 (for container health checks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := &http.Client{Timeout: 4 * time.Second}
			resp, err := c.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:9464/healthz", "the health endpoint")
	return cmd
}
