package cloudtrail

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/config"
)

// The `type:` of the two collectors in the config.
const (
	TypeAPI = "cloudtrail_api"
	TypeS3  = "cloudtrail_s3"
)

// AllEnabled as the only region means every region enabled in the account.
const AllEnabled = "all_enabled"

// Access says which accounts and regions to read, and how to reach them.
type Access struct {
	// Accounts to read (12 digits). Empty: the account of the default
	// credentials, without AssumeRole.
	Accounts []string `yaml:"accounts"`
	// RoleARN is the role assumed in each account; "{account}" is replaced
	// by the account id. Empty: the default credentials read every account
	// (an organization trail's bucket, say).
	RoleARN string `yaml:"role_arn"`
	// RoleARNs lists roles explicitly instead; their accounts are read.
	RoleARNs       []string      `yaml:"role_arns"`
	ExternalID     config.Secret `yaml:"external_id"`     // the roles' sts:ExternalId condition
	SessionName    string        `yaml:"session_name"`    // of the assumed-role sessions (default trailkeeper)
	SourceIdentity string        `yaml:"source_identity"` // set on the sessions, visible in the accounts' own trails
	// Regions to read, or [all_enabled] (ec2:DescribeRegions per account).
	Regions []string `yaml:"regions"`
	// Profile of the shared AWS config to start from; empty: the default
	// chain (env, config files, web identity, IMDS).
	Profile string `yaml:"profile"`
	// EndpointURL replaces every AWS endpoint (VPC endpoints, local fakes).
	EndpointURL string `yaml:"endpoint_url"`
}

var (
	accountRE = regexp.MustCompile(`^\d{12}$`)
	roleRE    = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}|\{account\}):role/[\w+=,.@/-]+$`)
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
)

func (a *Access) defaults() {
	a.SessionName = "trailkeeper"
	a.Regions = []string{AllEnabled}
}

func (a *Access) validate(rolePerAccount bool) []error {
	var errs []error
	for i, acct := range a.Accounts {
		if !accountRE.MatchString(acct) {
			errs = append(errs, config.Errorf(fmt.Sprintf("accounts[%d]", i), "%q is not a 12-digit account id", acct))
		}
	}
	if a.RoleARN != "" {
		if !roleRE.MatchString(a.RoleARN) {
			errs = append(errs, config.Errorf("role_arn", "%q is not a role ARN", a.RoleARN))
		} else if !rolePerAccount {
			if strings.Contains(a.RoleARN, "{account}") {
				errs = append(errs, config.Errorf("role_arn", "is the one role that reads the bucket: no {account}"))
			}
		} else if len(a.Accounts) > 1 && !strings.Contains(a.RoleARN, "{account}") {
			errs = append(errs, config.Errorf("role_arn", "must contain {account} when several accounts are listed"))
		} else if len(a.Accounts) == 0 && strings.Contains(a.RoleARN, "{account}") {
			errs = append(errs, config.Errorf("accounts", "must list the accounts that role_arn's {account} stands for"))
		}
	}
	if len(a.RoleARNs) > 0 && (a.RoleARN != "" || len(a.Accounts) > 0) {
		errs = append(errs, config.Errorf("role_arns", "use either role_arns, or accounts with role_arn"))
	}
	for i, r := range a.RoleARNs {
		if !roleRE.MatchString(r) || strings.Contains(r, "{account}") {
			errs = append(errs, config.Errorf(fmt.Sprintf("role_arns[%d]", i), "%q is not a role ARN", r))
		}
	}
	if len(a.SessionName) < 2 || len(a.SessionName) > 64 {
		errs = append(errs, config.Errorf("session_name", "must be 2 to 64 characters"))
	}
	if len(a.Regions) == 0 {
		errs = append(errs, config.Errorf("regions", "must list regions, or be [%s]", AllEnabled))
	}
	for i, r := range a.Regions {
		if r == AllEnabled && len(a.Regions) > 1 {
			errs = append(errs, config.Errorf("regions", "%s stands alone", AllEnabled))
		} else if r != AllEnabled && !regionRE.MatchString(r) {
			errs = append(errs, config.Errorf(fmt.Sprintf("regions[%d]", i), "%q is not a region", r))
		}
	}
	return errs
}

// APIConfig is a cloudtrail_api source: LookupEvents per account × region.
type APIConfig struct {
	config.SourceBase `yaml:",inline"`
	Access            `yaml:",inline"`
	// Lag keeps windows this far behind now: CloudTrail makes an event
	// visible about 5 minutes after the call on average.
	Lag time.Duration `yaml:"lag"`
	// Overlap is re-read by every poll, counted back from when the previous
	// scan started, so events that appear up to this late are caught.
	// AWS: usually within 15 minutes, no guarantee. The stream's duplicate
	// window must be longer (default 2h).
	Overlap time.Duration `yaml:"overlap"`
	// Backfill is how far back the first start reads (at most 90 days,
	// what LookupEvents keeps).
	Backfill time.Duration `yaml:"backfill"`
	// Window is the longest time span of one paginated scan, so a back-fill
	// moves forward in time and its cursor saves progress.
	Window time.Duration `yaml:"window"`
	// RequestsPerSecond is the ceiling per account and region (AWS: 2). It
	// halves on each ThrottlingException and climbs back as calls succeed.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
}

// NewAPIConfig returns the defaults.
func NewAPIConfig() *APIConfig {
	c := &APIConfig{
		SourceBase:        config.SourceBase{Type: TypeAPI, PollInterval: time.Minute},
		Lag:               5 * time.Minute,
		Overlap:           20 * time.Minute,
		Backfill:          24 * time.Hour,
		Window:            time.Hour,
		RequestsPerSecond: 1.9, // under 2: requests are measured at AWS, after network jitter
	}
	c.Access.defaults()
	return c
}

// Validate implements config.SourceConfig.
func (c *APIConfig) Validate() error {
	errs := c.Access.validate(true)
	errs = append(errs, c.Scan().Validate(90*24*time.Hour, "what LookupEvents keeps")...)
	if c.RequestsPerSecond <= 0 || c.RequestsPerSecond > 2 {
		errs = append(errs, config.Errorf("requests_per_second", "must be more than 0 and at most 2, LookupEvents' limit"))
	}
	return errors.Join(errs...)
}

// S3Config is a cloudtrail_s3 source: the log files a trail delivers to a
// bucket, for the listed accounts and regions.
type S3Config struct {
	config.SourceBase `yaml:",inline"`
	// Accounts and Regions say which folders of the bucket to read
	// (AWSLogs/[org/]<account>/CloudTrail/<region>/…). RoleARN, if set, is
	// the one role that reads the bucket (the log-archive account's).
	Access `yaml:",inline"`
	Bucket string `yaml:"bucket"` // the trail's bucket
	// Prefix is the trail's S3 key prefix, if it has one.
	Prefix string `yaml:"prefix"`
	// OrgID (o-…) for an organization trail's layout.
	OrgID string `yaml:"org_id"`
	// Mode: list (key-cursor listing) or sqs (bucket notifications).
	Mode string `yaml:"mode"`
	// QueueURL of the notification queue, for mode sqs.
	QueueURL string `yaml:"queue_url"`
	// Lookback is how far behind the newest file read a listing still looks
	// for files that arrive out of order. CloudTrail delivers about every
	// 5 minutes; an hour covers its stragglers.
	Lookback time.Duration `yaml:"lookback"`
	// Backfill is how far back the first start reads.
	Backfill time.Duration `yaml:"backfill"`
	// VerifyDigests checks every digest file (signature, chain, log file
	// hashes) and publishes an attestation.
	VerifyDigests bool `yaml:"verify_digests"`
	// PageSize is the most records one poll returns; a larger file takes
	// several polls.
	PageSize int `yaml:"page_size"`
	// Visibility is how long a received SQS message stays hidden; it is
	// extended while its files are in flight.
	Visibility time.Duration `yaml:"visibility"`
}

// Modes of a cloudtrail_s3 source.
const (
	ModeList = "list"
	ModeSQS  = "sqs"
)

var orgRE = regexp.MustCompile(`^o-[a-z0-9]{10,32}$`)

// NewS3Config returns the defaults.
func NewS3Config() *S3Config {
	c := &S3Config{
		SourceBase:    config.SourceBase{Type: TypeS3, PollInterval: time.Minute},
		Mode:          ModeList,
		Lookback:      time.Hour,
		Backfill:      24 * time.Hour,
		VerifyDigests: true,
		PageSize:      1000,
		Visibility:    5 * time.Minute,
	}
	c.Access.defaults()
	return c
}

// Validate implements config.SourceConfig.
func (c *S3Config) Validate() error {
	errs := c.Access.validate(false)
	if c.Bucket == "" {
		errs = append(errs, config.Errorf("bucket", "must be set"))
	}
	if c.OrgID != "" && !orgRE.MatchString(c.OrgID) {
		errs = append(errs, config.Errorf("org_id", "%q is not an organization id (o-…)", c.OrgID))
	}
	switch c.Mode {
	case ModeList:
		if len(c.Accounts) == 0 {
			errs = append(errs, config.Errorf("accounts", "must list the accounts whose folders to read"))
		}
	case ModeSQS:
		if c.QueueURL == "" {
			errs = append(errs, config.Errorf("queue_url", "must be set for mode sqs"))
		}
	default:
		errs = append(errs, config.Errorf("mode", "must be list or sqs, not %q", c.Mode))
	}
	if c.Lookback < 0 {
		errs = append(errs, config.Errorf("lookback", "must not be negative"))
	}
	if c.Backfill <= 0 {
		errs = append(errs, config.Errorf("backfill", "must be more than 0"))
	}
	if c.PageSize < 1 || c.PageSize > 10000 {
		errs = append(errs, config.Errorf("page_size", "must be between 1 and 10000"))
	}
	if c.Visibility < 10*time.Second || c.Visibility > 12*time.Hour {
		errs = append(errs, config.Errorf("visibility", "must be between 10s and 12h (SQS' range)"))
	}
	return errors.Join(errs...)
}

// Scan is the windowed-scan part of the config.
func (c *APIConfig) Scan() scan.Settings {
	return scan.Settings{Lag: c.Lag, Overlap: c.Overlap, Backfill: c.Backfill, Window: c.Window}
}
