package gcpaudit

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	api := NewAPIConfig()
	api.ResourceNames = []string{"projects/x", "orgs/1"}
	api.Logs = []string{"activity", "audit"}
	api.BatchSize = 0
	api.PageSize = 5000
	api.RequestsPerMinute = 100
	api.Backfill = 500 * 24 * time.Hour
	api.Insecure = true
	api.ImpersonateServiceAccount = "someone@example.com"
	err := api.Validate()
	for _, want := range []string{"resource_names[0]", "resource_names[1]", "logs[1]", "batch_size", "page_size", "requests_per_minute", "backfill", "insecure", "impersonate_service_account"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("api: error does not mention %s: %v", want, err)
		}
	}
	ok := NewAPIConfig()
	ok.ResourceNames = []string{"projects/prod-payments", "folders/123", "organizations/456", "billingAccounts/01ABCD-23EF45-6789AB"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid api config: %v", err)
	}

	ps := NewPubSubConfig()
	ps.Subscription = "subs/x"
	ps.MaxOutstanding = 1
	ps.AckDeadline = time.Hour
	err = ps.Validate()
	for _, want := range []string{"subscription", "max_outstanding", "ack_deadline"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pubsub: error does not mention %s: %v", want, err)
		}
	}
}
