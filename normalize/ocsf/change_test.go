package ocsf

import "testing"

// One definition of a change for the correlator, the drift detector and
// the index: logins and credential exchanges are evidence of who, never
// changes; the identity service's admin calls are changes.
func TestIsChange(t *testing.T) {
	api := func(service, op string, activity int) *Event {
		return &Event{ClassUID: ClassAPIActivity, ActivityID: activity, API: &API{Operation: op, Service: &Service{Name: service}}}
	}
	for _, tc := range []struct {
		name string
		e    *Event
		want bool
	}{
		{"EC2 RunInstances", api("ec2.amazonaws.com", "RunInstances", 1), true},
		{"EC2 DescribeInstances", api("ec2.amazonaws.com", "DescribeInstances", ActivityRead), false},
		{"STS AssumeRoleWithWebIdentity (a run's OIDC login)", api("sts.amazonaws.com", "AssumeRoleWithWebIdentity", 1), false},
		{"STS GetSessionToken", api("sts.amazonaws.com", "GetSessionToken", 99), false},
		{"STS GetFederationToken", api("sts.amazonaws.com", "GetFederationToken", 1), false},
		{"ConsoleLogin as Authentication", &Event{ClassUID: ClassAuthentication, ActivityID: 1}, false},
		{"ConsoleLogin as an API call", api("signin.amazonaws.com", "ConsoleLogin", 99), false},
		{"Identity Center portal GetRoleCredentials", api("sso.amazonaws.com", "GetRoleCredentials", 99), false},
		{"Identity Center CreateAccountAssignment", api("sso.amazonaws.com", "CreateAccountAssignment", 1), true},
		{"IAM CreateAccessKey", api("iam.amazonaws.com", "CreateAccessKey", 1), true},
		{"GCP GenerateAccessToken", api("iamcredentials.googleapis.com", "GenerateAccessToken", 1), false},
		{"GCP SignJwt, full method", api("iamcredentials.googleapis.com", "google.iam.credentials.v1.IAMCredentials.SignJwt", 99), false},
		{"GCP STS ExchangeToken", api("sts.googleapis.com", "google.identity.sts.v1.SecurityTokenService.ExchangeToken", 99), false},
		{"GCP instances.insert", api("compute.googleapis.com", "v1.compute.instances.insert", 1), true},
		{"GCP SetIamPolicy", api("cloudresourcemanager.googleapis.com", "SetIamPolicy", 3), true},
		{"Azure write", api("Microsoft.Network", "Microsoft.Network/networkSecurityGroups/write", 3), true},
		{"Account Change", &Event{ClassUID: ClassAccountChange, ActivityID: 1}, true},
		{"Detection Finding", &Event{ClassUID: ClassDetectionFinding, ActivityID: 1}, false},
	} {
		if got := tc.e.IsChange(); got != tc.want {
			t.Errorf("%s: IsChange = %v, want %v", tc.name, got, tc.want)
		}
	}
}
