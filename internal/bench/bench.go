package bench

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/internal/embednats"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/sink"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// Settings of a bench run.
type Settings struct {
	Records  int
	Clouds   []string // default aws, gcp, azure
	Archive  bool
	Examples string // the real records to vary (examples/data)
	// WorkDir holds the corpus, the stream's store, the archive and the
	// index; "" makes a temporary one, removed at the end.
	WorkDir string
	// Sample is how many records the stage measurements use (default
	// 20 000, at most Records): the same for every N, so that memory
	// stays flat as N grows.
	Sample int
	// SegmentAge and SegmentBytes of the archive (the daemon's defaults
	// when zero): publish-to-archived latency is mostly the segment age.
	SegmentAge   time.Duration
	SegmentBytes int
	Logger       *slog.Logger
	// StagesOnly skips the end-to-end run (the go test benchmarks).
	StagesOnly bool
	// HeapProfile, if set, is written at the end-to-end run's largest
	// heap (where peak memory goes).
	HeapProfile string
}

// Stage is one step's cost per record.
type Stage struct {
	Name            string  `json:"name"`
	NsPerRecord     float64 `json:"ns_per_record"`
	AllocsPerRecord float64 `json:"allocs_per_record"`
	BytesPerRecord  float64 `json:"bytes_per_record"`
	Note            string  `json:"note,omitempty"`
}

// Report is what a bench run measured.
type Report struct {
	Records  int            `json:"records"`
	ByCloud  map[string]int `json:"by_cloud"`
	Sample   int            `json:"sample"`
	CorpusMB float64        `json:"corpus_mb"`

	// End to end: the real pipeline, archiver and index together.
	PublishedPerSec float64 `json:"published_per_sec"`  // until every record is acked
	EndToEndPerSec  float64 `json:"end_to_end_per_sec"` // until archived and indexed too
	EndToEndSeconds float64 `json:"end_to_end_seconds"`

	Stages []Stage `json:"stages"`

	// Baselines, same run, same payloads.
	RawPublishPerSec float64 `json:"raw_publish_per_sec"` // JetStream async publish of the encoded events
	// CloudTrail decode + map + encode, ours and encoding/json's map
	// round trip, over the same trail files.
	CloudTrailNsPerRecord float64 `json:"cloudtrail_ns_per_record"`
	NaiveNsPerRecord      float64 `json:"naive_ns_per_record"`

	PublishVsRaw   float64 `json:"published_vs_raw_publish"`    // ≥ 0.5 is the target
	CloudTrailGain float64 `json:"cloudtrail_vs_naive_speedup"` // ≥ 4 is the target

	LatencyP50Ms float64 `json:"publish_to_archived_p50_ms"`
	LatencyP99Ms float64 `json:"publish_to_archived_p99_ms"`
	SegmentAge   string  `json:"archive_segment_age"`

	// PeakRSSMB is the peak resident set of the end-to-end run (the
	// daemon's work); StagesPeakRSSMB that of the stage measurements,
	// which hold their sample in memory.
	PeakRSSMB             float64 `json:"peak_rss_mb"`
	StagesPeakRSSMB       float64 `json:"stages_peak_rss_mb"`
	StreamBytesPerRecord  float64 `json:"stream_bytes_per_record"`
	ArchiveBytesPerRecord float64 `json:"archive_bytes_per_record"`
	IndexBytesPerRecord   float64 `json:"index_bytes_per_record"`

	// Correctness: each record once in the stream, the archive and the
	// index.
	StreamMsgs   uint64 `json:"stream_msgs"`
	DuplicateIDs int    `json:"duplicate_ids"`
	Archived     int64  `json:"archived_leaves"`
	Indexed      int64  `json:"indexed_changes"`
}

// Run builds the corpus and measures.
func Run(ctx context.Context, set Settings) (Report, error) {
	if len(set.Clouds) == 0 {
		set.Clouds = []string{"aws", "gcp", "azure"}
	}
	if set.Sample <= 0 {
		set.Sample = 20000
	}
	set.Sample = min(set.Sample, set.Records)
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	def := config.Default().Archive
	if set.SegmentAge <= 0 {
		set.SegmentAge = def.SegmentAge
	}
	if set.SegmentBytes <= 0 {
		set.SegmentBytes = def.SegmentBytes
	}
	if set.WorkDir == "" {
		d, err := os.MkdirTemp("", "trailkeeper-bench")
		if err != nil {
			return Report{}, err
		}
		defer os.RemoveAll(d)
		set.WorkDir = d
	}
	log := set.Logger
	tmpl, err := LoadTemplates(ctx, set.Examples)
	if err != nil {
		return Report{}, err
	}
	corpusDir := filepath.Join(set.WorkDir, "corpus")
	if err := os.RemoveAll(corpusDir); err != nil {
		return Report{}, err
	}
	t0 := time.Now()
	corpus, err := Write(corpusDir, set.Records, set.Clouds, tmpl)
	if err != nil {
		return Report{}, err
	}
	log.Info("corpus written", "records", corpus.Records, "by_cloud", corpus.ByCloud, "mb", corpus.Bytes>>20, "took", time.Since(t0).Round(time.Millisecond))
	r := Report{Records: set.Records, ByCloud: corpus.ByCloud, Sample: set.Sample, CorpusMB: float64(corpus.Bytes) / 1e6, SegmentAge: set.SegmentAge.String()}

	env, err := startNATS(ctx, filepath.Join(set.WorkDir, "nats"), log)
	if err != nil {
		return r, err
	}
	defer env.close()

	// The stream and the run registry first: registering a run publishes
	// its record on the stream.
	if _, err := jetstream.EnsureStream(ctx, env.js, jetstream.StreamConfig{Name: "AUDIT", DuplicateWindow: 2 * time.Hour, Replicas: 1}); err != nil {
		return r, err
	}
	runs, err := correlate.OpenRegistry(ctx, env.js, "bench-runs")
	if err != nil {
		return r, err
	}
	for _, run := range corpus.Runs {
		if err := runs.Put(ctx, run); err != nil {
			return r, err
		}
	}
	if err := stages(ctx, &r, set, corpus, runs, env); err != nil {
		return r, err
	}
	r.StagesPeakRSSMB = peakRSSMB()
	if set.StagesOnly {
		return r, nil
	}
	// The end-to-end run's own peak: the stages' sample is garbage now.
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	if err := endToEnd(ctx, &r, set, corpus, runs, env); err != nil {
		return r, err
	}
	r.PeakRSSMB = peakRSSMB()
	return r, nil
}

type natsEnv struct {
	srv *embednats.Server
	nc  *nats.Conn
	js  natsjs.JetStream
	dir string
}

func startNATS(ctx context.Context, dir string, log *slog.Logger) (*natsEnv, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	srv, err := embednats.Start(ctx, embednats.Settings{StoreDir: dir, SyncInterval: time.Second, MaxPayload: 8 << 20, Logger: log})
	if err != nil {
		return nil, err
	}
	nc, err := srv.Connect()
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	js, err := natsjs.New(nc, jetstream.Options()...)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, err
	}
	return &natsEnv{srv: srv, nc: nc, js: js, dir: dir}, nil
}

func (e *natsEnv) close() {
	e.nc.Close()
	e.srv.Shutdown()
}

// measure runs f and returns its cost per record.
func measure(name string, n int, f func() error) (Stage, error) {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	start := time.Now()
	err := f()
	d := time.Since(start)
	runtime.ReadMemStats(&b)
	if err != nil {
		return Stage{}, fmt.Errorf("bench: %s: %w", name, err)
	}
	return Stage{Name: name, NsPerRecord: float64(d.Nanoseconds()) / float64(n),
		AllocsPerRecord: float64(b.Mallocs-a.Mallocs) / float64(n), BytesPerRecord: float64(b.TotalAlloc-a.TotalAlloc) / float64(n)}, nil
}

// readAll polls the files collector over dir to the end, handing each
// record to fn.
func readAll(ctx context.Context, dir string, fn func(collectors.Record)) (int, error) {
	cfg := files.NewConfig()
	cfg.Path, cfg.PageSize, cfg.Settle = config.FilePath(dir), 1000, 0
	c := files.New(cfg, collectors.Settings{})
	n := 0
	var cur []byte
	for {
		page, err := c.Poll(ctx, cur)
		if err != nil {
			return n, err
		}
		for _, rec := range page.Records {
			fn(rec)
			n++
		}
		cur = page.Next
		if !page.More {
			return n, nil
		}
	}
}

// stages measures each stage alone on the same records.
func stages(ctx context.Context, r *Report, set Settings, corpus Corpus, runs *correlate.Registry, env *natsEnv) error {
	// decode: the files collector reading every file (gunzip, split).
	var sample []collectors.Record
	var n int
	st, err := measure("decode", set.Records, func() error {
		var err error
		n, err = readAll(ctx, corpus.Dir, func(rec collectors.Record) {
			if len(sample) < set.Sample {
				sample = append(sample, collectors.Record{Raw: rec.Raw, Format: rec.Format})
			}
		})
		return err
	})
	if err != nil {
		return err
	}
	if n != set.Records {
		return fmt.Errorf("bench: the files collector read %d records of %d", n, set.Records)
	}
	st.Note = "files collector: read, gunzip, split"
	r.Stages = append(r.Stages, st)

	// map + encode, then encode alone: map is the difference.
	events := make([]*normalize.Event, 0, len(sample))
	nz := normalize.Normalizer{NoProcessedTime: true}
	mapEnc, err := measure("map+encode", len(sample), func() error {
		for _, rec := range sample {
			ev, err := nz.Normalize(rec.Raw, rec.Format)
			if err != nil {
				return err
			}
			events = append(events, ev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	enc, err := measure("encode", len(events), func() error {
		var buf []byte
		for _, ev := range events {
			buf = ev.OCSF.AppendJSON(buf[:0])
		}
		return nil
	})
	if err != nil {
		return err
	}
	enc.Note = "OCSF JSON"
	r.Stages = append(r.Stages, Stage{Name: "map", NsPerRecord: mapEnc.NsPerRecord - enc.NsPerRecord,
		AllocsPerRecord: mapEnc.AllocsPerRecord - enc.AllocsPerRecord, BytesPerRecord: mapEnc.BytesPerRecord - enc.BytesPerRecord,
		Note: "normalize (map+encode minus encode)"})

	// correlate, against a registry holding the corpus's runs.
	corr := &correlate.Correlator{Registry: runs, Now: func() time.Time { return at(set.Records).Add(time.Hour) }}
	st, err = measure("correlate", len(events), func() error {
		for from := 0; from < len(events); from += 1000 {
			if err := corr.Correlate(ctx, events[from:min(from+1000, len(events))]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.Note = "link to runs, re-encode the linked"
	r.Stages = append(r.Stages, st, enc)

	// publish (ours: msg ids, acked per page) and the raw ceiling.
	msgs := make([]sink.Message, len(events))
	for i, ev := range events {
		msgs[i] = sink.Message{Subject: jetstream.EventSubject(ev.Cloud, ev.Account, ev.Service), ID: ev.UID, Data: ev.JSON}
	}
	// Streams like the daemon's (file storage, 2 h duplicate window) on
	// subjects of their own.
	for _, name := range []string{"STAGE", "RAW"} {
		if _, err := env.js.CreateStream(ctx, natsjs.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"},
			Storage: natsjs.FileStorage, Duplicates: 2 * time.Hour}); err != nil {
			return err
		}
	}
	pub := jetstream.NewPublisher(env.js, "STAGE")
	st, err = measure("publish", len(msgs), func() error {
		for from := 0; from < len(msgs); from += 1000 {
			batch := slices.Clone(msgs[from:min(from+1000, len(msgs))])
			for i := range batch {
				batch[i].Subject = "stage." + batch[i].Subject
			}
			if err := pub.Publish(ctx, batch); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.Note = "pages of 1 000, Nats-Msg-Id, every PubAck awaited"
	r.Stages = append(r.Stages, st)
	raw, err := measure("raw publish (baseline)", len(msgs), func() error {
		for _, m := range msgs {
			if _, err := env.js.PublishAsync("raw."+m.Subject, m.Data); err != nil {
				return err
			}
		}
		select {
		case <-env.js.PublishAsyncComplete():
			return nil
		case <-time.After(5 * time.Minute):
			return errors.New("raw publish: acks did not arrive")
		}
	})
	if err != nil {
		return err
	}
	raw.Note = "JetStream async publish, no ids: the broker's ceiling"
	r.RawPublishPerSec = 1e9 / raw.NsPerRecord

	// archive and index, each alone, from the STAGE stream.
	if set.Archive {
		// A short segment age: the stage's cost, not its wait for the
		// age of a segment the sample does not fill.
		short := set
		short.SegmentAge = 200 * time.Millisecond
		st, err = measure("archive", len(msgs), func() error {
			_, err := archiveAll(ctx, env, "STAGE", filepath.Join(set.WorkDir, "archive-stage"), short, uint64(len(msgs)))
			return err
		})
		if err != nil {
			return err
		}
		st.Note = "zstd segments, Merkle tree, signed checkpoints"
		r.Stages = append(r.Stages, st)
	}
	ixPath := filepath.Join(set.WorkDir, "index-stage.db")
	index.Remove(ixPath)
	ix, err := index.Open(ctx, ixPath)
	if err != nil {
		return err
	}
	st, err = measure("index", len(msgs), func() error {
		return (&index.Follower{Index: ix, JS: env.js, Stream: "STAGE", Consumer: "INDEX-STAGE"}).CatchUp(ctx)
	})
	ix.Close()
	index.Remove(ixPath)
	if err != nil {
		return err
	}
	st.Note = "SQLite, transactions of 1 000"
	r.Stages = append(r.Stages, st, raw)

	// CloudTrail decode + map + encode against the naive map round trip,
	// over the same trail files (at most Sample records of them).
	if slices.Contains(set.Clouds, "aws") {
		if err := cloudTrailVersusNaive(ctx, r, corpus, set.Sample); err != nil {
			return err
		}
	}
	for _, name := range []string{"STAGE", "RAW"} {
		_ = env.js.DeleteStream(ctx, name)
	}
	return nil
}

// cloudTrailVersusNaive times ours (files collector + normalize) and the
// naive pipeline (gunzip, encoding/json into map[string]any, marshal each
// record) over the same trail files.
func cloudTrailVersusNaive(ctx context.Context, r *Report, corpus Corpus, limit int) error {
	var paths []string
	total := 0
	err := filepath.WalkDir(filepath.Join(corpus.Dir, "AWSLogs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || total >= limit {
			return err
		}
		paths = append(paths, p)
		total += perFile
		return nil
	})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "trailkeeper-bench-ct")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, p := range paths {
		if err := os.Link(p, filepath.Join(dir, filepath.Base(p))); err != nil {
			return err
		}
	}
	nz := normalize.Normalizer{NoProcessedTime: true}
	var count, naiveCount int
	oursOnce := func() error {
		count = 0
		_, err := readAll(ctx, dir, func(rec collectors.Record) {
			if _, err := nz.Normalize(rec.Raw, rec.Format); err == nil {
				count++
			}
		})
		return err
	}
	naiveOnce := func() error {
		naiveCount = 0
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			gz, err := gzip.NewReader(bufio.NewReader(f))
			if err != nil {
				f.Close()
				return err
			}
			var doc map[string]any
			err = json.NewDecoder(gz).Decode(&doc)
			f.Close()
			if err != nil {
				return err
			}
			recs, _ := doc["Records"].([]any)
			for _, rec := range recs {
				if _, err := json.Marshal(rec); err != nil {
					return err
				}
				naiveCount++
			}
		}
		return nil
	}
	// In turn, three times each, the best of each: the two land in the
	// same load of a shared machine.
	var ours, naive Stage
	for i := range 3 {
		o, err := measure("cloudtrail ours", 1, oursOnce)
		if err != nil {
			return err
		}
		nv, err := measure("cloudtrail naive", 1, naiveOnce)
		if err != nil {
			return err
		}
		if i == 0 || o.NsPerRecord < ours.NsPerRecord {
			ours = o
		}
		if i == 0 || nv.NsPerRecord < naive.NsPerRecord {
			naive = nv
		}
	}
	if count == 0 || count != naiveCount {
		return fmt.Errorf("bench: CloudTrail: ours mapped %d records, naive %d", count, naiveCount)
	}
	r.CloudTrailNsPerRecord = ours.NsPerRecord / float64(count)
	r.NaiveNsPerRecord = naive.NsPerRecord / float64(count)
	r.CloudTrailGain = r.NaiveNsPerRecord / r.CloudTrailNsPerRecord
	r.Stages = append(r.Stages,
		Stage{Name: "cloudtrail decode+map+encode", NsPerRecord: r.CloudTrailNsPerRecord, AllocsPerRecord: ours.AllocsPerRecord / float64(count), BytesPerRecord: ours.BytesPerRecord / float64(count), Note: "trail files"},
		Stage{Name: "naive map round trip (baseline)", NsPerRecord: r.NaiveNsPerRecord, AllocsPerRecord: naive.AllocsPerRecord / float64(count), BytesPerRecord: naive.BytesPerRecord / float64(count), Note: "gunzip, encoding/json into map[string]any, marshal"})
	return nil
}

// archiveAll runs an archiver on stream until it has archived through
// seq; it returns the store.
func archiveAll(ctx context.Context, env *natsEnv, stream, dir string, set Settings, seq uint64) (worm.Store, error) {
	signer, err := benchSigner()
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	store := worm.DirStore{Root: dir}
	a, err := worm.NewArchiver(ctx, worm.Settings{JS: env.js, Stream: stream, Consumer: "ARCHIVER-" + stream, Store: store,
		Signer: signer, Origin: signer.Name(), SegmentBytes: set.SegmentBytes, SegmentAge: set.SegmentAge})
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = a.Run(actx) })
	defer func() { cancel(); wg.Wait() }()
	tail := &worm.Tail{Store: store}
	for {
		if err := tail.Update(ctx); err != nil {
			return nil, err
		}
		if tail.LastSeq >= seq {
			return store, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if runErr != nil {
			return nil, runErr
		}
	}
}

var signerOnce struct {
	sync.Once
	s   note.Signer
	err error
}

func benchSigner() (note.Signer, error) {
	signerOnce.Do(func() {
		key, _, err := worm.GenerateKey("trailkeeper-bench")
		if err == nil {
			signerOnce.s, err = worm.ParseSigner(key)
		}
		signerOnce.err = err
	})
	return signerOnce.s, signerOnce.err
}

// peakRSSMB is the process's peak resident set (VmHWM), on Linux.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// resetPeakRSS starts VmHWM afresh (Linux ≥ 4.0: clear_refs 5).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// du is the size of the files under dir.
func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
