package normalize

import "github.com/go-json-experiment/json/jsontext"

// decodeGCP decodes a LogEntry and its AuditLog by hand, as decodeCT does
// for CloudTrail (same aliasing rule: raw never changes afterwards). It
// accepts what json.Unmarshal into gcpEntry accepts, and is tested
// against it.
func decodeGCP(b []byte, e *gcpEntry) error {
	return members(b, &e.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "insertId":
			return str(v, &e.InsertID)
		case "logName":
			return str(v, &e.LogName)
		case "timestamp":
			return str(v, &e.Timestamp)
		case "receiveTimestamp":
			return str(v, &e.ReceiveTimestamp)
		case "severity":
			return str(v, &e.Severity)
		case "resource":
			return raw(v, &e.Resource)
		case "protoPayload":
			return object(v, &e.ProtoPayload, decodeAuditLog)
		}
		return false, nil
	})
}

func decodeAuditLog(b []byte, p *gcpAuditLog) error {
	return fields(b, &p.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "@type":
			return str(v, &p.Type)
		case "serviceName":
			return str(v, &p.ServiceName)
		case "methodName":
			return str(v, &p.MethodName)
		case "resourceName":
			return str(v, &p.ResourceName)
		case "authenticationInfo":
			return object(v, &p.AuthenticationInfo, decodeAuthn)
		case "requestMetadata":
			return raw(v, &p.RequestMetadata)
		case "authorizationInfo":
			return true, reflective(v, &p.AuthorizationInfo)
		case "status":
			return object(v, &p.Status, reflective)
		case "request":
			return raw(v, &p.Request)
		case "response":
			return raw(v, &p.Response)
		case "resourceLocation":
			return raw(v, &p.ResourceLocation)
		}
		return false, nil
	})
}

func decodeAuthn(b []byte, a *gcpAuthn) error {
	return fields(b, &a.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "principalEmail":
			return str(v, &a.PrincipalEmail)
		case "principalSubject":
			return str(v, &a.PrincipalSubject)
		case "serviceAccountKeyName":
			return str(v, &a.ServiceAccountKeyName)
		case "serviceAccountDelegationInfo":
			return true, reflective(v, &a.Delegation)
		}
		return false, nil
	})
}

func decodeRequestMetadata(b []byte, rm *gcpRequestMetadata) error {
	return fields(b, &rm.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "callerIp":
			return str(v, &rm.CallerIP)
		case "callerSuppliedUserAgent":
			return str(v, &rm.CallerSuppliedUserAgent)
		case "callerNetwork":
			return str(v, &rm.CallerNetwork)
		case "requestAttributes":
			return object(v, &rm.RequestAttributes, func(b []byte, ra *gcpRequestAttributes) error {
				return fields(b, &ra.Rest, func(name string, v jsontext.Value) (bool, error) {
					if name == "id" {
						return str(v, &ra.ID)
					}
					return false, nil
				})
			})
		}
		return false, nil
	})
}

// decodeResource reads a monitored resource: its type, and the labels
// both as written (for resources[].data) and as a map (for the scope).
func decodeResource(b []byte, r *gcpResource) error {
	var rest map[string]jsontext.Value
	return fields(b, &rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "type":
			return str(v, &r.Type)
		case "labels":
			r.raw = v
			return true, reflective(v, &r.Labels)
		}
		return true, nil // other members stay in the resource's raw bytes
	})
}
