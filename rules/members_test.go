package rules

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestMemberReads: a lazy map read only through named members (a member,
// an index by a constant, dig with a constant path) is decoded member by
// member; read any other way, or through $env, it is decoded whole.
func TestMemberReads(t *testing.T) {
	rp, re := cloudtrail.FieldsOf("requestParameters"), cloudtrail.FieldsOf("responseElements")
	for _, tt := range []struct {
		cond  string
		whole cloudtrail.Fields
		parts string // fmt of the parts
	}{
		{`requestParameters.a == "x" || str(requestParameters["b"]) == "y"`, 0, "[{1 [a b]}]"},
		{`str(dig(requestParameters, "c[0].d") ?? requestParameters.e.f) != ""`, 0, "[{1 [c e]}]"},
		{`str(dig(requestParameters, ".")) != ""`, rp, "[]"},
		{`len(requestParameters) > 0 && requestParameters.a == "x"`, rp, "[]"},
		{`let m = requestParameters; m.a == "x"`, rp, "[]"},
		{`requestParameters.a == "x" && $env["requestParameters"] != nil`, cloudtrail.AllFields, "[]"},
		{`any(toList(requestParameters.items), {#.group == "all"}) || str(responseElements.x) == "1"`, 0, "[{1 [items]} {2 [x]}]"},
		{`any(["a", "b"], {str(dig(requestParameters, #)) == "false"})`, rp, "[]"},
		{`requestParameters.a == "x" && len(resources) > 0`, cloudtrail.FieldsOf("resources"), "[{1 [a]}]"},
		{`str(requestParameters.a) == "x" && responseElements != nil`, re, "[{1 [a]}]"},
	} {
		t.Run(tt.cond, func(t *testing.T) {
			c, err := CompileCondition(tt.cond)
			if err != nil {
				t.Fatal(err)
			}
			p := c.program
			whole, parts := memberReads(p.Node(), p.fields)
			if got := fmt.Sprint(parts); whole != tt.whole || got != tt.parts {
				t.Errorf("whole %08b parts %s, want %08b %s", whole, got, tt.whole, tt.parts)
			}
		})
	}
}

// TestMembersDecodedAlone: a condition the VM decides, reading two members
// of requestParameters, decodes those two only, and the event still
// decodes whole afterwards.
func TestMembersDecodedAlone(t *testing.T) {
	rec := []byte(`{"eventVersion":"1.08","eventID":"e","eventName":"RunInstances","requestParameters":{"instanceType":"p4d.24xlarge","userData":"x","blockDeviceMapping":{"items":[{"deviceName":"/dev/xvda"}]},"instanceType":"p5.48xlarge"}}`)
	// True only if the last instanceType counts, as in the whole decode.
	ev := evalHeader(t, `str(dig(requestParameters, "instanceType.value") ?? requestParameters.instanceType) startsWith "p5" && requestParameters.nope == nil`, rec)
	if got := slices.Sorted(maps.Keys(ev.RequestParameters)); !slices.Equal(got, []string{"instanceType"}) {
		t.Errorf("decoded members %q, want only instanceType", got)
	}
	if err := ev.Complete(); err != nil {
		t.Fatal(err)
	}
	if len(ev.RequestParameters) != 3 {
		t.Errorf("after Complete: %v", ev.RequestParameters)
	}
}
