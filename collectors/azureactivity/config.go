package azureactivity

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
	TypeAPI  = "azure_activity_api"
	TypeBlob = "azure_activity_blob"
)

// Clouds selectable with `cloud:`.
var clouds = []string{"AzurePublic", "AzureGovernment", "AzureChina"}

// Access says how to authenticate with Entra ID. With none of the client
// settings, DefaultAzureCredential (environment, workload identity,
// managed identity, Azure CLI).
type Access struct {
	Cloud    string `yaml:"cloud"`     // AzurePublic, AzureGovernment or AzureChina
	TenantID string `yaml:"tenant_id"` // the Entra tenant of the app
	ClientID string `yaml:"client_id"` // the app (service principal) id
	// One of these, with tenant_id and client_id, picks the credential.
	ClientSecret              config.Secret   `yaml:"client_secret"`
	ClientCertificate         config.FilePath `yaml:"client_certificate"`           // PEM or PKCS#12
	WorkloadIdentityTokenFile config.FilePath `yaml:"workload_identity_token_file"` // a federated token (Kubernetes workload identity)
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (a *Access) validate() []error {
	var errs []error
	known := false
	for _, c := range clouds {
		known = known || c == a.Cloud
	}
	if !known {
		errs = append(errs, config.Errorf("cloud", "must be AzurePublic, AzureGovernment or AzureChina, not %q", a.Cloud))
	}
	n := 0
	for _, set := range []bool{a.ClientSecret != "", a.ClientCertificate != "", a.WorkloadIdentityTokenFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, config.Errorf("client_secret", "client_secret, client_certificate and workload_identity_token_file exclude each other"))
	}
	if n == 1 && (a.TenantID == "" || a.ClientID == "") {
		errs = append(errs, config.Errorf("tenant_id", "tenant_id and client_id are needed with an explicit credential"))
	}
	return errs
}

// APIConfig is an azure_activity_api source: the Activity Log REST API
// per subscription.
type APIConfig struct {
	config.SourceBase `yaml:",inline"`
	Access            `yaml:",inline"`
	// Subscriptions to read; empty: every enabled subscription the
	// credential can see.
	Subscriptions []string `yaml:"subscriptions"`
	// Lag keeps windows behind now: the Activity Log makes events
	// available within minutes.
	Lag time.Duration `yaml:"lag"`
	// Overlap is re-read by each poll, counted back from when the previous
	// scan began: events can arrive up to ~20 minutes late.
	Overlap time.Duration `yaml:"overlap"`
	// Backfill is how far back the first start reads (90 days kept).
	Backfill time.Duration `yaml:"backfill"`
	// Window is the first span of a scan; it adapts (see scan).
	Window time.Duration `yaml:"window"`
	// RequestsPerSecond per subscription: ARM reads are limited per
	// subscription and principal; 429 halves it and Retry-After pauses.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
}

// NewAPIConfig returns the defaults.
func NewAPIConfig() *APIConfig {
	return &APIConfig{
		SourceBase:        config.SourceBase{Type: TypeAPI, PollInterval: time.Minute},
		Access:            Access{Cloud: "AzurePublic"},
		Lag:               2 * time.Minute,
		Overlap:           30 * time.Minute,
		Backfill:          24 * time.Hour,
		Window:            time.Hour,
		RequestsPerSecond: 2,
	}
}

// Validate implements config.SourceConfig.
func (c *APIConfig) Validate() error {
	errs := c.Access.validate()
	errs = append(errs, c.Scan().Validate(90*24*time.Hour, "what the Activity Log keeps")...)
	for i, s := range c.Subscriptions {
		if !guidRE.MatchString(s) {
			errs = append(errs, config.Errorf(fmt.Sprintf("subscriptions[%d]", i), "%q is not a subscription id", s))
		}
	}
	if c.RequestsPerSecond <= 0 || c.RequestsPerSecond > 20 {
		errs = append(errs, config.Errorf("requests_per_second", "must be more than 0 and at most 20"))
	}
	return errors.Join(errs...)
}

// BlobConfig is an azure_activity_blob source: the Activity Log that a
// diagnostic setting archives to a storage account.
type BlobConfig struct {
	config.SourceBase `yaml:",inline"`
	Access            `yaml:",inline"`
	// AccountURL is https://ACCOUNT.blob.core.windows.net (the credential
	// above reads it: Storage Blob Data Reader), unless ConnectionString.
	AccountURL       string        `yaml:"account_url"`
	ConnectionString config.Secret `yaml:"connection_string"` // instead of account_url and a credential
	// Container the diagnostic setting writes to.
	Container string `yaml:"container"`
	// Prefix narrows the blobs read (one subscription, say).
	Prefix string `yaml:"prefix"`
	// Backfill is how far back (by the hour in the blob name) the first
	// start reads.
	Backfill time.Duration `yaml:"backfill"`
	// Lookback is how long an hourly blob is still watched for appended
	// lines after its hour: the export appends late.
	Lookback time.Duration `yaml:"lookback"`
	// PageSize is the most records one poll returns.
	PageSize int `yaml:"page_size"`
}

// NewBlobConfig returns the defaults.
func NewBlobConfig() *BlobConfig {
	return &BlobConfig{
		SourceBase: config.SourceBase{Type: TypeBlob, PollInterval: time.Minute},
		Access:     Access{Cloud: "AzurePublic"},
		Container:  "insights-activity-logs",
		Backfill:   24 * time.Hour,
		Lookback:   3 * time.Hour,
		PageSize:   1000,
	}
}

// Validate implements config.SourceConfig.
func (c *BlobConfig) Validate() error {
	errs := c.Access.validate()
	if (c.AccountURL == "") == (c.ConnectionString == "") {
		errs = append(errs, config.Errorf("account_url", "set account_url (with a credential) or connection_string, one of them"))
	}
	if c.Container == "" {
		errs = append(errs, config.Errorf("container", "must be set"))
	}
	if c.Backfill <= 0 {
		errs = append(errs, config.Errorf("backfill", "must be more than 0"))
	}
	if c.Lookback < time.Hour {
		errs = append(errs, config.Errorf("lookback", "must be at least 1h: the current hour's blob grows for the whole hour"))
	}
	if c.PageSize < 1 || c.PageSize > 10000 {
		errs = append(errs, config.Errorf("page_size", "must be between 1 and 10000"))
	}
	return errors.Join(errs...)
}

// Scan is the windowed-scan part of the config.
func (c *APIConfig) Scan() scan.Settings {
	return scan.Settings{Lag: c.Lag, Overlap: c.Overlap, Backfill: c.Backfill, Window: c.Window}
}
