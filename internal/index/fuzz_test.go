package index_test

import (
	"context"
	"testing"

	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
)

// Any message on any subject is indexed or skipped, never a failure: a
// failed Apply would stop the follower on one bad message.
func FuzzApply(f *testing.F) {
	for _, m := range indextest.Messages(0, 12, 12) {
		f.Add(m.Subject, m.Data)
	}
	f.Add("audit.aws.1.iam", []byte(`{"metadata":{"uid":"x"},"resources":[{"uid":""}],"enrichments":[{"name":"iac.run","data":"nope"}]}`))
	f.Add("audit.drift.aws.1", []byte(`{"metadata":{"uid":"d","correlation_uid":"x"},"unmapped":{"trailkeeper":1}}`))
	f.Add("audit.gcp.p.x", []byte(`not json`))
	ix := open(f)
	var seq uint64
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		seq++
		if err := ix.Apply(context.Background(), []index.Msg{{Seq: seq, Subject: subject, Data: data}}); err != nil {
			t.Fatalf("Apply(%q, %q): %v", subject, data, err)
		}
	})
}

// A cursor from a client is checked, never trusted.
func FuzzCursor(f *testing.F) {
	ix := build(f, 50)
	p, err := ix.Changes(context.Background(), index.Query{Limit: 7})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p.Next)
	f.Add("")
	f.Add("MTIzOmFiYw")
	f.Fuzz(func(t *testing.T, cursor string) {
		_, err := ix.Changes(context.Background(), index.Query{Cursor: cursor, Limit: 5})
		if _, ok := err.(*index.ParamError); err != nil && !ok {
			t.Fatalf("cursor %q: %v", cursor, err)
		}
		_, err = ix.Drift(context.Background(), index.DriftQuery{Cursor: cursor, Limit: 5})
		if _, ok := err.(*index.ParamError); err != nil && !ok {
			t.Fatalf("drift cursor %q: %v", cursor, err)
		}
	})
}

// Searches are data, never SQL or FTS syntax.
func FuzzSearch(f *testing.F) {
	ix := build(f, 300)
	for _, s := range []string{"web-0001", `"`, `a" OR "b`, "%_\\", "arn:aws:", "NEAR(a b)", "col:val", "*", "…日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, q := range []index.Query{{Resource: s}, {Actor: s}, {Run: s}, {Account: s}} {
			if _, err := ix.Changes(context.Background(), q); err != nil {
				if _, ok := err.(*index.ParamError); !ok {
					t.Fatalf("%+v: %v", q, err)
				}
			}
		}
	})
}
