package aws

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

func formValue(body []byte, name string) string {
	v, _ := url.ParseQuery(string(body))
	return v.Get(name)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// AssumeRoleCall is one AssumeRole the server answered.
type AssumeRoleCall struct {
	RoleARN, SessionName, ExternalID, SourceIdentity string
}

var (
	roleARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/.+$`)
	keySeq    atomic.Int64
)

// AssumeRoles returns the AssumeRole calls answered so far.
func (s *Server) AssumeRoles() []AssumeRoleCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AssumeRoleCall(nil), s.assumed...)
}

// query serves the query-protocol services: STS and EC2.
func (s *Server) query(c *call, body []byte) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		c.fail(http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	switch v.Get("Action") {
	case "AssumeRole":
		s.assumeRole(c, v)
	case "DescribeRegions":
		s.describeRegions(c)
	case "GetCallerIdentity":
		c.w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(c.w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>`+
			`<Arn>arn:aws:iam::%s:user/fake</Arn><UserId>AIDAFAKE</UserId><Account>%s</Account>`+
			`</GetCallerIdentityResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>`, c.account, c.account)
	default:
		c.fail(http.StatusBadRequest, "InvalidAction", v.Get("Action"))
	}
}

// assumeRole returns credentials whose access key the server maps to the
// role's account, so that later calls signed with them are that account's.
func (s *Server) assumeRole(c *call, v url.Values) {
	arn := v.Get("RoleArn")
	m := roleARNRE.FindStringSubmatch(arn)
	if m == nil {
		c.fail(http.StatusBadRequest, "ValidationError", "invalid RoleArn "+arn)
		return
	}
	key := fmt.Sprintf("ASIAFAKE%012d", keySeq.Add(1))
	s.mu.Lock()
	s.creds[key] = assumedCreds{account: m[1], session: v.Get("RoleSessionName")}
	s.assumed = append(s.assumed, AssumeRoleCall{RoleARN: arn, SessionName: v.Get("RoleSessionName"), ExternalID: v.Get("ExternalId"), SourceIdentity: v.Get("SourceIdentity")})
	exp := s.now().Add(time.Hour).UTC().Format(time.RFC3339)
	s.mu.Unlock()
	c.w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(c.w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>`+
		`<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>fake-secret</SecretAccessKey><SessionToken>fake-token</SessionToken><Expiration>%s</Expiration></Credentials>`+
		`<AssumedRoleUser><Arn>%s</Arn><AssumedRoleId>AROAFAKE:%s</AssumedRoleId></AssumedRoleUser><SourceIdentity>%s</SourceIdentity>`+
		`</AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		key, exp, xmlEscape(arn), xmlEscape(v.Get("RoleSessionName")), xmlEscape(v.Get("SourceIdentity")))
}

func (s *Server) describeRegions(c *call) {
	s.mu.Lock()
	regions := append([]string(nil), s.regions...)
	s.mu.Unlock()
	var b strings.Builder
	for _, r := range regions {
		fmt.Fprintf(&b, "<item><regionName>%s</regionName><regionEndpoint>ec2.%s.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>", r, r)
	}
	c.w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(c.w, `<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fake</requestId><regionInfo>%s</regionInfo></DescribeRegionsResponse>`, b.String())
}
