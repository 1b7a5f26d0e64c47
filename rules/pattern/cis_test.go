package pattern

import (
	"slices"
	"strings"
	"testing"
)

// cisPattern is a published CIS AWS Foundations metric filter pattern, quoted
// literally (AWS Security Hub user guide, CloudWatch.1 to CloudWatch.14, and
// CIS v3.0 4.15 / 4.1 / 4.2), with an independent Go predicate that says which
// records it should match, used by the corpus differential test.
type cisPattern struct {
	control string
	pattern string
	want    func(r map[string]any) bool
}

var cisPatterns = []cisPattern{
	{"CloudWatch.1", `{$.userIdentity.type="Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType !="AwsServiceEvent"}`,
		func(r map[string]any) bool {
			et, ok := refText(r, "eventType")
			return refEq(r, "userIdentity.type", "Root") && !refHas(r, "userIdentity.invokedBy") && ok && et != "AwsServiceEvent"
		}},
	{"CloudWatch.2", `{($.errorCode="*UnauthorizedOperation") || ($.errorCode="AccessDenied*")}`,
		func(r map[string]any) bool {
			ec, ok := refText(r, "errorCode")
			return ok && (strings.HasSuffix(ec, "UnauthorizedOperation") || strings.HasPrefix(ec, "AccessDenied"))
		}},
	{"CloudWatch.3", `{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") && ($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }`,
		func(r map[string]any) bool {
			mfa, ok := refText(r, "additionalEventData.MFAUsed")
			return refEq(r, "eventName", "ConsoleLogin") && ok && mfa != "Yes" &&
				refEq(r, "userIdentity.type", "IAMUser") && refEq(r, "responseElements.ConsoleLogin", "Success")
		}},
	{"CloudWatch.4", `{($.eventName=DeleteGroupPolicy) || ($.eventName=DeleteRolePolicy) || ($.eventName=DeleteUserPolicy) || ($.eventName=PutGroupPolicy) || ($.eventName=PutRolePolicy) || ($.eventName=PutUserPolicy) || ($.eventName=CreatePolicy) || ($.eventName=DeletePolicy) || ($.eventName=CreatePolicyVersion) || ($.eventName=DeletePolicyVersion) || ($.eventName=AttachRolePolicy) || ($.eventName=DetachRolePolicy) || ($.eventName=AttachUserPolicy) || ($.eventName=DetachUserPolicy) || ($.eventName=AttachGroupPolicy) || ($.eventName=DetachGroupPolicy)}`,
		refIn("eventName", "DeleteGroupPolicy", "DeleteRolePolicy", "DeleteUserPolicy", "PutGroupPolicy", "PutRolePolicy", "PutUserPolicy", "CreatePolicy", "DeletePolicy", "CreatePolicyVersion", "DeletePolicyVersion", "AttachRolePolicy", "DetachRolePolicy", "AttachUserPolicy", "DetachUserPolicy", "AttachGroupPolicy", "DetachGroupPolicy")},
	{"CloudWatch.5", `{($.eventName=CreateTrail) || ($.eventName=UpdateTrail) || ($.eventName=DeleteTrail) || ($.eventName=StartLogging) || ($.eventName=StopLogging)}`,
		refIn("eventName", "CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging")},
	{"CloudWatch.6", `{($.eventName=ConsoleLogin) && ($.errorMessage="Failed authentication")}`,
		func(r map[string]any) bool {
			return refEq(r, "eventName", "ConsoleLogin") && refEq(r, "errorMessage", "Failed authentication")
		}},
	{"CloudWatch.7", `{($.eventSource=kms.amazonaws.com) && (($.eventName=DisableKey) || ($.eventName=ScheduleKeyDeletion))}`,
		refSourceIn("kms.amazonaws.com", "DisableKey", "ScheduleKeyDeletion")},
	{"CloudWatch.8", `{($.eventSource=s3.amazonaws.com) && (($.eventName=PutBucketAcl) || ($.eventName=PutBucketPolicy) || ($.eventName=PutBucketCors) || ($.eventName=PutBucketLifecycle) || ($.eventName=PutBucketReplication) || ($.eventName=DeleteBucketPolicy) || ($.eventName=DeleteBucketCors) || ($.eventName=DeleteBucketLifecycle) || ($.eventName=DeleteBucketReplication))}`,
		refSourceIn("s3.amazonaws.com", "PutBucketAcl", "PutBucketPolicy", "PutBucketCors", "PutBucketLifecycle", "PutBucketReplication", "DeleteBucketPolicy", "DeleteBucketCors", "DeleteBucketLifecycle", "DeleteBucketReplication")},
	{"CloudWatch.9", `{($.eventSource=config.amazonaws.com) && (($.eventName=StopConfigurationRecorder) || ($.eventName=DeleteDeliveryChannel) || ($.eventName=PutDeliveryChannel) || ($.eventName=PutConfigurationRecorder))}`,
		refSourceIn("config.amazonaws.com", "StopConfigurationRecorder", "DeleteDeliveryChannel", "PutDeliveryChannel", "PutConfigurationRecorder")},
	{"CloudWatch.10", `{($.eventName=AuthorizeSecurityGroupIngress) || ($.eventName=AuthorizeSecurityGroupEgress) || ($.eventName=RevokeSecurityGroupIngress) || ($.eventName=RevokeSecurityGroupEgress) || ($.eventName=CreateSecurityGroup) || ($.eventName=DeleteSecurityGroup)}`,
		refIn("eventName", "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "CreateSecurityGroup", "DeleteSecurityGroup")},
	{"CloudWatch.11", `{($.eventName=CreateNetworkAcl) || ($.eventName=CreateNetworkAclEntry) || ($.eventName=DeleteNetworkAcl) || ($.eventName=DeleteNetworkAclEntry) || ($.eventName=ReplaceNetworkAclEntry) || ($.eventName=ReplaceNetworkAclAssociation)}`,
		refIn("eventName", "CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteNetworkAcl", "DeleteNetworkAclEntry", "ReplaceNetworkAclEntry", "ReplaceNetworkAclAssociation")},
	{"CloudWatch.12", `{($.eventName=CreateCustomerGateway) || ($.eventName=DeleteCustomerGateway) || ($.eventName=AttachInternetGateway) || ($.eventName=CreateInternetGateway) || ($.eventName=DeleteInternetGateway) || ($.eventName=DetachInternetGateway)}`,
		refIn("eventName", "CreateCustomerGateway", "DeleteCustomerGateway", "AttachInternetGateway", "CreateInternetGateway", "DeleteInternetGateway", "DetachInternetGateway")},
	{"CloudWatch.13", `{($.eventName=CreateRoute) || ($.eventName=CreateRouteTable) || ($.eventName=ReplaceRoute) || ($.eventName=ReplaceRouteTableAssociation) || ($.eventName=DeleteRouteTable) || ($.eventName=DeleteRoute) || ($.eventName=DisassociateRouteTable)}`,
		refIn("eventName", "CreateRoute", "CreateRouteTable", "ReplaceRoute", "ReplaceRouteTableAssociation", "DeleteRouteTable", "DeleteRoute", "DisassociateRouteTable")},
	{"CloudWatch.14", `{($.eventName=CreateVpc) || ($.eventName=DeleteVpc) || ($.eventName=ModifyVpcAttribute) || ($.eventName=AcceptVpcPeeringConnection) || ($.eventName=CreateVpcPeeringConnection) || ($.eventName=DeleteVpcPeeringConnection) || ($.eventName=RejectVpcPeeringConnection) || ($.eventName=AttachClassicLinkVpc) || ($.eventName=DetachClassicLinkVpc) || ($.eventName=DisableVpcClassicLink) || ($.eventName=EnableVpcClassicLink)}`,
		refIn("eventName", "CreateVpc", "DeleteVpc", "ModifyVpcAttribute", "AcceptVpcPeeringConnection", "CreateVpcPeeringConnection", "DeleteVpcPeeringConnection", "RejectVpcPeeringConnection", "AttachClassicLinkVpc", "DetachClassicLinkVpc", "DisableVpcClassicLink", "EnableVpcClassicLink")},
	{"CIS 4.15 organizations", `{ ($.eventSource = organizations.amazonaws.com) && (($.eventName = "AcceptHandshake") || ($.eventName = "AttachPolicy") || ($.eventName = "CreateAccount") || ($.eventName = "CreateOrganizationalUnit") || ($.eventName = "CreatePolicy") || ($.eventName = "DeclineHandshake") || ($.eventName = "DeleteOrganization") || ($.eventName = "DeleteOrganizationalUnit") || ($.eventName = "DeletePolicy") || ($.eventName = "DetachPolicy") || ($.eventName = "DisablePolicyType") || ($.eventName = "EnablePolicyType") || ($.eventName = "InviteAccountToOrganization") || ($.eventName = "LeaveOrganization") || ($.eventName = "MoveAccount") || ($.eventName = "RemoveAccountFromOrganization") || ($.eventName = "UpdatePolicy") || ($.eventName = "UpdateOrganizationalUnit")) }`,
		refSourceIn("organizations.amazonaws.com", "AcceptHandshake", "AttachPolicy", "CreateAccount", "CreateOrganizationalUnit", "CreatePolicy", "DeclineHandshake", "DeleteOrganization", "DeleteOrganizationalUnit", "DeletePolicy", "DetachPolicy", "DisablePolicyType", "EnablePolicyType", "InviteAccountToOrganization", "LeaveOrganization", "MoveAccount", "RemoveAccountFromOrganization", "UpdatePolicy", "UpdateOrganizationalUnit")},
	// CIS v3.0 4.1 as published: without brackets around the || pair, so the
	// && clauses bind to the AccessDenied alternative only.
	{"CIS 4.1 narrowed", `{($.errorCode="*UnauthorizedOperation") || ($.errorCode="AccessDenied*") && ($.sourceIPAddress!="delivery.logs.amazonaws.com") && ($.eventName!="HeadBucket")}`,
		func(r map[string]any) bool {
			ec, ok := refText(r, "errorCode")
			if !ok {
				return false
			}
			if strings.HasSuffix(ec, "UnauthorizedOperation") {
				return true
			}
			ip, ipOK := refText(r, "sourceIPAddress")
			en, enOK := refText(r, "eventName")
			return strings.HasPrefix(ec, "AccessDenied") && ipOK && ip != "delivery.logs.amazonaws.com" && enOK && en != "HeadBucket"
		}},
	// CIS 4.2 / v1.2 3.2, the older form of CloudWatch.3.
	{"CIS 4.2 older", `{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") }`,
		func(r map[string]any) bool {
			mfa, ok := refText(r, "additionalEventData.MFAUsed")
			return refEq(r, "eventName", "ConsoleLogin") && ok && mfa != "Yes"
		}},
}

// refLookup is a deliberately simple, independent field lookup for dotted
// paths, the reference side of the differential test.
func refLookup(r map[string]any, path string) (any, bool) {
	var cur any = r
	for _, name := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[name]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func refHas(r map[string]any, path string) bool {
	_, ok := refLookup(r, path)
	return ok
}

// refText returns a string field, or false for anything else (CloudTrail's
// fields in these patterns are all strings).
func refText(r map[string]any, path string) (string, bool) {
	v, _ := refLookup(r, path)
	s, ok := v.(string)
	return s, ok
}

func refEq(r map[string]any, path, want string) bool {
	s, ok := refText(r, path)
	return ok && s == want
}

func refIn(path string, values ...string) func(map[string]any) bool {
	return func(r map[string]any) bool {
		s, ok := refText(r, path)
		return ok && slices.Contains(values, s)
	}
}

func refSourceIn(source string, names ...string) func(map[string]any) bool {
	in := refIn("eventName", names...)
	return func(r map[string]any) bool { return refEq(r, "eventSource", source) && in(r) }
}

func cisByControl(t *testing.T, control string) *Pattern {
	t.Helper()
	for _, c := range cisPatterns {
		if c.control == control {
			p, err := Parse(c.pattern)
			if err != nil {
				t.Fatalf("Parse(%s): %v", control, err)
			}
			return p
		}
	}
	t.Fatalf("no CIS pattern %q", control)
	return nil
}

// TestCISPatterns evaluates every published pattern on hand-written records
// that take each branch.
func TestCISPatterns(t *testing.T) {
	type tc struct {
		name   string
		record string
		want   bool
	}
	tests := []struct {
		control string
		cases   []tc
	}{
		{"CloudWatch.1", []tc{
			{"root console call", `{"userIdentity":{"type":"Root"},"eventType":"AwsApiCall"}`, true},
			{"root call via service", `{"userIdentity":{"type":"Root","invokedBy":"s3.amazonaws.com"},"eventType":"AwsApiCall"}`, false},
			{"root service event", `{"userIdentity":{"type":"Root"},"eventType":"AwsServiceEvent"}`, false},
			{"root without eventType (!= needs a value)", `{"userIdentity":{"type":"Root"}}`, false},
			{"IAM user", `{"userIdentity":{"type":"IAMUser"},"eventType":"AwsApiCall"}`, false},
			{"invokedBy null still exists", `{"userIdentity":{"type":"Root","invokedBy":null},"eventType":"AwsApiCall"}`, false},
		}},
		{"CloudWatch.2", []tc{
			{"suffix UnauthorizedOperation", `{"errorCode":"Client.UnauthorizedOperation"}`, true},
			{"exact UnauthorizedOperation", `{"errorCode":"UnauthorizedOperation"}`, true},
			{"prefix AccessDenied", `{"errorCode":"AccessDeniedException"}`, true},
			{"AccessDenied exact", `{"errorCode":"AccessDenied"}`, true},
			{"other error", `{"errorCode":"ThrottlingException"}`, false},
			{"wildcard is not infix", `{"errorCode":"UnauthorizedOperationX"}`, false},
			{"case sensitive", `{"errorCode":"accessdenied"}`, false},
			{"no errorCode", `{"eventName":"GetObject"}`, false},
		}},
		{"CloudWatch.3", []tc{
			{"no MFA success", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"},"userIdentity":{"type":"IAMUser"},"responseElements":{"ConsoleLogin":"Success"}}`, true},
			{"with MFA", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"Yes"},"userIdentity":{"type":"IAMUser"},"responseElements":{"ConsoleLogin":"Success"}}`, false},
			{"MFAUsed absent does not match !=", `{"eventName":"ConsoleLogin","additionalEventData":{"LoginTo":"x"},"userIdentity":{"type":"IAMUser"},"responseElements":{"ConsoleLogin":"Success"}}`, false},
			{"additionalEventData absent", `{"eventName":"ConsoleLogin","userIdentity":{"type":"IAMUser"},"responseElements":{"ConsoleLogin":"Success"}}`, false},
			{"failed login", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"},"userIdentity":{"type":"IAMUser"},"responseElements":{"ConsoleLogin":"Failure"}}`, false},
			{"root login", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"},"userIdentity":{"type":"Root"},"responseElements":{"ConsoleLogin":"Success"}}`, false},
			{"responseElements null", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"},"userIdentity":{"type":"IAMUser"},"responseElements":null}`, false},
		}},
		{"CloudWatch.4", []tc{
			{"first alternative", `{"eventName":"DeleteGroupPolicy"}`, true},
			{"middle alternative", `{"eventName":"CreatePolicyVersion"}`, true},
			{"last alternative", `{"eventName":"DetachGroupPolicy"}`, true},
			{"other", `{"eventName":"GetPolicy"}`, false},
		}},
		{"CloudWatch.5", []tc{
			{"StopLogging", `{"eventName":"StopLogging"}`, true},
			{"UpdateTrail", `{"eventName":"UpdateTrail"}`, true},
			{"DescribeTrails", `{"eventName":"DescribeTrails"}`, false},
		}},
		{"CloudWatch.6", []tc{
			{"failed login", `{"eventName":"ConsoleLogin","errorMessage":"Failed authentication"}`, true},
			{"successful login", `{"eventName":"ConsoleLogin"}`, false},
			{"other failure message", `{"eventName":"ConsoleLogin","errorMessage":"No username found in supplied account"}`, false},
			{"not a login", `{"eventName":"GetObject","errorMessage":"Failed authentication"}`, false},
		}},
		{"CloudWatch.7", []tc{
			{"DisableKey", `{"eventSource":"kms.amazonaws.com","eventName":"DisableKey"}`, true},
			{"ScheduleKeyDeletion", `{"eventSource":"kms.amazonaws.com","eventName":"ScheduleKeyDeletion"}`, true},
			{"other kms call", `{"eventSource":"kms.amazonaws.com","eventName":"Decrypt"}`, false},
			{"other source", `{"eventSource":"ec2.amazonaws.com","eventName":"DisableKey"}`, false},
		}},
		{"CloudWatch.8", []tc{
			{"PutBucketPolicy", `{"eventSource":"s3.amazonaws.com","eventName":"PutBucketPolicy"}`, true},
			{"DeleteBucketReplication", `{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucketReplication"}`, true},
			{"GetObject", `{"eventSource":"s3.amazonaws.com","eventName":"GetObject"}`, false},
		}},
		{"CloudWatch.9", []tc{
			{"StopConfigurationRecorder", `{"eventSource":"config.amazonaws.com","eventName":"StopConfigurationRecorder"}`, true},
			{"PutConfigurationRecorder", `{"eventSource":"config.amazonaws.com","eventName":"PutConfigurationRecorder"}`, true},
			{"wrong source", `{"eventSource":"s3.amazonaws.com","eventName":"PutDeliveryChannel"}`, false},
		}},
		{"CloudWatch.10", []tc{
			{"AuthorizeSecurityGroupIngress", `{"eventName":"AuthorizeSecurityGroupIngress"}`, true},
			{"DeleteSecurityGroup", `{"eventName":"DeleteSecurityGroup"}`, true},
			{"ModifySecurityGroupRules is v6.0 only", `{"eventName":"ModifySecurityGroupRules"}`, false},
		}},
		{"CloudWatch.11", []tc{
			{"ReplaceNetworkAclAssociation", `{"eventName":"ReplaceNetworkAclAssociation"}`, true},
			{"DescribeNetworkAcls", `{"eventName":"DescribeNetworkAcls"}`, false},
		}},
		{"CloudWatch.12", []tc{
			{"AttachInternetGateway", `{"eventName":"AttachInternetGateway"}`, true},
			{"CreateNatGateway", `{"eventName":"CreateNatGateway"}`, false},
		}},
		{"CloudWatch.13", []tc{
			{"DisassociateRouteTable", `{"eventName":"DisassociateRouteTable"}`, true},
			{"CreateRoute", `{"eventName":"CreateRoute"}`, true},
			{"prefix of a name is not a match", `{"eventName":"CreateRouteTableX"}`, false},
		}},
		{"CloudWatch.14", []tc{
			{"EnableVpcClassicLink", `{"eventName":"EnableVpcClassicLink"}`, true},
			{"CreateVpc", `{"eventName":"CreateVpc"}`, true},
			{"CreateSubnet", `{"eventName":"CreateSubnet"}`, false},
		}},
		{"CIS 4.15 organizations", []tc{
			{"LeaveOrganization", `{"eventSource":"organizations.amazonaws.com","eventName":"LeaveOrganization"}`, true},
			{"CreatePolicy in IAM", `{"eventSource":"iam.amazonaws.com","eventName":"CreatePolicy"}`, false},
			{"ListAccounts", `{"eventSource":"organizations.amazonaws.com","eventName":"ListAccounts"}`, false},
		}},
		{"CIS 4.1 narrowed", []tc{
			{"UnauthorizedOperation ignores the narrowing", `{"errorCode":"Client.UnauthorizedOperation","eventName":"HeadBucket","sourceIPAddress":"delivery.logs.amazonaws.com"}`, true},
			{"AccessDenied from a user", `{"errorCode":"AccessDenied","eventName":"GetObject","sourceIPAddress":"198.51.100.7"}`, true},
			{"AccessDenied HeadBucket", `{"errorCode":"AccessDenied","eventName":"HeadBucket","sourceIPAddress":"198.51.100.7"}`, false},
			{"AccessDenied from log delivery", `{"errorCode":"AccessDenied","eventName":"GetObject","sourceIPAddress":"delivery.logs.amazonaws.com"}`, false},
			{"AccessDenied without sourceIPAddress", `{"errorCode":"AccessDenied","eventName":"GetObject"}`, false},
		}},
		{"CIS 4.2 older", []tc{
			{"failed login without MFA also matches", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"},"responseElements":{"ConsoleLogin":"Failure"}}`, true},
			{"MFA used", `{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"Yes"}}`, false},
		}},
	}
	for _, tt := range tests {
		p := cisByControl(t, tt.control)
		for _, c := range tt.cases {
			t.Run(tt.control+"/"+c.name, func(t *testing.T) {
				for _, useNumber := range []bool{true, false} {
					if got := p.Match(decode(t, c.record, useNumber)); got != c.want {
						t.Errorf("Match(%s) = %v, want %v (UseNumber=%v)", c.record, got, c.want, useNumber)
					}
				}
			})
		}
	}
}

// TestCISEqualityConstraints checks the index hints for the published
// patterns' shapes.
func TestCISEqualityConstraints(t *testing.T) {
	tests := []struct {
		control string
		want    map[string]int // selector -> number of allowed values
	}{
		{"CloudWatch.1", map[string]int{"userIdentity.type": 1}},
		{"CloudWatch.2", map[string]int{}},
		{"CloudWatch.3", map[string]int{"eventName": 1, "userIdentity.type": 1, "responseElements.ConsoleLogin": 1}},
		{"CloudWatch.4", map[string]int{"eventName": 16}},
		{"CloudWatch.6", map[string]int{"eventName": 1, "errorMessage": 1}},
		{"CloudWatch.7", map[string]int{"eventSource": 1, "eventName": 2}},
		{"CloudWatch.8", map[string]int{"eventSource": 1, "eventName": 9}},
		{"CIS 4.15 organizations", map[string]int{"eventSource": 1, "eventName": 18}},
		{"CIS 4.1 narrowed", map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.control, func(t *testing.T) {
			got := cisByControl(t, tt.control).EqualityConstraints()
			if len(got) != len(tt.want) {
				t.Fatalf("EqualityConstraints() = %v, want keys %v", got, tt.want)
			}
			for k, n := range tt.want {
				if len(got[k]) != n {
					t.Errorf("EqualityConstraints()[%q] = %v, want %d values", k, got[k], n)
				}
			}
		})
	}
}
