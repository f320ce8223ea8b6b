package normalize

import (
	"bytes"
	"errors"
	"unsafe"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/trailkeeper/trailkeeper/internal/jsonscan"
)

// The CloudTrail decoder is written by hand: its members are matched with
// a switch instead of a reflective field lookup, and strings and raw values
// are slices of the record, not copies. The record must therefore never
// change afterwards (Normalize owns the copy it passes). It accepts what
// json.Unmarshal into ctRecord accepts, and is tested and fuzzed against it.

// members calls fn for each member of the JSON object obj, with the name
// and the value as slices of obj. fn returns false for a name it does not
// know. Unknown members go to *rest. obj is validated as a whole on the
// way (jsonscan.ValidMembers: one pass, the rules of jsontext), so the
// values fn gets may be walked again with fields and lookup.
func members(obj []byte, rest *map[string]jsontext.Value, fn func(name string, v jsontext.Value) (bool, error)) error {
	return visit(jsonscan.ValidMembers, obj, rest, fn)
}

// fields is members for an object that members already validated as part
// of its parent: it only finds the boundaries (jsonscan), which spares a
// second validating pass over the nested bytes.
func fields(obj []byte, rest *map[string]jsontext.Value, fn func(name string, v jsontext.Value) (bool, error)) error {
	return visit(jsonscan.Members, obj, rest, fn)
}

func visit(walk func([]byte, func(q, v []byte) error) error, obj []byte, rest *map[string]jsontext.Value, fn func(name string, v jsontext.Value) (bool, error)) error {
	return walk(obj, func(quoted, v []byte) error {
		name, err := nameOf(quoted)
		if err != nil {
			return err
		}
		known, err := fn(name, v)
		if err != nil {
			return errors.New(name + ": " + err.Error())
		}
		if !known {
			if *rest == nil {
				*rest = make(map[string]jsontext.Value, 8)
			}
			(*rest)[name] = v
		}
		return nil
	})
}

// lookup returns the value at path in the object v (the last of repeated
// names), or nil when a step is missing or not an object. v must be a value
// members returned: the walk does not validate again. It is how the mapper
// reads a name or two out of requestParameters and responseElements
// without decoding all of them.
func lookup(v jsontext.Value, path ...string) jsontext.Value {
	for _, name := range path {
		var found jsontext.Value
		err := jsonscan.Members(v, func(quoted, val []byte) error {
			if n, err := nameOf(quoted); err == nil && n == name {
				found = val
			}
			return nil
		})
		if err != nil || found == nil {
			return nil
		}
		v = found
	}
	return v
}

// lookupStr is lookup read as a string: "" when absent or not a string.
func lookupStr(v jsontext.Value, path ...string) string {
	var s string
	if w := lookup(v, path...); w != nil {
		if _, err := str(w, &s); err != nil {
			return ""
		}
	}
	return s
}

// nameOf unquotes a member name, aliasing it when it holds no escapes.
func nameOf(k []byte) (string, error) {
	if bytes.IndexByte(k, '\\') < 0 {
		return unsafe.String(&k[1], len(k)-2), nil // in the record, which never changes
	}
	b, err := jsontext.AppendUnquote(nil, k)
	return string(b), err
}

// str stores a JSON string (or null) in *dst, aliasing it when it holds no
// escapes; other kinds are an error, as for json.Unmarshal.
func str(v jsontext.Value, dst *string) (bool, error) {
	switch v[0] {
	case '"':
		if bytes.IndexByte(v, '\\') < 0 {
			*dst = unsafe.String(&v[1], len(v)-2) // v is never changed
			return true, nil
		}
		b, err := jsontext.AppendUnquote(nil, v)
		*dst = string(b)
		return true, err
	case 'n':
		return true, nil
	}
	return true, errors.New("not a string")
}

// object decodes v (an object or null) into a new *T with dec.
func object[T any](v jsontext.Value, dst **T, dec func([]byte, *T) error) (bool, error) {
	if v[0] == 'n' {
		return true, nil
	}
	t := new(T)
	if err := dec(v, t); err != nil {
		return true, err
	}
	*dst = t
	return true, nil
}

// reflective decodes with json, for the rare nested objects.
func reflective[T any](v []byte, t *T) error { return json.Unmarshal(v, t, decodeOpts) }

func raw(v jsontext.Value, dst *jsontext.Value) (bool, error) { *dst = v; return true, nil }

func decodeCT(b []byte, r *ctRecord) error {
	return members(b, &r.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "eventVersion":
			return str(v, &r.EventVersion)
		case "eventTime":
			return str(v, &r.EventTime)
		case "eventSource":
			return str(v, &r.EventSource)
		case "eventName":
			return str(v, &r.EventName)
		case "awsRegion":
			return str(v, &r.AWSRegion)
		case "sourceIPAddress":
			return str(v, &r.SourceIPAddress)
		case "userAgent":
			return str(v, &r.UserAgent)
		case "errorCode":
			return str(v, &r.ErrorCode)
		case "errorMessage":
			return str(v, &r.ErrorMessage)
		case "requestID":
			return str(v, &r.RequestID)
		case "eventID":
			return str(v, &r.EventID)
		case "eventType":
			return str(v, &r.EventType)
		case "apiVersion":
			return str(v, &r.APIVersion)
		case "recipientAccountId":
			return str(v, &r.RecipientAccountID)
		case "eventCategory":
			return str(v, &r.EventCategory)
		case "vpcEndpointId":
			return str(v, &r.VPCEndpointID)
		case "requestParameters":
			return raw(v, &r.RequestParameters)
		case "responseElements":
			return raw(v, &r.ResponseElements)
		case "additionalEventData":
			return raw(v, &r.AdditionalEventData)
		case "resources":
			return raw(v, &r.Resources)
		case "tlsDetails":
			return raw(v, &r.TLSDetails)
		case "userIdentity":
			return object(v, &r.UserIdentity, decodeIdentity)
		case "insightDetails":
			return raw(v, &r.InsightDetails)
		}
		return false, nil
	})
}

func decodeIdentity(b []byte, id *ctIdentity) error {
	return fields(b, &id.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "type":
			return str(v, &id.Type)
		case "principalId":
			return str(v, &id.PrincipalID)
		case "arn":
			return str(v, &id.ARN)
		case "accountId":
			return str(v, &id.AccountID)
		case "accessKeyId":
			return str(v, &id.AccessKeyID)
		case "userName":
			return str(v, &id.UserName)
		case "invokedBy":
			return str(v, &id.InvokedBy)
		case "identityProvider":
			return str(v, &id.IdentityProvider)
		case "credentialId":
			return str(v, &id.CredentialID)
		case "sessionContext":
			return object(v, &id.SessionContext, decodeSessionContext)
		case "onBehalfOf":
			return object(v, &id.OnBehalfOf, reflective)
		case "webIdFederationData":
			return object(v, &id.WebIDFederationData, reflective)
		}
		return false, nil
	})
}

func decodeSessionContext(b []byte, sc *ctSessionContext) error {
	return fields(b, &sc.Rest, func(name string, v jsontext.Value) (bool, error) {
		switch name {
		case "sessionIssuer":
			return object(v, &sc.SessionIssuer, func(b []byte, is *ctIssuer) error {
				return fields(b, &is.Rest, func(name string, v jsontext.Value) (bool, error) {
					switch name {
					case "arn":
						return str(v, &is.ARN)
					case "userName":
						return str(v, &is.UserName)
					}
					return false, nil
				})
			})
		case "attributes":
			return object(v, &sc.Attributes, func(b []byte, at *ctAttributes) error {
				return fields(b, &at.Rest, func(name string, v jsontext.Value) (bool, error) {
					switch name {
					case "creationDate":
						return str(v, &at.CreationDate)
					case "mfaAuthenticated":
						return raw(v, &at.MFAAuthenticated)
					}
					return false, nil
				})
			})
		}
		return false, nil
	})
}
