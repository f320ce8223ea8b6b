package cloudtrail

import (
	"context"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
)

// TestRestartResumesWithoutDuplicates: a daemon stopped mid back-fill
// resumes from its saved cursor in a new process (new collector, empty
// seen-set), and the stream holds every event exactly once.
func TestRestartResumesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	mod := func(c *APIConfig) { c.Backfill = 4 * time.Hour }
	f := newLookupFixture(t, 200, mod)
	evs := f.evs
	env := collectortest.NewStreamEnv(t)

	stop := env.Start(t, f.st, 0, 5*time.Second)
	collectortest.WaitFor(t, "a saved cursor", 20*time.Second, func() bool {
		cur, _ := env.Store.Load(context.Background(), "trail/000000000000/us-east-1")
		return cur != nil && env.Msgs(t, "") >= 50
	})
	stop()
	first := env.Msgs(t, "")
	if first >= uint64(len(evs)) {
		t.Fatalf("the first run read everything (%d); the restart tests nothing", first)
	}

	// A new process: a new collector on the same fake, the saved cursor.
	env.Start(t, newLookupFixtureOn(t, f, mod), 0, 5*time.Second)
	collectortest.WaitFor(t, "every event", 30*time.Second, func() bool { return env.Msgs(t, "") >= uint64(len(evs)) })
	time.Sleep(300 * time.Millisecond) // anything extra would show up now
	if got := env.Msgs(t, ""); got != uint64(len(evs)) {
		t.Fatalf("stream holds %d messages for %d events", got, len(evs))
	}
}
