package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
	"github.com/trailkeeper/trailkeeper/sink"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Drift types (DESIGN §5).
const (
	DriftClickOps          = "CLICKOPS"
	DriftManualCLI         = "MANUAL_CLI"
	DriftIaCOutOfBand      = "IAC_OUT_OF_BAND"
	DriftForeignAutomation = "FOREIGN_AUTOMATION"
	// DriftOutOfPlan: a run's change to a resource its plan does not list
	// (lower severity: targeted replacements and provider side effects).
	DriftOutOfPlan = "OUT_OF_PLAN"
)

// Detector re-examines every successful change to an IaC-managed resource
// once the grace period has passed (runs and events both arrive late), and
// publishes a Detection Finding for those no run explains (best link below
// inferred) on audit.drift.<cloud>.<account>. It is a durable consumer of
// the event subjects; a message still inside its grace is handed back
// with a delay, so nothing waits in memory.
type Detector struct {
	JS         jetstream.JetStream
	Stream     string
	Consumer   string // default DRIFT
	Correlator *Correlator
	Sink       sink.Sink
	Grace      time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	// OnFinding, if set, is called with the drift type of each finding
	// published (metrics).
	OnFinding func(driftType string)
}

// Run detects until ctx ends.
func (d *Detector) Run(ctx context.Context) error {
	if d.Consumer == "" {
		d.Consumer = "DRIFT"
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	open := func() (jetstream.Consumer, error) {
		return d.JS.CreateOrUpdateConsumer(ctx, d.Stream, jetstream.ConsumerConfig{
			Durable: d.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
			FilterSubjects: []string{"audit.aws.>", "audit.gcp.>", "audit.azure.>"}, MaxDeliver: -1,
		})
	}
	cons, err := open()
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("drift consumer: %w", err)
	}
	var failing tkjs.FetchFailures
	for ctx.Err() == nil {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err == nil {
			for msg := range batch.Messages() {
				if err := d.handle(ctx, msg); err != nil {
					d.Logger.Warn("drift check failed; retried", "err", err)
					_ = msg.NakWithDelay(5 * time.Second)
				}
			}
			err = batch.Error() // once the messages are read
		}
		if ferr := failing.Note(err); ferr != nil && ctx.Err() == nil {
			// The consumer is gone (a broker that lost it) or keeps
			// failing: make it again (durable: it resumes where the
			// broker has it, and unacknowledged checks come again).
			d.Logger.Warn("drift consumer failing; making it again", "err", ferr)
			if c, oerr := open(); oerr == nil {
				cons = c
			}
			time.Sleep(time.Second)
			continue
		}
		if err != nil && !tkjs.FetchTimeout(err) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (d *Detector) handle(ctx context.Context, msg jetstream.Msg) error {
	var e ocsf.Event
	if err := json.Unmarshal(msg.Data(), &e); err != nil {
		return msg.Ack() // not an event: nothing to judge
	}
	if !changes(&e) || automation(&e) {
		return msg.Ack()
	}
	resource, ws, managed := d.managedResource(&e)
	if l, ok := d.Correlator.Link(&e, d.Now()); !managed && !(ok && len(l.Run.Plan) > 0 && len(e.Resources) > 0) {
		return msg.Ack() // neither managed nor made by a run with a plan
	}
	if wait := time.UnixMilli(e.Time).Add(d.Grace).Sub(d.Now()); wait > 0 {
		return msg.NakWithDelay(wait)
	}
	l, linked := d.Correlator.Link(&e, d.Now())
	var f *ocsf.Event
	switch {
	case linked && l.Confidence >= 0.60 && len(l.Run.Plan) > 0 && len(e.Resources) > 0:
		if _, ok := inPlan(l.Run, &e); ok {
			return msg.Ack() // explained, and planned
		}
		f = d.finding(&e, l, e.Resources[0].UID, ws, DriftOutOfPlan)
	case linked && l.Confidence >= 0.60, !managed:
		return msg.Ack() // a run explains it
	default:
		f = d.finding(&e, l, resource, ws, driftType(&e, l))
	}
	data := f.AppendJSON(nil)
	cloud, account := "", ""
	if e.Cloud != nil {
		cloud = strings.ToLower(e.Cloud.Provider)
		if e.Cloud.Account != nil {
			account = e.Cloud.Account.UID
		}
	}
	err := d.Sink.Publish(ctx, []sink.Message{{Subject: "audit.drift." + tkjs.Token(cloud) + "." + tkjs.Token(account), ID: f.Metadata.UID, Data: data}})
	if err != nil {
		return err
	}
	if d.OnFinding != nil {
		d.OnFinding(f.FindingInfo.Types[0])
	}
	return msg.Ack()
}

// managedResource returns the event's first resource that a state lists.
func (d *Detector) managedResource(e *ocsf.Event) (string, string, bool) {
	for _, r := range e.Resources {
		if ws, ok := d.Correlator.Registry.managedBy(r.UID); ok && r.UID != "" {
			return r.UID, ws, true
		}
	}
	return "", "", false
}

// automation is cloud-internal automation, which is never drift:
// service-linked roles and AWS services acting for themselves.
func automation(e *ocsf.Event) bool {
	if e.Actor == nil || e.Actor.User == nil {
		return false
	}
	u := e.Actor.User
	return u.Type == "AWSService" || strings.Contains(u.UID, ":assumed-role/AWSServiceRoleFor")
}

// driftType says what kind of hand made an unexplained change.
func driftType(e *ocsf.Event, l Link) string {
	ua := ""
	if e.HTTPRequest != nil {
		ua = e.HTTPRequest.UserAgent
	}
	switch {
	case strings.Contains(e.RawData, "cloudformation.amazonaws.com") || strings.Contains(ua, "Pulumi") && l.Run.Tool != "pulumi":
		return DriftForeignAutomation
	case clientKind(e, ua) == clientConsole:
		return DriftClickOps
	case strings.Contains(ua, "Terraform/") || strings.Contains(ua, "OpenTofu") || strings.Contains(ua, "Pulumi"):
		return DriftIaCOutOfBand
	}
	return DriftManualCLI
}

// finding is the OCSF Detection Finding of an unexplained change.
func (d *Detector) finding(e *ocsf.Event, l Link, resource, workspace, typ string) *ocsf.Event {
	now := d.Now()
	sev := ocsf.SeverityMedium
	if typ == DriftOutOfPlan {
		sev = ocsf.SeverityLow
	}
	f := &ocsf.Event{Time: now.UnixMilli(), SeverityID: sev, Severity: ocsf.SeverityName(sev)}
	f.SetClass(ocsf.ClassDetectionFinding, 1, "Create")
	op := ""
	if e.API != nil {
		op = e.API.Operation
	}
	title := fmt.Sprintf("%s: %s on %s, which workspace %s manages, outside any IaC run", typ, op, resource, workspace)
	if typ == DriftOutOfPlan {
		title = fmt.Sprintf("%s: run %s made %s on %s, which its plan does not list", typ, l.Run.Key, op, resource)
	}
	f.FindingInfo = &ocsf.FindingInfo{
		UID:   "drift:" + e.Metadata.UID,
		Title: title,
		Types: []string{typ}, CreatedTime: now.UnixMilli(),
	}
	f.Metadata = ocsf.Metadata{UID: "drift:" + e.Metadata.UID, Version: ocsf.Version,
		Product: ocsf.Product{Name: "trailkeeper", VendorName: "trailkeeper"}, CorrelationUID: e.Metadata.UID,
		Profiles: []string{"cloud", "host"}}
	f.Actor, f.Cloud, f.Resources = e.Actor, e.Cloud, e.Resources
	f.StatusID, f.Status = 1, "Success"
	evidence := append([]string{}, l.Evidence...)
	if l.Run.Key == "" {
		evidence = append(evidence, "no run's window holds the change")
	}
	runs, _ := json.Marshal(map[string]any{"event_uid": e.Metadata.UID, "drift_type": typ, "workspace": workspace,
		"best_run": l.Run.Key, "confidence": l.Confidence, "evidence": evidence})
	f.Unmapped = ocsf.Unmapped{"trailkeeper": runs}
	return f
}
