package rules

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/coverage.md) from the current rules and corpus")

// stratusRunRe finds the per-run marker that Stratus Red Team (and Grimoire,
// which drives it) put in the User-Agent of every call they make.
var stratusRunRe = regexp.MustCompile(`(?:stratus-red-team|grimoire)_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`)

// stratusRun is every record of one Stratus Red Team invocation (one
// User-Agent UUID): warm-up, detonation and clean-up calls together.
type stratusRun struct {
	events []*cloudtrail.Event
	names  map[string]bool
}

func (r *stratusRun) has(name string) bool { return r.names[name] }

// stratusTechnique says which calls of a run are a technique's detonation:
// the calls its documentation lists as the attack itself, not the Terraform
// warm-up around it. A run's context (other calls in the same run) tells
// apart techniques that share a call.
type stratusTechnique struct {
	id    string
	match func(ev *cloudtrail.Event, run *stratusRun) bool
}

func named(names ...string) func(*cloudtrail.Event, *stratusRun) bool {
	return func(ev *cloudtrail.Event, _ *stratusRun) bool {
		for _, n := range names {
			if ev.EventName == n {
				return true
			}
		}
		return false
	}
}

// stratusTechniques is ordered: a record is attributed to the first
// technique that claims it.
var stratusTechniques = []stratusTechnique{
	{"aws.credential-access.ec2-get-password-data", named("GetPasswordData")},
	{"aws.credential-access.ec2-steal-instance-credentials", func(ev *cloudtrail.Event, run *stratusRun) bool {
		// SendCommand to read the instance's credentials, then calls made
		// with them (GetCallerIdentity) in the same run.
		return ev.EventName == "SendCommand" && run.has("GetCallerIdentity")
	}},
	{"aws.credential-access.secretsmanager-batch-retrieve-secrets", named("BatchGetSecretValue")},
	{"aws.credential-access.secretsmanager-retrieve-secrets", named("GetSecretValue")},
	{"aws.credential-access.ssm-retrieve-securestring-parameters", named("GetParameters")},
	{"aws.defense-evasion.cloudtrail-delete", named("DeleteTrail")},
	{"aws.defense-evasion.cloudtrail-event-selectors", func(ev *cloudtrail.Event, _ *stratusRun) bool {
		// The technique's documentation: event selectors that exclude
		// management events. The warm-up and the revert (in a run of its
		// own in some datasets) set selectors that include them.
		if ev.EventName != "PutEventSelectors" {
			return false
		}
		for _, sel := range toList(ev.RequestParameters["eventSelectors"]) {
			if m, ok := sel.(map[string]any); ok && toString(m["includeManagementEvents"]) == "false" {
				return true
			}
		}
		return false
	}},
	{"aws.defense-evasion.cloudtrail-lifecycle-rule", named("PutBucketLifecycle")},
	{"aws.defense-evasion.cloudtrail-stop", named("StopLogging")},
	{"aws.defense-evasion.dns-delete-logs", named("DeleteResolverQueryLogConfig")},
	{"aws.defense-evasion.organizations-leave", named("LeaveOrganization")},
	{"aws.defense-evasion.vpc-remove-flow-logs", named("DeleteFlowLogs")},
	{"aws.discovery.ec2-download-user-data", func(ev *cloudtrail.Event, run *stratusRun) bool {
		// Terraform reads userData while creating instances; the technique
		// reads it without launching any.
		return ev.EventName == "DescribeInstanceAttribute" && ev.RequestParameters["attribute"] == "userData" && !run.has("RunInstances")
	}},
	{"aws.execution.ec2-launch-unusual-instances", func(ev *cloudtrail.Event, run *stratusRun) bool {
		// Launched with a role assumed for the purpose; warm-ups launch without.
		return ev.EventName == "RunInstances" && run.has("AssumeRole")
	}},
	{"aws.execution.ec2-user-data", func(ev *cloudtrail.Event, _ *stratusRun) bool {
		return ev.EventName == "ModifyInstanceAttribute" && ev.RequestParameters["userData"] != nil
	}},
	{"aws.execution.ssm-send-command", named("SendCommand")},
	{"aws.execution.ssm-start-session", named("StartSession")},
	{"aws.exfiltration.ec2-security-group-open-port-22-ingress", func(ev *cloudtrail.Event, _ *stratusRun) bool {
		// The detonation uses the older top-level form (cidrIp, fromPort 22).
		return ev.EventName == "AuthorizeSecurityGroupIngress" && toString(ev.RequestParameters["fromPort"]) == "22"
	}},
	{"aws.exfiltration.ec2-share-ami", named("ModifyImageAttribute")},
	{"aws.exfiltration.ec2-share-ebs-snapshot", named("ModifySnapshotAttribute")},
	{"aws.exfiltration.rds-share-snapshot", named("ModifyDBSnapshotAttribute")},
	{"aws.exfiltration.s3-backdoor-bucket-policy", func(ev *cloudtrail.Event, run *stratusRun) bool {
		// Trail warm-ups put a CloudTrail bucket policy; the backdoor is in a run without a trail.
		return ev.EventName == "PutBucketPolicy" && !run.has("CreateTrail")
	}},
	{"aws.impact.bedrock-invoke-model", named("InvokeModel")},
	{"aws.initial-access.console-login-without-mfa", named("ConsoleLogin")},
	{"aws.lateral-movement.ec2-instance-connect", named("SendSSHPublicKey")},
	{"aws.lateral-movement.ec2-serial-console-send-ssh-public-key", named("SendSerialConsoleSSHPublicKey", "EnableSerialConsoleAccess")},
	{"aws.persistence.iam-backdoor-role", named("UpdateAssumeRolePolicy")},
	{"aws.persistence.iam-create-admin-user", func(ev *cloudtrail.Event, run *stratusRun) bool {
		return run.has("AttachUserPolicy") && (ev.EventName == "CreateUser" || ev.EventName == "AttachUserPolicy" || ev.EventName == "CreateAccessKey")
	}},
	{"aws.persistence.iam-backdoor-user", named("CreateAccessKey")},
	{"aws.persistence.iam-create-backdoor-role", func(ev *cloudtrail.Event, run *stratusRun) bool {
		// CreateRole with an external trust plus AdministratorAccess, in a
		// run that is nothing else (instance and Lambda warm-ups create
		// roles among many other things).
		return (ev.EventName == "CreateRole" || ev.EventName == "AttachRolePolicy") && run.has("AttachRolePolicy") &&
			!run.has("UpdateAssumeRolePolicy") && !run.has("CreateInstanceProfile") && !run.has("CreateVpc")
	}},
	{"aws.persistence.iam-create-user-login-profile", named("CreateLoginProfile")},
	{"aws.persistence.lambda-backdoor-function", named("AddPermission20150331v2")},
	{"aws.persistence.lambda-layer-extension", named("UpdateFunctionConfiguration20150331v2")},
	{"aws.persistence.lambda-overwrite-code", named("UpdateFunctionCode20150331v2")},
	{"aws.persistence.rolesanywhere-create-trust-anchor", named("CreateTrustAnchor", "CreateProfile")},
	{"aws.persistence.sts-federation-token", named("GetFederationToken")},
	{"aws.privilege-escalation.iam-update-user-login-profile", named("UpdateLoginProfile")},
}

// techniqueResult is one technique's outcome in one corpus file.
type techniqueResult struct {
	records int
	rules   map[string]bool
}

// corpusRecord is one corpus record in file order, with the Stratus Red
// Team technique it is a detonation of ("" for warm-up, clean-up and
// everything not made by a Stratus run).
type corpusRecord struct {
	ev        *cloudtrail.Event
	technique string
}

// attributeCorpus reads every corpus file and attributes each Stratus Red
// Team detonation record to its technique: records are grouped into runs
// by the User-Agent marker, then matched against stratusTechniques (the
// first technique that claims a record gets it). Records that do not decode
// are left out. The files come back sorted, their records in file order.
func attributeCorpus(t *testing.T) (files []string, records map[string][]*corpusRecord) {
	records = map[string][]*corpusRecord{}
	runs := map[string]map[string]*stratusRun{} // file -> run id -> run
	runOf := map[*corpusRecord]*stratusRun{}
	corpus.ForEachRecord(t, func(place string, line []byte) {
		file := place[:strings.LastIndexByte(place, ':')]
		if _, ok := records[file]; !ok {
			records[file] = nil
			files = append(files, file)
		}
		ev, err := cloudtrail.DecodeEvent(line)
		if err != nil {
			return
		}
		rec := &corpusRecord{ev: ev}
		records[file] = append(records[file], rec)
		m := stratusRunRe.FindStringSubmatch(ev.UserAgent)
		if m == nil {
			return
		}
		if runs[file] == nil {
			runs[file] = map[string]*stratusRun{}
		}
		run := runs[file][m[1]]
		if run == nil {
			run = &stratusRun{names: map[string]bool{}}
			runs[file][m[1]] = run
		}
		run.events = append(run.events, ev)
		run.names[ev.EventName] = true
		runOf[rec] = run
	})
	for _, file := range files {
		for _, rec := range records[file] {
			run := runOf[rec]
			if run == nil {
				continue
			}
			for _, tech := range stratusTechniques {
				if tech.match(rec.ev, run) {
					rec.technique = tech.id
					break
				}
			}
		}
	}
	sort.Strings(files)
	return files, records
}

// coverageResults replays the corpus's Stratus Red Team detonation
// records through every enabled built-in rule. It returns, per file, the
// techniques found and which rules matched their records.
func coverageResults(t *testing.T, set *Set) (files []string, results map[string]map[string]*techniqueResult) {
	results = map[string]map[string]*techniqueResult{}
	all, records := attributeCorpus(t)
	for _, file := range all {
		for _, rec := range records[file] {
			if rec.technique == "" {
				continue
			}
			if results[file] == nil {
				results[file] = map[string]*techniqueResult{}
				files = append(files, file)
			}
			res := results[file][rec.technique]
			if res == nil {
				res = &techniqueResult{rules: map[string]bool{}}
				results[file][rec.technique] = res
			}
			res.records++
			for _, r := range set.Match(rec.ev, nil, nil) {
				res.rules[r.ID] = true
			}
		}
	}
	return files, results
}

// attackTags returns a rule's ATT&CK technique ids (attack:T...).
func attackTags(r *Rule) []string {
	var out []string
	for _, tag := range r.Tags {
		if id, ok := strings.CutPrefix(tag, "attack:"); ok && strings.HasPrefix(id, "T") {
			out = append(out, id)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// attackTechniques names the ATT&CK (Enterprise, cloud) techniques the
// built-in packs tag, each under the tactic this report lists it with (a
// technique that serves several tactics is listed once).
var attackTechniques = map[string]struct{ name, tactic string }{
	"T1020": {"Automated Exfiltration", "exfiltration"}, "T1021.004": {"Remote Services: SSH", "lateral-movement"},
	"T1021.007": {"Remote Services: Cloud Services", "lateral-movement"}, "T1040": {"Network Sniffing", "credential-access"},
	"T1048": {"Exfiltration Over Alternative Protocol", "exfiltration"}, "T1059": {"Command and Scripting Interpreter", "execution"},
	"T1059.009": {"Command and Scripting Interpreter: Cloud API", "execution"}, "T1069.003": {"Permission Groups Discovery: Cloud Groups", "discovery"},
	"T1070": {"Indicator Removal", "defense-evasion"}, "T1078.004": {"Valid Accounts: Cloud Accounts", "initial-access"},
	"T1087.004": {"Account Discovery: Cloud Account", "discovery"}, "T1098": {"Account Manipulation", "persistence"},
	"T1098.001": {"Account Manipulation: Additional Cloud Credentials", "persistence"}, "T1098.003": {"Account Manipulation: Additional Cloud Roles", "persistence"},
	"T1098.004": {"Account Manipulation: SSH Authorized Keys", "persistence"}, "T1110": {"Brute Force", "credential-access"},
	"T1133": {"External Remote Services", "initial-access"}, "T1136.003": {"Create Account: Cloud Account", "persistence"},
	"T1190": {"Exploit Public-Facing Application", "initial-access"}, "T1201": {"Password Policy Discovery", "discovery"},
	"T1484.002": {"Domain or Tenant Policy Modification: Trust Modification", "privilege-escalation"}, "T1485": {"Data Destruction", "impact"},
	"T1486": {"Data Encrypted for Impact", "impact"}, "T1489": {"Service Stop", "impact"}, "T1490": {"Inhibit System Recovery", "impact"},
	"T1496": {"Resource Hijacking", "impact"}, "T1525": {"Implant Internal Image", "persistence"}, "T1530": {"Data from Cloud Storage", "collection"},
	"T1531": {"Account Access Removal", "impact"}, "T1535": {"Unused/Unsupported Cloud Regions", "defense-evasion"},
	"T1537": {"Transfer Data to Cloud Account", "exfiltration"}, "T1546": {"Event Triggered Execution", "persistence"},
	"T1550.001": {"Use Alternate Authentication Material: Application Access Token", "lateral-movement"},
	"T1552":     {"Unsecured Credentials", "credential-access"}, "T1552.001": {"Unsecured Credentials: Credentials In Files", "credential-access"},
	"T1552.005": {"Unsecured Credentials: Cloud Instance Metadata API", "credential-access"},
	"T1555.006": {"Credentials from Password Stores: Cloud Secrets Management Stores", "credential-access"},
	"T1556.006": {"Modify Authentication Process: Multi-Factor Authentication", "credential-access"},
	"T1556.007": {"Modify Authentication Process: Hybrid Identity", "credential-access"}, "T1562": {"Impair Defenses", "defense-evasion"},
	"T1562.001": {"Impair Defenses: Disable or Modify Tools", "defense-evasion"}, "T1562.007": {"Impair Defenses: Disable or Modify Cloud Firewall", "defense-evasion"},
	"T1562.008": {"Impair Defenses: Disable or Modify Cloud Logs", "defense-evasion"}, "T1580": {"Cloud Infrastructure Discovery", "discovery"},
	"T1584.001": {"Compromise Infrastructure: Domains", "resource-development"}, "T1589.001": {"Gather Victim Identity Information: Credentials", "reconnaissance"},
	"T1606.002": {"Forge Web Credentials: SAML Tokens", "credential-access"}, "T1651": {"Cloud Administration Command", "execution"},
}

// attackTactics is ATT&CK's order of tactics.
var attackTactics = []string{"reconnaissance", "resource-development", "initial-access", "execution", "persistence",
	"privilege-escalation", "defense-evasion", "credential-access", "discovery", "lateral-movement", "collection",
	"exfiltration", "impact"}

// TestEveryAttackTagIsNamed keeps attackTechniques complete.
func TestEveryAttackTagIsNamed(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range set.Rules() {
		for _, id := range attackTags(r) {
			if _, ok := attackTechniques[id]; !ok {
				t.Errorf("%s: rule %s: technique %s is not in attackTechniques (coverage_test.go)", r.Pos, r.ID, id)
			}
		}
	}
}

// renderAttackMatrix writes, per pack, the ATT&CK techniques its rules
// are tagged with, by tactic, and the rules for each.
func renderAttackMatrix(b *bytes.Buffer, set *Set) {
	b.WriteString("## ATT&CK techniques per pack\n\n")
	b.WriteString("Each technique is listed under one tactic. Rules in italics ship disabled (enable them in the\n")
	b.WriteString("configuration).\n\n")
	byPack := map[string]map[string][]string{} // pack -> technique -> rules
	for _, r := range set.Rules() {
		pack := strings.TrimPrefix(r.Pos.File, "builtin:")
		pack = pack[:strings.IndexByte(pack, '/')]
		if byPack[pack] == nil {
			byPack[pack] = map[string][]string{}
		}
		name := "`" + r.ID + "`"
		if !r.Enabled {
			name = "_" + name + "_"
		}
		for _, id := range attackTags(r) {
			byPack[pack][id] = append(byPack[pack][id], name)
		}
	}
	packs := make([]string, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	sort.Strings(packs)
	for _, pack := range packs {
		techs := byPack[pack]
		tactics := map[string]bool{}
		for id := range techs {
			tactics[attackTechniques[id].tactic] = true
		}
		fmt.Fprintf(b, "### %s\n\n%d techniques in %d tactics.\n\n", pack, len(techs), len(tactics))
		b.WriteString("| tactic | technique | rules |\n|---|---|---|\n")
		for _, tactic := range attackTactics {
			ids := []string{}
			for id := range techs {
				if attackTechniques[id].tactic == tactic {
					ids = append(ids, id)
				}
			}
			sort.Strings(ids)
			for _, id := range ids {
				fmt.Fprintf(b, "| %s | %s %s | %s |\n", tactic, id, attackTechniques[id].name, strings.Join(techs[id], ", "))
			}
		}
		b.WriteString("\n")
	}
}

// renderCoverage writes docs/coverage.md.
func renderCoverage(set *Set, files []string, results map[string]map[string]*techniqueResult) []byte {
	var b bytes.Buffer
	b.WriteString("# Built-in rule coverage\n\n")
	b.WriteString("Generated by `go test ./rules -run TestCoverageReport -update` from the rules in\n")
	b.WriteString("`rules/builtin/` and the CloudTrail corpus in `../shared/corpus/`; do not edit by hand\n")
	b.WriteString("(the test fails when this file is stale).\n\n")

	b.WriteString("## Rules\n\n")
	b.WriteString("| rule | pack | severity | catches | ATT&CK |\n|---|---|---|---|---|\n")
	for _, r := range set.Rules() {
		pack := strings.TrimPrefix(r.Pos.File, "builtin:")
		pack = pack[:strings.IndexByte(pack, '/')]
		title := r.Title
		if !r.Enabled {
			title += " (disabled by default)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.ID, pack, r.Severity,
			strings.ReplaceAll(title, "|", `\|`), strings.Join(attackTags(r), ", "))
	}

	b.WriteString("\n")
	renderAttackMatrix(&b, set)
	b.WriteString("## Stratus Red Team techniques in the corpus\n\n")
	b.WriteString(`Method. Stratus Red Team puts ` + "`stratus-red-team_<uuid>`" + ` (Grimoire: ` + "`grimoire_<uuid>`" + `) in the
User-Agent of every call, one UUID per invocation; the UUID names the run, not the technique.
The test groups records by that UUID, then attributes each record to a technique with a table
of detonation signatures (` + "`stratusTechniques`" + ` in rules/coverage_test.go): the calls each technique's
documentation lists as the attack, told apart from the Terraform warm-up of the same run by
context (for example PutBucketPolicy counts only in a run that created no trail). Records that
match no signature (warm-up, clean-up, polling) are ignored. A technique is *caught* when at
least one enabled built-in rule matches at least one of its detonation records; the rule's
condition is what is counted, so a threshold rule counts although it would alert only once its
count is reached. Records made without the marker (another tool, stolen credentials used
outside the run) are not attributed.

`)
	for _, file := range files {
		res := results[file]
		if len(res) == 0 {
			continue // no Stratus Red Team run in this file
		}
		ids := make([]string, 0, len(res))
		caught := 0
		for id, r := range res {
			ids = append(ids, id)
			if len(r.rules) > 0 {
				caught++
			}
		}
		sort.Strings(ids)
		fmt.Fprintf(&b, "### %s\n\n%d of %d techniques caught.\n\n", file, caught, len(ids))
		b.WriteString("| technique | records | caught by |\n|---|---:|---|\n")
		for _, id := range ids {
			r := res[id]
			by := "**missed**"
			if len(r.rules) > 0 {
				by = "`" + strings.Join(sortedKeys(r.rules), "`, `") + "`"
			}
			fmt.Fprintf(&b, "| %s | %d | %s |\n", id, r.records, by)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// TestCoverageReport computes docs/coverage.md: the rule table and the
// Stratus Red Team techniques that replaying the corpus catches and
// misses. With -update it rewrites the file; without, it fails when the
// file is stale.
func TestCoverageReport(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	files, results := coverageResults(t, set)
	if len(files) == 0 {
		t.Fatal("no Stratus Red Team runs found in the corpus")
	}
	got := renderCoverage(set, files, results)
	golden := filepath.Join("..", "docs", "coverage.md")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read %s: %v (run: go test ./rules -run TestCoverageReport -update)", golden, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; run: go test ./rules -run TestCoverageReport -update", golden)
	}
}
