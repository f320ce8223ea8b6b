// Package registry lists every collector type the daemon knows. Adding a
// transport is one folder under collectors/ plus one line here; there is no
// init() registration.
package registry

import (
	"maps"
	"slices"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/azureactivity"
	"github.com/trailkeeper/trailkeeper/collectors/cloudtrail"
	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/collectors/gcpaudit"
	"github.com/trailkeeper/trailkeeper/config"
)

// factories maps the `type:` of a source to its collector.
var factories = map[string]collectors.Factory{
	files.Type:             files.NewFactory(),
	cloudtrail.TypeAPI:     cloudtrail.NewAPIFactory(),
	cloudtrail.TypeS3:      cloudtrail.NewS3Factory(),
	gcpaudit.TypeAPI:       gcpaudit.NewAPIFactory(),
	gcpaudit.TypePubSub:    gcpaudit.NewPubSubFactory(),
	azureactivity.TypeAPI:  azureactivity.NewAPIFactory(),
	azureactivity.TypeBlob: azureactivity.NewBlobFactory(),
}

// Registry is the set of collector types; it implements config.SourceTypes.
type Registry struct{}

// Default is the registry of every built-in collector.
var Default Registry

// Factory returns the factory of a source type.
func (Registry) Factory(typ string) (collectors.Factory, bool) {
	f, ok := factories[typ]
	return f, ok
}

// NewSourceConfig implements config.SourceTypes.
func (Registry) NewSourceConfig(typ string) (config.SourceConfig, bool) {
	f, ok := factories[typ]
	if !ok {
		return nil, false
	}
	return f.NewConfig(), true
}

// Types implements config.SourceTypes.
func (Registry) Types() []string { return slices.Sorted(maps.Keys(factories)) }
