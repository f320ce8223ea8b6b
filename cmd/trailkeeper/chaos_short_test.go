//go:build !chaos

package main

// The chaos test's short form, in every `go test ./...` (and so in CI): a
// small corpus and a few of each failure. `go test -tags chaos -run
// TestChaos ./cmd/trailkeeper` runs the full form (chaos_full_test.go).
var chaosForm = chaosPlan{records: 20000, kills: 6, brokerRestarts: 1, brokerKills: 1, fullDisks: 1}
