package normalize

import (
	"bytes"
	"errors"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decoders are reused: a CloudTrail record is decoded on every event.
var decoders = sync.Pool{New: func() any { return jsontext.NewDecoder(bytes.NewReader(nil)) }}

var errNotObject = errors.New("not a JSON object")

// decodeCT decodes a CloudTrail record's top level by hand (nested objects
// by json): the record's ~20 members are matched with a switch instead of
// a reflective field lookup, which halves the decode. It accepts what
// json.Unmarshal into ctRecord accepts, and is tested against it.
func decodeCT(raw []byte, r *ctRecord) error {
	dec := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(dec)
	dec.Reset(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true))
	if tok, err := dec.ReadToken(); err != nil {
		return err
	} else if tok.Kind() != '{' {
		return errNotObject
	}
	for dec.PeekKind() != '}' {
		k, err := dec.ReadValue() // the quoted name, valid until the next read
		if err != nil {
			return err
		}
		name, err := unquoteName(k)
		if err != nil {
			return err
		}
		var sp *string
		var vp *jsontext.Value
		switch name {
		case "eventVersion":
			sp = &r.EventVersion
		case "eventTime":
			sp = &r.EventTime
		case "eventSource":
			sp = &r.EventSource
		case "eventName":
			sp = &r.EventName
		case "awsRegion":
			sp = &r.AWSRegion
		case "sourceIPAddress":
			sp = &r.SourceIPAddress
		case "userAgent":
			sp = &r.UserAgent
		case "errorCode":
			sp = &r.ErrorCode
		case "errorMessage":
			sp = &r.ErrorMessage
		case "requestID":
			sp = &r.RequestID
		case "eventID":
			sp = &r.EventID
		case "eventType":
			sp = &r.EventType
		case "apiVersion":
			sp = &r.APIVersion
		case "recipientAccountId":
			sp = &r.RecipientAccountID
		case "eventCategory":
			sp = &r.EventCategory
		case "vpcEndpointId":
			sp = &r.VPCEndpointID
		case "requestParameters":
			vp = &r.RequestParameters
		case "responseElements":
			vp = &r.ResponseElements
		case "additionalEventData":
			vp = &r.AdditionalEventData
		case "resources":
			vp = &r.Resources
		case "tlsDetails":
			vp = &r.TLSDetails
		case "userIdentity":
			if err := json.UnmarshalDecode(dec, &r.UserIdentity, decodeOpts); err != nil {
				return err
			}
			continue
		case "insightDetails":
			if err := json.UnmarshalDecode(dec, &r.InsightDetails, decodeOpts); err != nil {
				return err
			}
			continue
		}
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		switch {
		case sp != nil:
			if err := stringValue(v, sp); err != nil {
				return errors.New(name + ": " + err.Error())
			}
		case vp != nil:
			*vp = bytes.Clone(v)
		default:
			if r.Rest == nil {
				r.Rest = make(map[string]jsontext.Value, 8)
			}
			r.Rest[name] = bytes.Clone(v)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err == nil {
		return errors.New("data after the record")
	}
	return nil
}

// unquoteName returns a member name; names without escapes cost one
// allocation-free conversion in the switch above and one copy here.
func unquoteName(k jsontext.Value) (string, error) {
	if bytes.IndexByte(k, '\\') < 0 {
		return string(k[1 : len(k)-1]), nil
	}
	b, err := jsontext.AppendUnquote(nil, k)
	return string(b), err
}

// stringValue stores a JSON string in *dst; null leaves it empty. Other
// kinds are an error, as json.Unmarshal into a string field would be.
func stringValue(v jsontext.Value, dst *string) error {
	switch v[0] {
	case '"':
		if bytes.IndexByte(v, '\\') < 0 {
			*dst = string(v[1 : len(v)-1])
			return nil
		}
		b, err := jsontext.AppendUnquote(nil, v)
		*dst = string(b)
		return err
	case 'n':
		return nil
	}
	return errors.New("not a string")
}
