package config_test

import (
	"fmt"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
)

// Every problem of a file comes back at once, each with its line and path.
func ExampleParse() {
	_, err := config.Parse([]byte(`
log:
  level: loud
stream:
  replicas: lots
sources:
  - name: s3
    type: ftp
`), "trailkeeper.yaml", registry.Default)
	fmt.Println(err)
	// Output:
	// trailkeeper.yaml:3: log.level: must be debug, info, warn or error, not "loud"
	// trailkeeper.yaml:5: stream.replicas: expected a whole number, got "lots"
	// trailkeeper.yaml:8: sources[0].type: unknown source type "ftp" (one of: azure_activity_api, azure_activity_blob, cloudtrail_api, cloudtrail_s3, files, gcp_audit_api, gcp_audit_pubsub)
}
