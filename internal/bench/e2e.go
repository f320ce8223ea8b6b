package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// endToEnd runs the daemon's parts together, as the daemon wires them:
// files collector → normalize → correlate → JetStream (acked) → archiver
// and index, and times until every record is published, archived and
// indexed; then it checks that each is there once.
func endToEnd(ctx context.Context, r *Report, set Settings, corpus Corpus, runs *correlate.Registry, env *natsEnv) error {
	const stream = "AUDIT"
	// Run records are on the stream already (iac.runs.*): the events come after.
	s, err := env.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	base := info.State.LastSeq
	want := base + uint64(set.Records)

	fcfg := files.NewConfig()
	fcfg.Path, fcfg.PageSize, fcfg.Settle = config.FilePath(corpus.Dir), 1000, 0
	p := pipeline.New(pipeline.Settings{
		Source: "bench", Stream: collectors.Stream{Key: "bench", Collector: files.New(fcfg, collectors.Settings{})},
		Store: checkpoint.NewMemory(), Sink: jetstream.NewPublisher(env.js, stream),
		Correlator:   &correlate.Correlator{Registry: runs},
		PollInterval: 10 * time.Millisecond, CheckpointDelay: 0, RetryInitial: 100 * time.Millisecond, RetryMax: time.Second,
		ShutdownTimeout: 10 * time.Second,
	})
	ixPath := filepath.Join(set.WorkDir, "index.db")
	if err := index.Remove(ixPath); err != nil {
		return err
	}
	ix, err := index.Open(ctx, ixPath)
	if err != nil {
		return err
	}
	defer ix.Close()
	var store worm.Store
	archiveDir := filepath.Join(set.WorkDir, "archive")
	var arch *worm.Archiver
	if set.Archive {
		signer, err := benchSigner()
		if err != nil {
			return err
		}
		os.RemoveAll(archiveDir)
		if err := os.MkdirAll(archiveDir, 0o755); err != nil {
			return err
		}
		store = worm.DirStore{Root: archiveDir}
		if arch, err = worm.NewArchiver(ctx, worm.Settings{JS: env.js, Stream: stream, Store: store, Signer: signer, Origin: signer.Name(),
			SegmentBytes: set.SegmentBytes, SegmentAge: set.SegmentAge}); err != nil {
			return err
		}
	}
	follower := &index.Follower{Index: ix, JS: env.js, Stream: stream, Archive: store}
	var tail *worm.Tail
	if store != nil {
		tail = &worm.Tail{Store: store}
	}

	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	start := time.Now()
	wg.Go(func() { errs <- p.Run(rctx) })
	wg.Go(func() { errs <- follower.Run(rctx) })
	if arch != nil {
		wg.Go(func() { errs <- arch.Run(rctx) })
	}
	stop := func() { cancel(); wg.Wait() }

	var published, done time.Duration
	deadline := time.Now().Add(time.Duration(set.Records/100+600) * time.Second)
	var maxHeap uint64
	lastMem := time.Now()
	for done == 0 {
		if set.HeapProfile != "" && time.Since(lastMem) > 500*time.Millisecond {
			lastMem = time.Now()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > maxHeap+16<<20 {
				maxHeap = ms.HeapInuse
				if err := writeHeap(set.HeapProfile); err != nil {
					stop()
					return err
				}
			}
		}
		select {
		case err := <-errs:
			if err != nil {
				stop()
				return fmt.Errorf("bench: %w", err)
			}
		case <-time.After(20 * time.Millisecond):
		}
		info, err := s.Info(ctx)
		if err != nil {
			stop()
			return err
		}
		if published == 0 && info.State.LastSeq >= want {
			published = time.Since(start)
		}
		if published == 0 {
			if time.Now().After(deadline) {
				stop()
				return fmt.Errorf("bench: %d of %d records published", info.State.LastSeq-base, set.Records)
			}
			continue
		}
		last := info.State.LastSeq
		indexed, err := ix.LastSeq(ctx)
		if err != nil {
			stop()
			return err
		}
		archivedSeq := last
		if tail != nil {
			if err := tail.Update(ctx); err != nil {
				stop()
				return err
			}
			archivedSeq = tail.LastSeq
		}
		if indexed >= last && archivedSeq >= last {
			done = time.Since(start)
		} else if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("bench: indexed through %d, archived through %d, of %d", indexed, archivedSeq, last)
		}
	}
	stop()
	r.PublishedPerSec = float64(set.Records) / published.Seconds()
	r.EndToEndSeconds = done.Seconds()
	r.EndToEndPerSec = float64(set.Records) / done.Seconds()
	r.PublishVsRaw = r.PublishedPerSec / r.RawPublishPerSec

	// Each record once: in the stream, the archive, the index.
	ids, err := streamIDs(ctx, env.js, stream)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			r.DuplicateIDs++
		}
		seen[id] = true
	}
	r.StreamMsgs = uint64(len(ids))
	st, err := ix.Stats(ctx)
	if err != nil {
		return err
	}
	r.Indexed = st.Changes
	r.IndexBytesPerRecord = float64(st.Bytes) / float64(set.Records)
	r.StreamBytesPerRecord = float64(du(env.dir)) / float64(set.Records)
	if store != nil {
		r.Archived = tail.Leaves
		r.ArchiveBytesPerRecord = float64(du(archiveDir)) / float64(set.Records)
		if r.LatencyP50Ms, r.LatencyP99Ms, err = latency(ctx, store, archiveDir); err != nil {
			return err
		}
	}
	return nil
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// streamIDs reads every event's Nats-Msg-Id (run records left out).
func streamIDs(ctx context.Context, js natsjs.JetStream, stream string) ([]string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	cons, err := s.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{FilterSubjects: []string{"audit.>"}})
	if err != nil {
		return nil, err
	}
	var ids []string
	for {
		batch, err := cons.Fetch(5000, natsjs.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			ids = append(ids, m.Headers().Get("Nats-Msg-Id"))
			n++
		}
		if n == 0 {
			return ids, nil
		}
	}
}

// latency is publish-to-archived per leaf: from the stream's timestamp
// of the message to the time its segment's manifest was written.
func latency(ctx context.Context, st worm.Store, dir string) (p50, p99 float64, err error) {
	var lat []time.Duration
	for n := int64(0); ; {
		seg, ok, err := worm.ReadSegment(ctx, st, n)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			break
		}
		fi, err := os.Stat(filepath.Join(dir, worm.ManifestKey(n)))
		if err != nil {
			return 0, 0, err
		}
		for _, line := range seg.Lines {
			var l struct {
				Time    time.Time `json:"time"`
				Subject string    `json:"subject"`
			}
			if err := json.Unmarshal(line, &l); err != nil {
				return 0, 0, err
			}
			lat = append(lat, fi.ModTime().Sub(l.Time))
		}
		n = seg.Manifest.LastLeaf + 1
	}
	if len(lat) == 0 {
		return 0, 0, nil
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), nil
}
