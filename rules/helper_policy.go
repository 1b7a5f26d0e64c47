package rules

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync/atomic"
)

// Policy helpers for the resource, trust and bucket policies that records
// carry as maps or as (URL-encoded) JSON strings: parseJSON, publicPolicy,
// policyAccounts.
func init() {
	registerHelper("parseJSON", func(params ...any) (any, error) {
		return parseJSON(params[0]), nil
	}, new(func(any) any))
	registerHelper("publicPolicy", func(params ...any) (any, error) {
		return publicPolicy(params[0]), nil
	}, new(func(any) bool))
	registerHelper("policyAccounts", func(params ...any) (any, error) {
		return policyAccounts(params[0]), nil
	}, new(func(any) []any))
}

// parseJSON returns v as a JSON document: a map or list as it is, a string
// holding a JSON object or array (URL-encoded or not, as IAM records policy
// documents) parsed, and nil for anything else, malformed JSON included.
func parseJSON(v any) any {
	switch x := v.(type) {
	case map[string]any, []any:
		return x
	case string:
		s := strings.TrimSpace(x)
		if !strings.HasPrefix(s, "{") && !strings.HasPrefix(s, "[") {
			d, err := url.QueryUnescape(s)
			if err != nil {
				return nil
			}
			s = strings.TrimSpace(d)
		}
		if !strings.HasPrefix(s, "{") && !strings.HasPrefix(s, "[") {
			return nil
		}
		var out any
		if json.Unmarshal([]byte(s), &out) != nil {
			return nil
		}
		return out
	}
	return nil
}

// scopingKeys are the condition keys that, with fixed values, keep a
// statement for Principal "*" from being public: the keys AWS itself
// accepts as making a resource policy non-public (S3 "The meaning of
// public", IAM Access Analyzer), lower-cased. A condition on any other key
// (aws:SecureTransport, s3:x-amz-acl, ...) leaves the statement open to
// anyone.
var scopingKeys = map[string]bool{
	"aws:sourceip": true, "aws:sourcevpc": true, "aws:sourcevpce": true, "aws:sourcearn": true,
	"aws:sourceaccount": true, "aws:sourceowner": true, "aws:sourceorgid": true, "aws:sourceorgpaths": true,
	"aws:principalaccount": true, "aws:principalarn": true, "aws:principalorgid": true,
	"aws:principalorgpaths": true, "aws:userid": true, "aws:username": true,
	"s3:dataaccesspointaccount": true, "s3:dataaccesspointarn": true, "kms:calleraccount": true,
}

// policyStatements returns the statements of a policy document (a map, or
// a JSON string as parseJSON reads it) that allow something. The answer
// for the last document given as a string is remembered (lastPolicy): a
// rule that reads one document through two helpers (publicPolicy(doc) ||
// any(policyAccounts(doc), ...)) parses it once. The statements are only
// read, by these helpers, never handed to an expression.
func policyStatements(v any) []map[string]any {
	s, isString := v.(string)
	if isString {
		if m := lastPolicy.Load(); m != nil && m.doc == s {
			return m.statements
		}
	}
	doc, _ := parseJSON(v).(map[string]any)
	var out []map[string]any
	for _, st := range toList(doc["Statement"]) {
		m, ok := st.(map[string]any)
		if ok && strings.EqualFold(toString(m["Effect"]), "Allow") {
			out = append(out, m)
		}
	}
	if isString {
		// s may be a view of a record's buffer, which is reused: keep a
		// copy.
		lastPolicy.Store(&policyMemo{doc: strings.Clone(s), statements: out})
	}
	return out
}

// lastPolicy is policyStatements' last answer for a document given as a
// string (shared by every goroutine; each answer is immutable).
var lastPolicy atomic.Pointer[policyMemo]

type policyMemo struct {
	doc        string
	statements []map[string]any
}

// publicPolicy reports whether a resource or trust policy lets anyone in:
// an Allow statement for Principal "*" (the string, {"AWS": "*"}, a list
// holding "*") or with NotPrincipal, unless a condition pins the caller
// down with fixed values of a scoping key (see scopingKeys).
func publicPolicy(v any) bool {
	for _, st := range policyStatements(v) {
		anyone := st["NotPrincipal"] != nil
		switch p := st["Principal"].(type) {
		case string:
			anyone = anyone || p == "*"
		case map[string]any:
			for _, e := range toList(p["AWS"]) {
				anyone = anyone || toString(e) == "*"
			}
		}
		if anyone && !conditionScopes(st["Condition"]) {
			return true
		}
	}
	return false
}

// conditionScopes reports whether a statement's Condition block limits the
// caller to fixed values of a scoping key. Negated operators (StringNotEquals)
// and wildcard values limit nothing; neither does aws:SourceIp with an
// open CIDR.
func conditionScopes(c any) bool {
	ops, _ := c.(map[string]any)
	for op, block := range ops {
		keys, _ := block.(map[string]any)
		if strings.Contains(strings.ToLower(op), "not") {
			continue
		}
		for k, vals := range keys {
			lk := strings.ToLower(k)
			if !scopingKeys[lk] {
				continue
			}
			fixed := false
			for _, e := range toList(vals) {
				s := toString(e)
				if s == "" || strings.Trim(s, "*?") == "" || (lk == "aws:sourceip" && isOpenCIDR(s)) {
					fixed = false
					break
				}
				fixed = true
			}
			if fixed {
				return true
			}
		}
	}
	return false
}

// policyAccounts returns the AWS account ids that a policy's Allow
// statements name as principals (12-digit ids, or the account of a
// principal ARN), in order, each once.
func policyAccounts(v any) []any {
	var out []any
	seen := map[string]bool{}
	for _, st := range policyStatements(v) {
		p, _ := st["Principal"].(map[string]any)
		for _, e := range toList(p["AWS"]) {
			s := toString(e)
			acct := arnPart(s, 4)
			if acct == "" && isAccountID(s) {
				acct = s
			}
			if acct != "" && !seen[acct] {
				seen[acct] = true
				out = append(out, acct)
			}
		}
	}
	return out
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
