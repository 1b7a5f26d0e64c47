package search

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// ResourceMapping assigns a resource type to the events of one service that
// act on such a resource but whose records carry no resources list.
type ResourceMapping struct {
	// Type is the CloudFormation-style type, as CloudTrail writes it in
	// resources[].type ("AWS::EC2::SecurityGroup").
	Type string
	// EventSource is the service's eventSource ("ec2.amazonaws.com").
	EventSource string
	// EventNames are the eventName values that act on the type; a
	// trailing '*' matches any suffix (Lambda's versioned names).
	EventNames []string
	// NameFields are where the resource's name or id is read, as filter
	// pattern selectors without "$.": "requestParameters.groupId";
	// "[*]" steps into every element of an array.
	NameFields []string
}

// ResourceMappings is the documented mapping from eventSource and eventName
// to resource type for common types, used for records without a resources
// list (and in addition to it where there is one).
var ResourceMappings = []ResourceMapping{
	{"AWS::EC2::Instance", "ec2.amazonaws.com",
		[]string{"RunInstances", "StartInstances", "StopInstances", "RebootInstances", "TerminateInstances", "ModifyInstanceAttribute", "ModifyInstanceMetadataOptions", "GetPasswordData"},
		[]string{"requestParameters.instancesSet.items[*].instanceId", "responseElements.instancesSet.items[*].instanceId", "requestParameters.instanceId"}},
	{"AWS::EC2::SecurityGroup", "ec2.amazonaws.com",
		[]string{"CreateSecurityGroup", "DeleteSecurityGroup", "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "ModifySecurityGroupRules", "UpdateSecurityGroupRuleDescriptionsIngress", "UpdateSecurityGroupRuleDescriptionsEgress"},
		[]string{"requestParameters.groupId", "requestParameters.groupName", "responseElements.groupId"}},
	{"AWS::EC2::KeyPair", "ec2.amazonaws.com",
		[]string{"CreateKeyPair", "DeleteKeyPair", "ImportKeyPair"},
		[]string{"requestParameters.keyName", "responseElements.keyName"}},
	{"AWS::EC2::Volume", "ec2.amazonaws.com",
		[]string{"CreateVolume", "DeleteVolume", "AttachVolume", "DetachVolume", "ModifyVolume"},
		[]string{"requestParameters.volumeId", "responseElements.volumeId"}},
	{"AWS::EC2::Snapshot", "ec2.amazonaws.com",
		[]string{"CreateSnapshot", "DeleteSnapshot", "CopySnapshot", "ModifySnapshotAttribute"},
		[]string{"requestParameters.snapshotId", "responseElements.snapshotId"}},
	{"AWS::EC2::VPC", "ec2.amazonaws.com",
		[]string{"CreateVpc", "DeleteVpc", "ModifyVpcAttribute"},
		[]string{"requestParameters.vpcId", "responseElements.vpc.vpcId"}},
	{"AWS::S3::Bucket", "s3.amazonaws.com",
		[]string{"CreateBucket", "DeleteBucket", "PutBucketPolicy", "DeleteBucketPolicy", "PutBucketAcl", "PutBucketPublicAccessBlock", "DeleteBucketPublicAccessBlock", "PutBucketEncryption", "DeleteBucketEncryption", "PutBucketLogging", "PutBucketVersioning", "PutBucketLifecycle"},
		[]string{"requestParameters.bucketName"}},
	{"AWS::IAM::User", "iam.amazonaws.com",
		[]string{"CreateUser", "DeleteUser", "UpdateUser", "AttachUserPolicy", "DetachUserPolicy", "PutUserPolicy", "DeleteUserPolicy", "CreateLoginProfile", "UpdateLoginProfile", "DeleteLoginProfile", "AddUserToGroup", "RemoveUserFromGroup"},
		[]string{"requestParameters.userName"}},
	{"AWS::IAM::Role", "iam.amazonaws.com",
		[]string{"CreateRole", "DeleteRole", "UpdateRole", "UpdateAssumeRolePolicy", "AttachRolePolicy", "DetachRolePolicy", "PutRolePolicy", "DeleteRolePolicy"},
		[]string{"requestParameters.roleName"}},
	{"AWS::IAM::Policy", "iam.amazonaws.com",
		[]string{"CreatePolicy", "DeletePolicy", "CreatePolicyVersion", "DeletePolicyVersion", "SetDefaultPolicyVersion"},
		[]string{"requestParameters.policyArn", "requestParameters.policyName"}},
	{"AWS::IAM::AccessKey", "iam.amazonaws.com",
		[]string{"CreateAccessKey", "DeleteAccessKey", "UpdateAccessKey"},
		[]string{"requestParameters.accessKeyId", "responseElements.accessKey.accessKeyId"}},
	{"AWS::KMS::Key", "kms.amazonaws.com",
		[]string{"CreateKey", "DisableKey", "EnableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "PutKeyPolicy"},
		[]string{"requestParameters.keyId", "responseElements.keyMetadata.keyId"}},
	{"AWS::CloudTrail::Trail", "cloudtrail.amazonaws.com",
		[]string{"CreateTrail", "DeleteTrail", "UpdateTrail", "StartLogging", "StopLogging", "PutEventSelectors"},
		[]string{"requestParameters.name"}},
	{"AWS::RDS::DBInstance", "rds.amazonaws.com",
		[]string{"CreateDBInstance", "DeleteDBInstance", "ModifyDBInstance", "StartDBInstance", "StopDBInstance", "RebootDBInstance"},
		[]string{"requestParameters.dBInstanceIdentifier"}},
	{"AWS::Lambda::Function", "lambda.amazonaws.com",
		[]string{"CreateFunction*", "DeleteFunction*", "UpdateFunctionCode*", "UpdateFunctionConfiguration*", "AddPermission*", "RemovePermission*"},
		[]string{"requestParameters.functionName"}},
}

// applies reports whether the mapping covers ev.
func (m *ResourceMapping) applies(ev *cloudtrail.Event) bool {
	if ev.EventSource != m.EventSource {
		return false
	}
	for _, n := range m.EventNames {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			if strings.HasPrefix(ev.EventName, p) {
				return true
			}
		} else if ev.EventName == n {
			return true
		}
	}
	return false
}

// Resource is one resource an event acted on.
type Resource struct {
	Type string `json:"type"`
	Name string `json:"name"`
	ARN  string `json:"arn,omitempty"`
}

// Resources returns the resources of ev: the record's resources list, then
// those that ResourceMappings derives from its eventSource and eventName.
// A resource's name is the last part of its ARN, or the value of a mapped
// name field.
func Resources(ev *cloudtrail.Event) []Resource {
	var out []Resource
	for _, r := range ev.Resources {
		out = append(out, Resource{Type: r.Type, Name: arnName(r.ARN), ARN: r.ARN})
	}
	for i := range ResourceMappings {
		m := &ResourceMappings[i]
		if !m.applies(ev) {
			continue
		}
		names := mappedNames(ev, m)
		if len(names) == 0 {
			out = append(out, Resource{Type: m.Type})
			continue
		}
		for _, n := range names {
			out = append(out, Resource{Type: m.Type, Name: n})
		}
	}
	return out
}

// mappedNames returns the distinct values of m's name fields in ev.
func mappedNames(ev *cloudtrail.Event, m *ResourceMapping) []string {
	var names []string
	for _, f := range m.NameFields {
		for _, v := range fieldStrings(ev, f) {
			if v != "" && !contains(names, v) {
				names = append(names, v)
			}
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fieldStrings returns the string and number values that the selector
// path reaches in ev's requestParameters or responseElements. It follows
// the filter pattern's rules: "[*]" steps into every array element, other
// steps need an object.
func fieldStrings(ev *cloudtrail.Event, path string) []string {
	steps := strings.Split(path, ".")
	var root map[string]any
	switch steps[0] {
	case "requestParameters":
		root = ev.RequestParameters
	case "responseElements":
		root = ev.ResponseElements
	default:
		return nil
	}
	var out []string
	var walk func(v any, steps []string)
	walk = func(v any, steps []string) {
		if len(steps) == 0 {
			switch x := v.(type) {
			case string:
				out = append(out, x)
			case json.Number:
				out = append(out, x.String())
			case float64:
				out = append(out, strconv.FormatFloat(x, 'f', -1, 64))
			}
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		name, all := strings.CutSuffix(steps[0], "[*]")
		child, ok := obj[name]
		if !ok {
			return
		}
		if !all {
			walk(child, steps[1:])
			return
		}
		arr, ok := child.([]any)
		if !ok {
			return
		}
		for _, e := range arr {
			walk(e, steps[1:])
		}
	}
	walk(any(root), steps[1:])
	return out
}

// arnName returns the last part of an ARN (after the last '/', else after
// the last ':'), or s itself when it has neither.
func arnName(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return s
}
