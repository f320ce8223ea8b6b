package correlate

import (
	"regexp"
	"strings"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// What kind of client made a call: it decides CLICKOPS against MANUAL_CLI,
// and caps inference for a person at a console.
const (
	clientConsole = "console"
	clientCLI     = "cli"
)

// azureClients are the well-known first-party application ids Azure
// records carry in the caller's claims (claims.appid, appid, azp): Azure
// Activity Log records have no user agent, so this is how a portal click
// is told from the CLI. Sources in docs/correlation.md.
var azureClients = map[string]string{
	"c44b4083-3bb0-49c1-b47d-974e53cbdf3c": clientConsole, // Azure Portal
	"04b07795-8ddb-461a-bbee-02f9e1bf7b46": clientCLI,     // Azure CLI (also inside Cloud Shell)
	"1950a258-227b-4e31-a9cf-717495945fc2": clientCLI,     // Azure PowerShell (also inside Cloud Shell)
}

var appIDRE = regexp.MustCompile(`"(?:appid|appId|azp)"\s*:\s*"([0-9a-fA-F-]{36})"`)

// clientKind reads the client from the record: Azure's application id,
// CloudTrail's sessionCredentialFromConsole, and console user agents in
// every cloud; "" when the record does not say.
func clientKind(e *ocsf.Event, ua string) string {
	for _, m := range appIDRE.FindAllStringSubmatch(e.RawData, -1) {
		if k, ok := azureClients[strings.ToLower(m[1])]; ok {
			return k
		}
	}
	if strings.Contains(e.RawData, `"sessionCredentialFromConsole":"true"`) || strings.Contains(e.RawData, `"sessionCredentialFromConsole": "true"`) {
		return clientConsole
	}
	if strings.Contains(ua, "Mozilla/") || strings.Contains(strings.ToLower(ua), "console") {
		return clientConsole
	}
	return ""
}
