package cloudtrail

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/cenkalti/backoff/v5"
)

// target is one account × region to read.
type target struct {
	Account, Region string
	cfg             aws.Config // credentials of the account, region set
}

// loadBase is the SDK config before any AssumeRole: the default chain, or
// the profile; EndpointURL replaces every endpoint.
func loadBase(ctx context.Context, a *Access) (aws.Config, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if a.Profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(a.Profile))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
	}
	if a.EndpointURL != "" {
		cfg.BaseEndpoint = aws.String(a.EndpointURL)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // STS and DescribeRegions need one; reads set their own
	}
	return cfg, nil
}

// accountConfigs returns one SDK config per account: base with an
// AssumeRole provider when a role is configured.
func accountConfigs(ctx context.Context, base aws.Config, a *Access) (map[string]aws.Config, error) {
	roles := map[string]string{} // account → role ARN ("" for base credentials)
	switch {
	case len(a.RoleARNs) > 0:
		for _, r := range a.RoleARNs {
			roles[accountOf(r)] = r
		}
	case len(a.Accounts) > 0:
		for _, acct := range a.Accounts {
			roles[acct] = strings.ReplaceAll(a.RoleARN, "{account}", acct)
		}
	case a.RoleARN != "":
		roles[accountOf(a.RoleARN)] = a.RoleARN
	default:
		id, err := sts.NewFromConfig(base).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return nil, fmt.Errorf("who are the default credentials (sts:GetCallerIdentity): %w", err)
		}
		roles[aws.ToString(id.Account)] = ""
	}
	out := map[string]aws.Config{}
	stsClient := sts.NewFromConfig(base)
	for acct, role := range roles {
		cfg := base.Copy()
		if role != "" {
			p := stscreds.NewAssumeRoleProvider(stsClient, role, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = a.SessionName
				if a.ExternalID != "" {
					o.ExternalID = aws.String(string(a.ExternalID))
				}
				if a.SourceIdentity != "" {
					o.SourceIdentity = aws.String(a.SourceIdentity)
				}
			})
			cfg.Credentials = aws.NewCredentialsCache(p)
		}
		out[acct] = cfg
	}
	return out, nil
}

// accountOf is the account of a role ARN (validated).
func accountOf(arn string) string { return strings.Split(arn, ":")[4] }

// targets expands the access config into account × region targets, in a
// stable order. Regions "all_enabled" are asked of each account, with
// retries bounded by ctx: a daemon that starts while AWS blinks should not
// die of it.
func targets(ctx context.Context, base aws.Config, a *Access) ([]target, error) {
	accts, err := accountConfigs(ctx, base, a)
	if err != nil {
		return nil, err
	}
	var out []target
	for _, acct := range slices.Sorted(maps.Keys(accts)) {
		cfg := accts[acct]
		regions := a.Regions
		if len(regions) == 1 && regions[0] == AllEnabled {
			regions, err = enabledRegions(ctx, cfg)
			if err != nil {
				return nil, fmt.Errorf("account %s: %w", acct, err)
			}
		}
		for _, r := range regions {
			c := cfg.Copy()
			c.Region = r
			out = append(out, target{Account: acct, Region: r, cfg: c})
		}
	}
	return out, nil
}

func enabledRegions(ctx context.Context, cfg aws.Config) ([]string, error) {
	b := backoff.NewExponentialBackOff()
	return backoff.Retry(ctx, func() ([]string, error) {
		out, err := ec2.NewFromConfig(cfg).DescribeRegions(ctx, &ec2.DescribeRegionsInput{AllRegions: aws.Bool(false)})
		if err != nil {
			return nil, fmt.Errorf("list enabled regions (ec2:DescribeRegions): %w", err)
		}
		var rs []string
		for _, r := range out.Regions {
			rs = append(rs, aws.ToString(r.RegionName))
		}
		if len(rs) == 0 {
			return nil, backoff.Permanent(errors.New("no enabled regions"))
		}
		slices.Sort(rs)
		return rs, nil
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(time.Minute))
}
