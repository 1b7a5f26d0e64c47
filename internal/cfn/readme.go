package cfn

import (
	"maps"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/mdcheck"
)

// Load reads and decodes the template at path, failing t if it cannot.
func Load(t testing.TB, path string) map[string]any {
	t.Helper()
	m, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// MustRender is Render with the values of each map in turn (a later one
// wins), failing t when a variable has none.
func MustRender(t testing.TB, tpl map[string]any, sub any, values ...map[string]string) string {
	t.Helper()
	all := map[string]string{}
	for _, v := range values {
		maps.Copy(all, v)
	}
	out, err := Render(tpl, sub, all)
	if err != nil {
		t.Fatalf("%v: give it an example value", err)
	}
	return out
}

// ReadREADME reads the README.md of the working directory.
func ReadREADME(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// CheckNamed fails t for every resource, parameter and output of tpl that
// the README text does not name as `Name`.
func CheckNamed(t testing.TB, text string, tpl map[string]any) {
	t.Helper()
	for _, section := range []string{"Resources", "Parameters", "Outputs"} {
		m, _ := tpl[section].(map[string]any)
		for name := range m {
			if !strings.Contains(text, "`"+name+"`") {
				t.Errorf("README.md does not mention %s `%s`", strings.ToLower(strings.TrimSuffix(section, "s")), name)
			}
		}
	}
}

// ConfigBlock returns the README's trailwatch configuration: the last yaml
// block that has a source: key. It fails t when there is none.
func ConfigBlock(t testing.TB, text string) string {
	t.Helper()
	var cfg string
	for _, b := range mdcheck.CodeBlocks(text, "yaml") {
		if strings.Contains(b, "source:") {
			cfg = b
		}
	}
	if cfg == "" {
		t.Fatal("README.md shows no configuration (a yaml block with source:)")
	}
	return cfg
}

// CheckDeployCommands fails t unless the README's sh blocks deploy tpl
// with `aws cloudformation deploy --capabilities CAPABILITY_IAM` and
// parameter overrides (Name=value) the template has, with values it
// accepts; and for every IAM resource that names itself, which
// CAPABILITY_IAM does not cover.
func CheckDeployCommands(t testing.TB, text string, tpl map[string]any) {
	t.Helper()
	params, _ := tpl["Parameters"].(map[string]any)
	override := regexp.MustCompile(`^([A-Z][a-z][A-Za-z0-9]*)=(\S+)$`)
	seen := 0
	for _, b := range mdcheck.CodeBlocks(text, "sh") {
		if !strings.Contains(b, "aws cloudformation deploy") {
			continue
		}
		if !strings.Contains(b, "--capabilities CAPABILITY_IAM") {
			t.Error("the deploy command lacks --capabilities CAPABILITY_IAM")
		}
		for _, word := range strings.Fields(b) {
			m := override.FindStringSubmatch(word)
			if m == nil {
				continue
			}
			seen++
			p, ok := params[m[1]]
			if !ok {
				t.Errorf("the README passes %s, which is no parameter of template.yaml", m[1])
				continue
			}
			if err := Accepts(p, m[2]); err != nil {
				t.Errorf("the README passes %s=%s: %v", m[1], m[2], err)
			}
		}
	}
	if seen == 0 {
		t.Error("README.md shows no aws cloudformation deploy with --parameter-overrides")
	}
	// CAPABILITY_IAM covers IAM resources whose names CloudFormation
	// generates; a name of our own would need CAPABILITY_NAMED_IAM.
	res, _ := tpl["Resources"].(map[string]any)
	for name, r := range res {
		for _, prop := range []string{"RoleName", "ManagedPolicyName", "UserName", "GroupName"} {
			if Get(r, "Type") != "AWS::IAM::RolePolicy" && Get(r, "Properties", prop) != nil {
				t.Errorf("%s names itself (%s): the README's CAPABILITY_IAM is not enough", name, prop)
			}
		}
	}
}
