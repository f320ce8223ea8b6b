package ocsf

import "strings"

// IsChange reports whether e changed something in a cloud: an API call
// other than a read, or an account change, whatever its outcome. Sign-ins
// and credential exchanges are who acted, not what changed: they are a
// run's identity chain (evidence for a link), never one of its changes,
// and never drift. The correlator, the drift detector and the on-call
// index all use this one definition.
func (e *Event) IsChange() bool {
	switch e.ClassUID {
	case ClassAccountChange:
		return true
	case ClassAPIActivity:
		return e.ActivityID != ActivityRead && !e.IsIdentityCall()
	}
	return false // sign-ins (Authentication), findings, anything else
}

// IsIdentityCall: an API call that signs in, or exchanges or mints
// credentials (AWS STS and sign-in, IAM Identity Center's portal, GCP's
// IAM credentials and STS); Azure's Activity Log records no token issuance.
func (e *Event) IsIdentityCall() bool {
	if e.API == nil {
		return false
	}
	service := ""
	if e.API.Service != nil {
		service = e.API.Service.Name
	}
	op := e.API.Operation
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:] // google.iam.credentials.v1.IAMCredentials.GenerateAccessToken
	}
	switch service {
	case "signin.amazonaws.com", "portal.sso.amazonaws.com", "sso-oauth.amazonaws.com", "oidc.amazonaws.com":
		return true
	case "sso.amazonaws.com":
		// The access portal's calls; the same service's admin calls
		// (CreateAccountAssignment, …) are changes.
		switch op {
		case "Authenticate", "Federate", "GetRoleCredentials", "Logout", "ListAccounts", "ListAccountRoles":
			return true
		}
	case "sts.amazonaws.com":
		return strings.HasPrefix(op, "AssumeRole") || strings.HasPrefix(op, "Get") || op == "AssumeRoot" || op == "DecodeAuthorizationMessage"
	case "iamcredentials.googleapis.com", "sts.googleapis.com":
		return true
	}
	return false
}
