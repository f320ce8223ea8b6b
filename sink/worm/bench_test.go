package worm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// benchLines are 10 000 event-sized leaves.
func benchLines(b *testing.B) ([][]byte, int) {
	var lines [][]byte
	size := 0
	for i := range 10000 {
		data := fmt.Appendf(nil, `{"metadata":{"uid":"aws:%08d","version":"1.8.0","product":{"name":"CloudTrail"}},"class_uid":6003,"activity_id":1,"time":%d,"api":{"operation":"RunInstances","service":{"name":"ec2.amazonaws.com"}},"cloud":{"provider":"AWS","region":"eu-west-1","account":{"uid":"123456789012"}},"raw_data":"%s"}`,
			i, 1700000000000+i, bytes.Repeat([]byte("x"), 900))
		line, err := encodeLeaf(Leaf{Leaf: int64(i), Seq: uint64(i + 1), Time: time.Unix(1700000000, 0).UTC(), Subject: "audit.aws.123456789012.ec2", MsgID: fmt.Sprintf("aws:%08d", i)}, data)
		if err != nil {
			b.Fatal(err)
		}
		lines = append(lines, line)
		size += len(line) + 1
	}
	return lines, size
}

// BenchmarkArchiveSegment is the archiver's work per segment of 10 000
// leaves (hash every leaf into the tree, compress, store, manifest,
// checkpoint) on a folder; BenchmarkZstdBaseline compresses the same bytes
// only. Compare leaves/s and MB/s of the two in one run.
func BenchmarkArchiveSegment(b *testing.B) {
	lines, size := benchLines(b)
	sig, _ := keys(b)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		a := &Archiver{set: Settings{Store: DirStore{Root: b.TempDir()}, Signer: sig, Origin: origin}, enc: enc, log: slog.New(slog.DiscardHandler)}
		content := append(bytes.Join(lines, []byte{'\n'}), '\n')
		stored := enc.EncodeAll(content, nil)
		if _, err := a.set.Store.Put(context.Background(), segmentKey(time.Now(), 0, int64(len(lines)-1)), stored); err != nil {
			b.Fatal(err)
		}
		a.lastSeq = uint64(len(lines))
		if err := a.commit(context.Background(), "seg", "", stored, content, lines, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(lines)*b.N)/b.Elapsed().Seconds(), "leaves/s")
}

func BenchmarkZstdBaseline(b *testing.B) {
	lines, size := benchLines(b)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	content := append(bytes.Join(lines, []byte{'\n'}), '\n')
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		_ = enc.EncodeAll(content, nil)
	}
	b.ReportMetric(float64(len(lines)*b.N)/b.Elapsed().Seconds(), "leaves/s")
}
