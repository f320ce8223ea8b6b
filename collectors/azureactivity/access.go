package azureactivity

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/trailkeeper/trailkeeper/collectors/internal/pace"
)

func cloudConfig(name string) cloud.Configuration {
	switch name {
	case "AzureGovernment":
		return cloud.AzureGovernment
	case "AzureChina":
		return cloud.AzureChina
	}
	return cloud.AzurePublic
}

// credential builds the Entra ID credential the access config names.
func credential(a *Access, opts azcore.ClientOptions) (azcore.TokenCredential, error) {
	switch {
	case a.ClientSecret != "":
		return azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, string(a.ClientSecret),
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts})
	case a.ClientCertificate != "":
		data, err := os.ReadFile(string(a.ClientCertificate))
		if err != nil {
			return nil, fmt.Errorf("client_certificate: %w", err)
		}
		certs, key, err := azidentity.ParseCertificates(data, nil)
		if err != nil {
			return nil, fmt.Errorf("client_certificate %s: %w", a.ClientCertificate, err)
		}
		return azidentity.NewClientCertificateCredential(a.TenantID, a.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts})
	case a.WorkloadIdentityTokenFile != "":
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: opts, TenantID: a.TenantID, ClientID: a.ClientID, TokenFilePath: string(a.WorkloadIdentityTokenFile),
		})
	}
	return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: opts, TenantID: a.TenantID})
}

// pacePolicy paces every attempt (it runs inside azcore's retry loop) and
// slows down on 429; azcore's retry policy itself waits out Retry-After.
type pacePolicy struct {
	lim        *pace.Limiter
	onThrottle func()
}

func (p pacePolicy) Do(req *policy.Request) (*http.Response, error) {
	if err := p.lim.Wait(req.Raw().Context()); err != nil {
		return nil, err
	}
	resp, err := req.Next()
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusTooManyRequests:
		var after time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			after = time.Duration(s) * time.Second
		}
		p.lim.Throttled(after)
		if p.onThrottle != nil {
			p.onThrottle()
		}
	case resp.StatusCode < 400:
		p.lim.Succeeded()
	}
	return resp, err
}
