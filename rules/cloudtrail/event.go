// Package cloudtrail is the CloudTrail record model and its decoding: the
// typed Event that rule expressions see (field names are CloudTrail's own
// JSON names), the lenient whole-record decoder that takes the type
// mismatches of real records in its stride, and the cheap header tier that
// fills only the top-level and userIdentity scalars without allocating.
package cloudtrail

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Event is one CloudTrail record as rule expressions see it. Field names in
// expressions are CloudTrail's own JSON names (the `expr` tags), so a rule
// reads `userIdentity.sessionContext.sessionIssuer.userName` exactly as the
// record spells it. Nested objects are values, not pointers: an absent
// object reads as its zero value, never as a nil dereference.
//
// The free-form parts (requestParameters, responseElements,
// additionalEventData, serviceEventDetails, ...) are maps: a missing key
// reads as nil. Decode records with DecodeEvent, which takes the type
// mismatches of real records in its stride.
type Event struct {
	EventVersion                 string         `json:"eventVersion" expr:"eventVersion"`
	UserIdentity                 UserIdentity   `json:"userIdentity" expr:"userIdentity"`
	EventTime                    time.Time      `json:"eventTime" expr:"eventTime"`
	EventSource                  string         `json:"eventSource" expr:"eventSource"`
	EventName                    string         `json:"eventName" expr:"eventName"`
	AWSRegion                    string         `json:"awsRegion" expr:"awsRegion"`
	SourceIPAddress              string         `json:"sourceIPAddress" expr:"sourceIPAddress"`
	UserAgent                    string         `json:"userAgent" expr:"userAgent"`
	ErrorCode                    string         `json:"errorCode" expr:"errorCode"`
	ErrorMessage                 string         `json:"errorMessage" expr:"errorMessage"`
	RequestParameters            map[string]any `json:"requestParameters" expr:"requestParameters"`
	ResponseElements             map[string]any `json:"responseElements" expr:"responseElements"`
	AdditionalEventData          map[string]any `json:"additionalEventData" expr:"additionalEventData"`
	RequestID                    string         `json:"requestID" expr:"requestID"`
	EventID                      string         `json:"eventID" expr:"eventID"`
	ReadOnly                     bool           `json:"readOnly" expr:"readOnly"`
	Resources                    []Resource     `json:"resources" expr:"resources"`
	EventType                    string         `json:"eventType" expr:"eventType"`
	APIVersion                   string         `json:"apiVersion" expr:"apiVersion"`
	ManagementEvent              bool           `json:"managementEvent" expr:"managementEvent"`
	RecipientAccountID           string         `json:"recipientAccountId" expr:"recipientAccountId"`
	ServiceEventDetails          map[string]any `json:"serviceEventDetails" expr:"serviceEventDetails"`
	SharedEventID                string         `json:"sharedEventID" expr:"sharedEventID"`
	VPCEndpointID                string         `json:"vpcEndpointId" expr:"vpcEndpointId"`
	VPCEndpointAccountID         string         `json:"vpcEndpointAccountId" expr:"vpcEndpointAccountId"`
	EventCategory                string         `json:"eventCategory" expr:"eventCategory"`
	Addendum                     map[string]any `json:"addendum" expr:"addendum"`
	SessionCredentialFromConsole string         `json:"sessionCredentialFromConsole" expr:"sessionCredentialFromConsole"`
	EdgeDeviceDetails            map[string]any `json:"edgeDeviceDetails" expr:"edgeDeviceDetails"`
	TLSDetails                   TLSDetails     `json:"tlsDetails" expr:"tlsDetails"`
	InsightDetails               map[string]any `json:"insightDetails" expr:"insightDetails"`

	// raw is the record as read, for filter patterns (which CloudWatch
	// evaluates on the JSON text, not on a typed record) and for the
	// fields DecodeHeader leaves to Need.
	raw  rawRecord
	lazy lazyState
}

type rawRecord struct {
	data  []byte
	owned bool // data is ev's own copy (Own)
	m     map[string]any
	err   error
}

// UserIdentity is the record's userIdentity element: who made the call.
type UserIdentity struct {
	Type             string         `json:"type" expr:"type"`
	PrincipalID      string         `json:"principalId" expr:"principalId"`
	ARN              string         `json:"arn" expr:"arn"`
	AccountID        string         `json:"accountId" expr:"accountId"`
	AccessKeyID      string         `json:"accessKeyId" expr:"accessKeyId"`
	UserName         string         `json:"userName" expr:"userName"`
	InvokedBy        string         `json:"invokedBy" expr:"invokedBy"`
	CredentialID     string         `json:"credentialId" expr:"credentialId"`
	IdentityProvider string         `json:"identityProvider" expr:"identityProvider"`
	SessionContext   SessionContext `json:"sessionContext" expr:"sessionContext"`
	OnBehalfOf       OnBehalfOf     `json:"onBehalfOf" expr:"onBehalfOf"`
	InScopeOf        map[string]any `json:"inScopeOf" expr:"inScopeOf"`
}

// SessionContext describes temporary security credentials.
type SessionContext struct {
	SessionIssuer       SessionIssuer       `json:"sessionIssuer" expr:"sessionIssuer"`
	WebIDFederationData WebIDFederationData `json:"webIdFederationData" expr:"webIdFederationData"`
	Attributes          SessionAttributes   `json:"attributes" expr:"attributes"`
	SourceIdentity      string              `json:"sourceIdentity" expr:"sourceIdentity"`
	EC2RoleDelivery     string              `json:"ec2RoleDelivery" expr:"ec2RoleDelivery"`
	AssumedRoot         string              `json:"assumedRoot" expr:"assumedRoot"`
}

// SessionIssuer is the principal that issued a session's credentials.
type SessionIssuer struct {
	Type        string `json:"type" expr:"type"`
	PrincipalID string `json:"principalId" expr:"principalId"`
	ARN         string `json:"arn" expr:"arn"`
	AccountID   string `json:"accountId" expr:"accountId"`
	UserName    string `json:"userName" expr:"userName"`
}

// WebIDFederationData holds web identity federation details.
type WebIDFederationData struct {
	FederatedProvider string         `json:"federatedProvider" expr:"federatedProvider"`
	Attributes        map[string]any `json:"attributes" expr:"attributes"`
}

// SessionAttributes are a session's attributes. CloudTrail records
// mfaAuthenticated as the string "true" or "false", and so does this type.
type SessionAttributes struct {
	CreationDate     string `json:"creationDate" expr:"creationDate"`
	MFAAuthenticated string `json:"mfaAuthenticated" expr:"mfaAuthenticated"`
}

// OnBehalfOf names the IAM Identity Center user a call was made for.
type OnBehalfOf struct {
	UserID           string `json:"userId" expr:"userId"`
	IdentityStoreARN string `json:"identityStoreArn" expr:"identityStoreArn"`
}

// Resource is one element of the record's resources list.
type Resource struct {
	ARN       string `json:"ARN" expr:"ARN"`
	AccountID string `json:"accountId" expr:"accountId"`
	Type      string `json:"type" expr:"type"`
}

// TLSDetails describes the TLS connection of the call.
type TLSDetails struct {
	TLSVersion               string `json:"tlsVersion" expr:"tlsVersion"`
	CipherSuite              string `json:"cipherSuite" expr:"cipherSuite"`
	ClientProvidedHostHeader string `json:"clientProvidedHostHeader" expr:"clientProvidedHostHeader"`
}

// ErrNotCloudTrail reports a JSON object that is not a CloudTrail record.
var ErrNotCloudTrail = errors.New("not a CloudTrail record")

// DecodeEvent decodes one CloudTrail record. It returns an error only when
// data is not a JSON object or not a CloudTrail record (it has neither
// eventVersion nor eventID); type mismatches inside a record — readOnly as
// the string "True", requestParameters as a JSON string, numbers where
// strings belong — are coerced to the field's type rather than failing or
// silently dropping the rest of the record.
func DecodeEvent(data []byte) (*Event, error) {
	ev := new(Event)
	if err := DecodeEventInto(ev, data); err != nil {
		return nil, err
	}
	return ev, nil
}

// DecodeEventInto is DecodeEvent into an existing Event, which it resets.
func DecodeEventInto(ev *Event, data []byte) error {
	*ev = Event{}
	data = bytes.TrimSpace(data)
	ev.raw.data = data
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("decode record: %w: not a JSON object", ErrNotCloudTrail)
	}
	err := json.Unmarshal(data, ev)
	if err != nil {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return fmt.Errorf("decode record: %w", err)
		}
		// A type mismatch somewhere (a string where a bool belongs, a
		// malformed eventTime, ...): take the slow, lenient path.
		if err := decodeLenient(ev, data); err != nil {
			return err
		}
	}
	if ev.EventVersion == "" && ev.EventID == "" {
		return fmt.Errorf("decode record: %w: it has neither eventVersion nor eventID", ErrNotCloudTrail)
	}
	if ev.EventTime.IsZero() {
		// Records shipped through Logstash carry @timestamp instead.
		fillTimeFromShipper(ev, data)
	}
	return nil
}

func fillTimeFromShipper(ev *Event, data []byte) {
	if !bytes.Contains(data, []byte(`"@timestamp"`)) {
		return
	}
	var s struct {
		Timestamp string `json:"@timestamp"`
	}
	if json.Unmarshal(data, &s) == nil {
		if t, err := time.Parse(time.RFC3339Nano, s.Timestamp); err == nil {
			ev.EventTime = t
		}
	}
}

var eventType = reflect.TypeOf(Event{})

// decodeLenient decodes data through a generic map, coercing every value to
// the type of the Event field it belongs to.
func decodeLenient(ev *Event, data []byte) error {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	fixed := coerce(m, eventType)
	b, err := json.Marshal(fixed)
	if err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	*ev = Event{raw: ev.raw}
	if err := json.Unmarshal(b, ev); err != nil {
		return fmt.Errorf("decode record after coercion: %w", err)
	}
	return nil
}

var (
	timeType = reflect.TypeOf(time.Time{})
	anyType  = reflect.TypeOf((*any)(nil)).Elem()
)

// coerce returns v reshaped so that encoding/json can decode it into a
// value of type t without a type error.
func coerce(v any, t reflect.Type) any {
	if v == nil {
		return nil
	}
	switch {
	case t == timeType:
		if s, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return s
			}
		}
		return nil
	case t == anyType:
		return v
	}
	switch t.Kind() {
	case reflect.String:
		switch x := v.(type) {
		case string:
			return x
		case json.Number:
			return x.String()
		case bool:
			return strconv.FormatBool(x)
		default:
			b, _ := json.Marshal(x)
			return string(b)
		}
	case reflect.Bool:
		switch x := v.(type) {
		case bool:
			return x
		case string:
			b, _ := strconv.ParseBool(strings.TrimSpace(x))
			return b
		case json.Number:
			f, _ := x.Float64()
			return f != 0
		}
		return false
	case reflect.Map:
		switch x := v.(type) {
		case map[string]any:
			return x
		case string:
			// requestParameters recorded as a JSON string.
			var inner map[string]any
			dec := json.NewDecoder(strings.NewReader(x))
			dec.UseNumber()
			if dec.Decode(&inner) == nil {
				return inner
			}
			return map[string]any{"value": x}
		default:
			return map[string]any{"value": x}
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		out := make(map[string]any, len(obj))
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if val, ok := obj[name]; ok {
				out[name] = coerce(val, f.Type)
			}
		}
		return out
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			if obj, isObj := v.(map[string]any); isObj {
				arr = []any{obj}
			} else {
				return nil
			}
		}
		out := make([]any, 0, len(arr))
		for _, e := range arr {
			out = append(out, coerce(e, t.Elem()))
		}
		return out
	}
	return nil
}

// Raw returns the record's JSON as it was decoded (surrounding white space
// trimmed). It is the caller's buffer, valid as long as the caller keeps it.
func (e *Event) Raw() []byte { return e.raw.data }

// RawMap decodes the record's raw JSON into a generic map (numbers as
// json.Number) once per event and returns it on every later call, for
// filter patterns, which CloudWatch evaluates on the JSON text rather than
// on a typed record.
func (e *Event) RawMap() (map[string]any, error) {
	if e.raw.m != nil || e.raw.err != nil {
		return e.raw.m, e.raw.err
	}
	dec := json.NewDecoder(bytes.NewReader(e.raw.data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		e.raw.err = err
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	e.raw.m = m
	return m, nil
}

// Principal returns the best single name for who made the call: the
// principal ARN, else the session issuer's ARN, else the user name, else the
// principal id, else the invoking service.
func (e *Event) Principal() string {
	u := &e.UserIdentity
	switch {
	case u.ARN != "":
		return u.ARN
	case u.SessionContext.SessionIssuer.ARN != "":
		return u.SessionContext.SessionIssuer.ARN
	case u.UserName != "":
		return u.UserName
	case u.PrincipalID != "":
		return u.PrincipalID
	case u.InvokedBy != "":
		return u.InvokedBy
	case u.Type != "":
		return u.Type
	}
	return ""
}

// AccountID returns the account the event belongs to: recipientAccountId,
// else the caller's account.
func (e *Event) AccountID() string {
	if e.RecipientAccountID != "" {
		return e.RecipientAccountID
	}
	return e.UserIdentity.AccountID
}
