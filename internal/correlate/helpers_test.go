package correlate

import "github.com/nats-io/nats.go/jetstream"

// jsStreamConfig is the part of the AUDIT stream runs are published to.
func jsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.>", "iac.>"}}
}
