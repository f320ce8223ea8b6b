package index_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
	"github.com/trailkeeper/trailkeeper/sink"
)

const corpusN = 3000

// build indexes changes [0, n) of a corpus of n directly, as stream
// sequences 1, 2, …
func build(t testing.TB, n int) *index.Index {
	t.Helper()
	ix := open(t)
	msgs := indextest.Messages(0, n, n)
	apply(t, ix, msgs, 1)
	return ix
}

func open(t testing.TB) *index.Index {
	t.Helper()
	ix, err := index.Open(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func apply(t testing.TB, ix *index.Index, msgs []sink.Message, firstSeq uint64) {
	t.Helper()
	indextest.Apply(t, ix, msgs, firstSeq)
}

// want lists the corpus's changes that pass keep, in the order a query
// returns them.
func want(n int, asc bool, keep func(indextest.Change) bool) []string {
	var out []string
	for i := range n {
		if c := indextest.At(i, n); keep(c) {
			out = append(out, c.UID)
		}
	}
	if !asc {
		slices.Reverse(out)
	}
	return out
}

// all walks every page of a query.
func all(t *testing.T, ix *index.Index, q index.Query) []string {
	t.Helper()
	return indextest.UIDs(t, ix, q)
}

func TestQueries(t *testing.T) {
	ix := build(t, corpusN)
	c42 := indextest.At(42, corpusN)
	c43 := indextest.At(43, corpusN)
	yes, no := true, false
	since := indextest.Start.Add(1000 * time.Second)
	until := indextest.Start.Add(1500 * time.Second)
	tests := []struct {
		name string
		q    index.Query
		keep func(indextest.Change) bool
	}{
		{"everything", index.Query{}, func(indextest.Change) bool { return true }},
		{"resource exact", index.Query{Resource: c42.Resource}, func(c indextest.Change) bool { return c.Resource == c42.Resource }},
		{"resource exact, other case", index.Query{Resource: strings.ToUpper(c43.Resource)}, func(c indextest.Change) bool {
			return strings.EqualFold(c.Resource, c43.Resource)
		}},
		{"resource prefix", index.Query{Resource: "arn:aws:ec2:us-east-1:100000000001:"}, func(c indextest.Change) bool {
			return strings.HasPrefix(c.Resource, "arn:aws:ec2:us-east-1:100000000001:")
		}},
		{"resource name fragment", index.Query{Resource: "eb-0004"}, func(c indextest.Change) bool { return strings.Contains(c.Name, "eb-0004") }},
		{"actor principal", index.Query{Actor: c42.Actor}, func(c indextest.Change) bool { return c.Actor == c42.Actor }},
		{"actor prefix", index.Query{Actor: "user0002"}, func(c indextest.Change) bool { return strings.HasPrefix(c.Actor, "user0002") }},
		{"actor session name", index.Query{Actor: "tk-run"}, func(c indextest.Change) bool { return c.Session == "tk-run" }},
		{"run", index.Query{Run: "gh:org/infra:1"}, func(c indextest.Change) bool { return c.RunKey == "gh:org/infra:1" }},
		{"cloud", index.Query{Cloud: "GCP"}, func(c indextest.Change) bool { return c.Cloud == "gcp" }},
		{"account", index.Query{Account: "proj-07"}, func(c indextest.Change) bool { return c.Account == "proj-07" }},
		{"since until", index.Query{Since: since, Until: until}, func(c indextest.Change) bool {
			return !c.Time.Before(since) && c.Time.Before(until)
		}},
		{"mutating", index.Query{Mutating: &yes}, func(c indextest.Change) bool { return c.Mutating }},
		{"reads", index.Query{Mutating: &no, Cloud: "aws"}, func(c indextest.Change) bool { return !c.Mutating && c.Cloud == "aws" }},
		{"failures", index.Query{Outcome: "failure"}, func(c indextest.Change) bool { return c.Failed }},
		{"drift", index.Query{Drift: true}, func(c indextest.Change) bool { return c.Drift != "" }},
		{"attested", index.Query{Band: "attested"}, func(c indextest.Change) bool { return c.Band == "attested" }},
		{"unexplained", index.Query{Band: "unexplained", Cloud: "azure"}, func(c indextest.Change) bool {
			return c.Cloud == "azure" && c.RunKey == "" && c.Mutating && !c.Failed
		}},
		{"combined", index.Query{Cloud: "aws", Mutating: &yes, Outcome: "success", Since: since}, func(c indextest.Change) bool {
			return c.Cloud == "aws" && c.Mutating && !c.Failed && !c.Time.Before(since)
		}},
	}
	for _, tc := range tests {
		for _, asc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/asc=%v", tc.name, asc), func(t *testing.T) {
				q := tc.q
				q.Ascending, q.Limit = asc, 37 // pages end mid-second
				w := want(corpusN, asc, tc.keep)
				if len(w) == 0 {
					t.Fatal("the case selects nothing: a useless test")
				}
				if got := all(t, ix, q); !slices.Equal(got, w) {
					t.Errorf("got %d changes, want %d\n got %q…\nwant %q…", len(got), len(w), got[:min(5, len(got))], w[:5])
				}
			})
		}
	}
}

func TestChangeFields(t *testing.T) {
	ix := build(t, corpusN)
	ctx := context.Background()
	for _, i := range []int{0, 3, 10, 42, 103, 2999} {
		want := indextest.At(i, corpusN)
		got, err := ix.Change(ctx, want.UID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Actor.ID != want.Actor || got.Cloud != want.Cloud || got.Account != want.Account || got.Action != want.Action ||
			got.Mutating != want.Mutating || got.Link.RunKey != want.RunKey || got.Resources[0].UID != want.Resource || !got.Time.Equal(want.Time) {
			t.Errorf("change %d = %+v, want %+v", i, got, want)
		}
		if want.Cloud == "aws" && want.Session != "" && (got.Actor.Type != "role" || got.Actor.Name != want.Session) {
			t.Errorf("change %d: an assumed role's actor = %+v, want the role with session %s", i, got.Actor, want.Session)
		}
		if (want.Drift != "") != (len(got.Drift) == 1) || want.Drift != "" && got.Drift[0].UID != want.Drift {
			t.Errorf("change %d: drift %+v, want %q", i, got.Drift, want.Drift)
		}
		if want.Drift != "" && got.OutOfPlan != (want.RunKey != "") {
			t.Errorf("change %d: out_of_plan %v", i, got.OutOfPlan)
		}
	}
	if _, err := ix.Change(ctx, "nope"); err != index.ErrNotFound {
		t.Errorf("a missing uid: %v", err)
	}
}

func TestDrift(t *testing.T) {
	ix := build(t, corpusN)
	ctx := context.Background()
	var got []string
	q := index.DriftQuery{Limit: 7}
	for {
		p, err := ix.Drift(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Items {
			got = append(got, d.UID)
			if d.EventUID == "" || d.Title == "" || d.Workspace != "infra/prod" {
				t.Errorf("finding %+v lacks fields", d)
			}
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	var w []string
	for i := corpusN - 1; i >= 0; i-- {
		if c := indextest.At(i, corpusN); c.Drift != "" {
			w = append(w, c.Drift)
		}
	}
	if !slices.Equal(got, w) {
		t.Errorf("drift = %d findings, want %d", len(got), len(w))
	}
	p, err := ix.Drift(ctx, index.DriftQuery{Type: "out_of_plan", Since: indextest.Start.Add(2000 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Items {
		if d.Type != "OUT_OF_PLAN" || d.RunKey == "" || d.Time.Before(indextest.Start.Add(2000*time.Second)) {
			t.Errorf("filtered finding %+v", d)
		}
	}
}

func TestBadCursor(t *testing.T) {
	ix := build(t, 30)
	_, err := ix.Changes(context.Background(), index.Query{Cursor: "!!"})
	var pe *index.ParamError
	if !asParam(err, &pe) || pe.Param != "cursor" {
		t.Errorf("bad cursor: %v", err)
	}
	if _, err := ix.Changes(context.Background(), index.Query{Band: "sure"}); !asParam(err, &pe) || pe.Param != "link" {
		t.Errorf("bad band: %v", err)
	}
}

func asParam(err error, pe **index.ParamError) bool {
	p, ok := err.(*index.ParamError)
	*pe = p
	return ok
}

func TestApplyIsIdempotent(t *testing.T) {
	ix := build(t, 300)
	before := dump(t, ix)
	// The same messages again (a redelivery), and the same events under
	// new sequences (re-published after the duplicate window).
	apply(t, ix, indextest.Messages(0, 300, 300), 1)
	apply(t, ix, indextest.Messages(0, 300, 300), 10000)
	if after := dump(t, ix); after != before {
		t.Errorf("re-applying changed the index")
	}
}

func TestPrune(t *testing.T) {
	ix := build(t, corpusN)
	ctx := context.Background()
	cut := indextest.Start.Add(2500 * time.Second)
	n, err := ix.Prune(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2500 {
		t.Errorf("pruned %d, want 2500", n)
	}
	w := want(corpusN, false, func(c indextest.Change) bool { return !c.Time.Before(cut) })
	if got := all(t, ix, index.Query{}); !slices.Equal(got, w) {
		t.Errorf("after pruning: %d changes, want %d", len(got), len(w))
	}
	// The pruned ones are gone from the resource tables too.
	old := indextest.At(5, corpusN)
	for _, c := range all(t, ix, index.Query{Resource: old.Name}) {
		if c <= indextest.At(2499, corpusN).UID {
			t.Errorf("pruned change %s found by resource", c)
		}
	}
}

// dump is every row the index holds, for comparing two indexes.
func dump(t testing.TB, ix *index.Index) string {
	t.Helper()
	var b strings.Builder
	q := index.Query{Ascending: true, Limit: 1000}
	for {
		p, err := ix.Changes(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Items {
			c.Seq = 0 // sequences differ between a stream and its rebuild
			leaf := int64(-1)
			if c.Leaf != nil {
				leaf, c.Leaf = *c.Leaf, nil
			}
			fmt.Fprintf(&b, "%+v leaf=%d\n", c, leaf)
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	d, err := ix.Drift(context.Background(), index.DriftQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range d.Items {
		f.Seq = 0
		fmt.Fprintf(&b, "%+v\n", f)
	}
	return b.String()
}
