package azureactivity

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/appendblob"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	"github.com/trailkeeper/trailkeeper/config"
	azfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/azure"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// exportLine is one diagnostic-settings export record, as a JSON line.
func exportLine(id string, t time.Time) string {
	b, _ := json.Marshal(map[string]any{
		"time": t.UTC().Format("2006-01-02T15:04:05.0000000Z"), "resourceId": "/SUBSCRIPTIONS/" + strings.ToUpper(subA) + "/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-" + id,
		"operationName": "MICROSOFT.KEYVAULT/VAULTS/WRITE", "category": "Administrative", "resultType": "Success",
		"callerIpAddress": "203.0.113.9", "correlationId": "corr-" + id, "level": "Information",
		"identity":   map[string]any{"claims": map[string]any{"http://schemas.microsoft.com/identity/claims/objectidentifier": "oid-1"}},
		"properties": map[string]any{"id": id},
	})
	return string(b)
}

type azurite struct {
	t      *testing.T
	client *azblob.Client
	conn   string
}

func startAzurite(t *testing.T) *azurite {
	conn := azfake.StartAzurite(t)
	client, err := azblob.NewClientFromConnectionString(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateContainer(context.Background(), "insights-activity-logs", nil); err != nil {
		t.Fatal(err)
	}
	return &azurite{t: t, client: client, conn: conn}
}

func hourBlob(hour time.Time) string {
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/%s/y=%s/m=%s/d=%s/h=%s/m=00/PT1H.json", strings.ToUpper(subA),
		hour.Format("2006"), hour.Format("01"), hour.Format("02"), hour.Format("15"))
}

// appendText appends to the hour's blob, creating it first if need be.
func (a *azurite) appendText(name, text string) {
	ab := a.client.ServiceClient().NewContainerClient("insights-activity-logs").NewAppendBlobClient(name)
	if _, err := ab.GetProperties(context.Background(), nil); err != nil {
		if _, err := ab.Create(context.Background(), nil); err != nil {
			a.t.Fatal(err)
		}
	}
	if _, err := ab.AppendBlock(context.Background(), nopCloser{strings.NewReader(text)}, &appendblob.AppendBlockOptions{}); err != nil {
		a.t.Fatal(err)
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func (a *azurite) collector(t *testing.T, clk *clock, pageSize int) collectors.Collector {
	cfg := NewBlobConfig()
	cfg.Name, cfg.ConnectionString, cfg.PageSize = "export", config.Secret(a.conn), pageSize
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := NewBlobFactory().Create(context.Background(), collectors.Settings{Now: clk.Now}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st[0].Collector
}

func corrIDs(t *testing.T, recs []collectors.Record) []string {
	var out []string
	for _, r := range recs {
		var e struct{ CorrelationID string }
		if err := json.Unmarshal(r.Raw, &e); err != nil {
			t.Fatalf("record %q: %v", r.Raw, err)
		}
		if _, err := normalize.Normalize(r.Raw, r.Format); err != nil {
			t.Errorf("record does not map: %v", err)
		}
		out = append(out, strings.TrimPrefix(e.CorrelationID, "corr-"))
	}
	return out
}

func TestBlobNewAppendedRestartSealed(t *testing.T) {
	t.Parallel()
	az := startAzurite(t)
	clk := newClock()
	hour := clk.Now().Add(-20 * time.Minute).Truncate(time.Hour)
	name := hourBlob(hour)
	line := func(id string) string { return exportLine(id, hour.Add(5*time.Minute)) }

	// A new blob: three complete lines and one being written.
	partial := line("4")
	az.appendText(name, line("1")+"\n"+line("2")+"\n"+line("3")+"\n"+partial[:40])
	c := az.collector(t, clk, 1000)
	d := collectortest.Drain(t, c, nil)
	collectortest.SameIDs(t, corrIDs(t, d.Records), []string{"1", "2", "3"})

	// Appended: the rest of line 4, and line 5.
	az.appendText(name, partial[40:]+"\n"+line("5")+"\n")
	d = collectortest.Drain(t, c, d.Cursor)
	collectortest.SameIDs(t, corrIDs(t, d.Records), []string{"4", "5"})

	// Restart mid-blob: a page of two, then a new process from that cursor.
	az.appendText(name, line("6")+"\n"+line("7")+"\n"+line("8")+"\n")
	small := az.collector(t, clk, 2)
	page, err := small.Poll(context.Background(), d.Cursor)
	if err != nil || len(page.Records) != 2 || !page.More {
		t.Fatalf("first page after restart point: %d records, more %v, %v", len(page.Records), page.More, err)
	}
	first := corrIDs(t, page.Records)
	restarted := az.collector(t, clk, 2)
	d = collectortest.Drain(t, restarted, page.Next)
	collectortest.SameIDs(t, append(first, corrIDs(t, d.Records)...), []string{"6", "7", "8"})

	// Sealed: hours later a last line without a newline is read too, and
	// the cursor forgets the blob.
	az.appendText(name, line("9"))
	clk.Add(5 * time.Hour)
	d = collectortest.Drain(t, restarted, d.Cursor)
	collectortest.SameIDs(t, corrIDs(t, d.Records), []string{"9"})
	var cur blobCursor
	_ = json.Unmarshal(d.Cursor, &cur)
	if len(cur.Offsets) != 0 || !cur.Start.After(hour) {
		t.Errorf("cursor after the hour sealed: %+v", cur)
	}
	d = collectortest.Drain(t, restarted, d.Cursor)
	if len(d.Records) != 0 {
		t.Errorf("a sealed blob read again: %d records", len(d.Records))
	}
}
