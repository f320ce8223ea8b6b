package gcpaudit

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/config"
)

// The `type:` of the two collectors in the config.
const (
	TypeAPI    = "gcp_audit_api"
	TypePubSub = "gcp_audit_pubsub"
)

// Access says how to reach Google Cloud.
type Access struct {
	// CredentialsFile is a service account key; empty: Application
	// Default Credentials.
	CredentialsFile config.FilePath `yaml:"credentials_file"`
	// ImpersonateServiceAccount is assumed from those credentials
	// (roles/iam.serviceAccountTokenCreator on it).
	ImpersonateServiceAccount string `yaml:"impersonate_service_account"`
	// QuotaProject is billed for the requests and owns the read quota.
	QuotaProject string `yaml:"quota_project"`
	// Endpoint replaces the API endpoint (host:port): private endpoints,
	// local fakes.
	Endpoint string `yaml:"endpoint"`
	// Insecure speaks plaintext gRPC without credentials: local fakes only.
	Insecure bool `yaml:"insecure"`
}

var saRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,29}@[a-z0-9-]+\.iam\.gserviceaccount\.com$`)

func (a *Access) validate() []error {
	var errs []error
	if a.ImpersonateServiceAccount != "" && !saRE.MatchString(a.ImpersonateServiceAccount) {
		errs = append(errs, config.Errorf("impersonate_service_account", "%q is not a service account email", a.ImpersonateServiceAccount))
	}
	if a.Insecure && a.Endpoint == "" {
		errs = append(errs, config.Errorf("insecure", "only with an endpoint (a local fake)"))
	}
	return errs
}

// Audit log ids, as the config names them.
var auditLogs = map[string]string{
	"activity":     "cloudaudit.googleapis.com%2Factivity",
	"data_access":  "cloudaudit.googleapis.com%2Fdata_access",
	"system_event": "cloudaudit.googleapis.com%2Fsystem_event",
	"policy":       "cloudaudit.googleapis.com%2Fpolicy",
}

var resourceRE = regexp.MustCompile(`^(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]|folders/\d+|organizations/\d+|billingAccounts/[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6})$`)

// APIConfig is a gcp_audit_api source: entries.list over resource names.
type APIConfig struct {
	config.SourceBase `yaml:",inline"`
	Access            `yaml:",inline"`
	// ResourceNames to read: projects/ID, folders/N, organizations/N,
	// billingAccounts/ID. Querying an organization returns its own
	// entries only; org-wide collection is gcp_audit_pubsub's job.
	ResourceNames []string `yaml:"resource_names"`
	// BatchSize is how many resource names share one request and one
	// cursor: 1 keeps every resource's cursor apart; more saves quota.
	BatchSize int `yaml:"batch_size"`
	// Logs are the audit logs read: activity, data_access, system_event,
	// policy.
	Logs []string `yaml:"logs"`
	// Filter is ANDed to the log and time filter trailkeeper writes.
	Filter string `yaml:"filter"`
	// Lag keeps windows behind now: entries reach Cloud Logging within
	// seconds, rarely minutes.
	Lag time.Duration `yaml:"lag"`
	// Overlap is re-read by each poll, counted back from when the previous
	// scan began: entries can be ingested minutes after their timestamp.
	Overlap time.Duration `yaml:"overlap"`
	// Backfill is how far back the first start reads (Admin Activity logs
	// are kept 400 days, Data Access 30 by default).
	Backfill time.Duration `yaml:"backfill"`
	// Window is the first span of a scan; it adapts (see scan).
	Window time.Duration `yaml:"window"`
	// PageSize of entries.list (at most 1000).
	PageSize int `yaml:"page_size"`
	// RequestsPerMinute is the budget per quota project, shared by every
	// source and stream using it. Cloud Logging allows 60 reads a minute.
	RequestsPerMinute float64 `yaml:"requests_per_minute"`
}

// NewAPIConfig returns the defaults.
func NewAPIConfig() *APIConfig {
	return &APIConfig{
		SourceBase:        config.SourceBase{Type: TypeAPI, PollInterval: time.Minute},
		BatchSize:         1,
		Logs:              []string{"activity", "data_access", "system_event", "policy"},
		Lag:               time.Minute,
		Overlap:           10 * time.Minute,
		Backfill:          24 * time.Hour,
		Window:            time.Hour,
		PageSize:          1000,
		RequestsPerMinute: 50,
	}
}

// Validate implements config.SourceConfig.
func (c *APIConfig) Validate() error {
	errs := c.Access.validate()
	errs = append(errs, c.Scan().Validate(400*24*time.Hour, "the longest retention")...)
	if len(c.ResourceNames) == 0 {
		errs = append(errs, config.Errorf("resource_names", "must list projects/…, folders/…, organizations/… or billingAccounts/…"))
	}
	for i, r := range c.ResourceNames {
		if !resourceRE.MatchString(r) {
			errs = append(errs, config.Errorf(fmt.Sprintf("resource_names[%d]", i), "%q is not a project, folder, organization or billing account", r))
		}
	}
	if c.BatchSize < 1 || c.BatchSize > 100 {
		errs = append(errs, config.Errorf("batch_size", "must be between 1 and 100"))
	}
	if len(c.Logs) == 0 {
		errs = append(errs, config.Errorf("logs", "must name at least one of activity, data_access, system_event, policy"))
	}
	for i, l := range c.Logs {
		if _, ok := auditLogs[l]; !ok {
			errs = append(errs, config.Errorf(fmt.Sprintf("logs[%d]", i), "%q is not activity, data_access, system_event or policy", l))
		}
	}
	if c.PageSize < 1 || c.PageSize > 1000 {
		errs = append(errs, config.Errorf("page_size", "must be between 1 and 1000"))
	}
	if c.RequestsPerMinute <= 0 || c.RequestsPerMinute > 60 {
		errs = append(errs, config.Errorf("requests_per_minute", "must be more than 0 and at most 60, Cloud Logging's read quota"))
	}
	return errors.Join(errs...)
}

// PubSubConfig is a gcp_audit_pubsub source: a pull subscription fed by a
// log sink (an organization's aggregated sink, typically).
type PubSubConfig struct {
	config.SourceBase `yaml:",inline"`
	Access            `yaml:",inline"`
	// Subscription is projects/P/subscriptions/S.
	Subscription string `yaml:"subscription"`
	// MaxMessages is the most messages one pull takes.
	MaxMessages int `yaml:"max_messages"`
	// MaxOutstanding bounds messages pulled but not yet acked: flow
	// control, so a slow stream does not pile up leases.
	MaxOutstanding int `yaml:"max_outstanding"`
	// AckDeadline is how long a pulled message stays leased; it is
	// extended while its events are in flight.
	AckDeadline time.Duration `yaml:"ack_deadline"`
}

var subRE = regexp.MustCompile(`^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/subscriptions/[A-Za-z][\w.~+%-]{2,254}$`)

// NewPubSubConfig returns the defaults.
func NewPubSubConfig() *PubSubConfig {
	return &PubSubConfig{
		SourceBase:     config.SourceBase{Type: TypePubSub, PollInterval: 5 * time.Second},
		MaxMessages:    500,
		MaxOutstanding: 5000,
		AckDeadline:    time.Minute,
	}
}

// Validate implements config.SourceConfig.
func (c *PubSubConfig) Validate() error {
	errs := c.Access.validate()
	if !subRE.MatchString(c.Subscription) {
		errs = append(errs, config.Errorf("subscription", "%q is not projects/PROJECT/subscriptions/NAME", c.Subscription))
	}
	if c.MaxMessages < 1 || c.MaxMessages > 1000 {
		errs = append(errs, config.Errorf("max_messages", "must be between 1 and 1000"))
	}
	if c.MaxOutstanding < c.MaxMessages {
		errs = append(errs, config.Errorf("max_outstanding", "must be at least max_messages"))
	}
	if c.AckDeadline < 10*time.Second || c.AckDeadline > 600*time.Second {
		errs = append(errs, config.Errorf("ack_deadline", "must be between 10s and 10m (Pub/Sub's range)"))
	}
	return errors.Join(errs...)
}

// Scan is the windowed-scan part of the config.
func (c *APIConfig) Scan() scan.Settings {
	return scan.Settings{Lag: c.Lag, Overlap: c.Overlap, Backfill: c.Backfill, Window: c.Window}
}
