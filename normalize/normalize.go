package normalize

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// OCSFVersion is the schema version written to metadata.version.
const OCSFVersion = ocsf.Version

// Event is one normalized record: the OCSF event, its encoding, and the few
// fields the pipeline routes on.
type Event struct {
	UID     string    // metadata.uid: deterministic, sent as Nats-Msg-Id
	Cloud   string    // aws, gcp or azure
	Account string    // account id, project id or subscription id ("" if unknown)
	Service string    // the cloud service that logged it, e.g. s3.amazonaws.com
	Time    time.Time // when it happened, as the cloud reports it
	OCSF    *ocsf.Event
	JSON    []byte // OCSF encoded; call Encode after changing OCSF
}

// Encode re-encodes the OCSF event into JSON (after an enrichment).
func (e *Event) Encode() error {
	e.JSON = e.OCSF.AppendJSON(make([]byte, 0, e.OCSF.SizeHint()))
	return nil
}

// Errors that say a record is not an audit event at all.
var (
	ErrUnknownFormat = errors.New("unknown record format")
	ErrDigest        = errors.New("a CloudTrail digest file, not an event")
	ErrNotAudit      = errors.New("not an audit log entry")
)

// Normalizer maps records. The zero value is ready; Now is the clock of
// metadata.processed_time (nil: time.Now, or omitted when NoProcessedTime).
type Normalizer struct {
	Now func() time.Time
	// NoProcessedTime leaves metadata.processed_time out, making output a
	// pure function of input (golden files, content hashes).
	NoProcessedTime bool
}

var std Normalizer

// cloudProfile is shared by every event: nobody changes it.
var cloudProfile = []string{"cloud"}

// mappers map one record of each format.
var mappers = map[Format]func([]byte) (*ocsf.Event, error){
	FormatCloudTrail:  mapCloudTrail,
	FormatGCPAudit:    mapGCP,
	FormatAzureREST:   mapAzure,
	FormatAzureExport: mapAzure,
}

// Normalize maps one raw record with the default Normalizer.
func Normalize(raw []byte, hint Format) (*Event, error) { return std.Normalize(raw, hint) }

// Normalize maps one raw record: envelopes (LookupEvents results,
// EventBridge, SNS, SQS, Pub/Sub messages) are unwrapped first; hint may be
// FormatUnknown, in which case the format is sniffed. See the package doc.
func (n *Normalizer) Normalize(raw []byte, hint Format) (*Event, error) {
	// One copy of the record, never changed afterwards: raw_data is it, and
	// the CloudTrail decoder takes strings and values as slices of it.
	raw = bytes.Clone(raw)
	var (
		rec      = raw
		f        = hint
		env      []byte
		ev       *ocsf.Event
		hintErr  error
		mapFirst = mappers[hint]
	)
	// The hot path: a record whose container said its format (a trail
	// file's Records) is mapped at once. Only when that fails, or the format
	// is unknown, are envelopes looked for and the format sniffed.
	if mapFirst != nil {
		ev, hintErr = mapFirst(raw)
	}
	if ev == nil {
		var err error
		if rec, f, env, err = unwrap(raw, hint); err != nil {
			return nil, err
		}
		if hintErr != nil && env == nil && (f == hint || f == FormatUnknown) {
			return nil, fmt.Errorf("%s: %w", hint, hintErr) // not an envelope: that is why
		}
		m := mappers[f]
		switch {
		case f == FormatDigest:
			return nil, ErrDigest
		case m == nil:
			return nil, ErrUnknownFormat
		}
		if ev, err = m(rec); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	if env != nil {
		if ev.Unmapped == nil {
			ev.Unmapped = ocsf.Unmapped{}
		}
		ev.Unmapped["envelope"] = env
	}
	ev.Metadata.Version = ocsf.Version
	ev.Metadata.Profiles = cloudProfile
	if !n.NoProcessedTime {
		now := time.Now
		if n.Now != nil {
			now = n.Now
		}
		ev.Metadata.ProcessedTime = now().UnixMilli()
	}
	// raw_data is the record itself, exactly: the same CloudTrail record
	// reads the same whether it came in an S3 file or through EventBridge.
	sum := sha256.Sum256(rec)
	ev.RawData = unsafe.String(unsafe.SliceData(rec), len(rec)) // rec is ours and immutable
	ev.RawDataHash = &ocsf.Fingerprint{AlgorithmID: 3, Algorithm: "SHA-256", Value: hex.EncodeToString(sum[:])}
	ev.RawDataSize = int64(len(rec))
	if len(ev.Unmapped) == 0 {
		ev.Unmapped = nil
	}

	out := &Event{UID: ev.Metadata.UID, Time: time.UnixMilli(ev.Time).UTC(), OCSF: ev}
	out.Cloud = f.Cloud()
	if ev.Cloud != nil && ev.Cloud.Account != nil {
		out.Account = ev.Cloud.Account.UID
	}
	if ev.API != nil && ev.API.Service != nil {
		out.Service = ev.API.Service.Name
	}
	if err := out.Encode(); err != nil {
		return nil, err
	}
	return out, nil
}
