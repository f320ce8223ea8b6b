package azureactivity

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	azfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/azure"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// TestRESTAndExportAgree: the same operation read from the REST API and
// from a diagnostic-settings export maps to the same action, actor and
// resource, whatever the export's upper-casing.
func TestRESTAndExportAgree(t *testing.T) {
	at := time.Date(2026, 11, 23, 11, 55, 0, 0, time.UTC)
	rest := azfake.MakeEvent(subA, "x1", "Microsoft.Storage/storageAccounts/write", at)
	rid := rest.Raw["resourceId"].(string)
	export := map[string]any{
		"time": at.Format("2006-01-02T15:04:05.0000000Z"), "resourceId": strings.ToUpper(rid),
		"operationName": "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE", "category": "Administrative",
		"resultType": "Success", "resultSignature": "Succeeded.OK", "callerIpAddress": "203.0.113.9",
		"correlationId": "corr-x1", "level": "Information",
		"identity":   map[string]any{"authorization": rest.Raw["authorization"], "claims": rest.Raw["claims"]},
		"properties": map[string]any{"statusCode": "OK"},
	}
	// The REST record names its caller; the export has it in the claims.
	claims := rest.Raw["claims"].(map[string]any)
	claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = rest.Raw["caller"]

	var got [2]struct {
		API struct {
			Operation string `json:"operation"`
		} `json:"api"`
		Actor struct {
			User struct {
				UID  string `json:"uid"`
				Name string `json:"name"`
			} `json:"user"`
		} `json:"actor"`
		Resources []struct {
			UID string `json:"uid"`
		} `json:"resources"`
		Cloud struct {
			Account struct {
				UID string `json:"uid"`
			} `json:"account"`
		} `json:"cloud"`
	}
	for i, rec := range []map[string]any{rest.Raw, export} {
		raw, _ := json.Marshal(rec)
		ev, err := normalize.Normalize(raw, normalize.FormatUnknown)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := json.Unmarshal(ev.JSON, &got[i]); err != nil {
			t.Fatal(err)
		}
	}
	r, e := got[0], got[1]
	switch {
	case !strings.EqualFold(r.API.Operation, e.API.Operation) || r.API.Operation == "":
		t.Errorf("action: REST %q, export %q", r.API.Operation, e.API.Operation)
	case r.Actor.User.UID != e.Actor.User.UID || r.Actor.User.Name != e.Actor.User.Name || r.Actor.User.UID == "":
		t.Errorf("actor: REST %+v, export %+v", r.Actor.User, e.Actor.User)
	case len(r.Resources) == 0 || len(e.Resources) == 0 || !strings.EqualFold(r.Resources[0].UID, e.Resources[0].UID):
		t.Errorf("resource: REST %+v, export %+v", r.Resources, e.Resources)
	case !strings.EqualFold(r.Cloud.Account.UID, e.Cloud.Account.UID) || r.Cloud.Account.UID != subA:
		t.Errorf("subscription: REST %q, export %q", r.Cloud.Account.UID, e.Cloud.Account.UID)
	}
}
