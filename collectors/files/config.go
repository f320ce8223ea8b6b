package files

import (
	"errors"
	"os"
	"time"

	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// Type is the `type:` of this collector in the config.
const Type = "files"

// Config of a files source.
type Config struct {
	config.SourceBase `yaml:",inline"`
	// Path is the folder to read, recursively.
	Path config.FilePath `yaml:"path"`
	// Format forces the record format; auto detects it per file and record.
	Format string `yaml:"format"`
	// PageSize is the most records one poll returns.
	PageSize int `yaml:"page_size"`
	// Settle is how long a file must stay unchanged before a trailing
	// partial line is read as a record, or an undecodable file is declared
	// corrupt. Until then it is taken to be still being written.
	Settle time.Duration `yaml:"settle"`
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		SourceBase: config.SourceBase{Type: Type, PollInterval: 10 * time.Second},
		Format:     "auto",
		PageSize:   500,
		Settle:     5 * time.Second,
	}
}

var formats = map[string]normalize.Format{
	"auto":                              normalize.FormatUnknown,
	string(normalize.FormatCloudTrail):  normalize.FormatCloudTrail,
	string(normalize.FormatLookup):      normalize.FormatLookup,
	string(normalize.FormatGCPAudit):    normalize.FormatGCPAudit,
	string(normalize.FormatAzureREST):   normalize.FormatAzureREST,
	string(normalize.FormatAzureExport): normalize.FormatAzureExport,
}

// Validate implements config.SourceConfig.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, config.Errorf("path", "must be set"))
	} else if fi, err := os.Stat(string(c.Path)); err != nil {
		errs = append(errs, config.Errorf("path", "%v", err))
	} else if !fi.IsDir() {
		errs = append(errs, config.Errorf("path", "%s is not a folder", c.Path))
	}
	if _, ok := formats[c.Format]; !ok {
		errs = append(errs, config.Errorf("format", "must be auto, cloudtrail, cloudtrail_lookup, gcp_audit, azure_rest or azure_export, not %q", c.Format))
	}
	if c.PageSize < 1 || c.PageSize > 10000 {
		errs = append(errs, config.Errorf("page_size", "must be between 1 and 10000"))
	}
	if c.Settle < 0 {
		errs = append(errs, config.Errorf("settle", "must not be negative"))
	}
	return errors.Join(errs...)
}
