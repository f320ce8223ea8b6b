//go:build chaos

package main

// The chaos test's full form: go test -tags chaos -run TestChaos -timeout 60m ./cmd/trailkeeper
var chaosForm = chaosPlan{records: 200000, kills: 50, brokerRestarts: 5, brokerKills: 5, fullDisks: 2}
