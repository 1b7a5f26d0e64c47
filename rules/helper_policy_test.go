package rules

import (
	"testing"
	"unsafe"
)

// TestPolicyStatementsRemembersACopy checks policyStatements' remembered
// answer: the same document gives the same statements, another document
// its own, and a document read as a view of a buffer that is then reused
// (as a record's strings are) is not confused with the buffer's new
// contents.
func TestPolicyStatementsRemembersACopy(t *testing.T) {
	public := `{"Statement":[{"Effect":"Allow","Principal":"*"}]}`
	private := `{"Statement":[{"Effect":"Allow","Principal":"1"}]}`
	buf := []byte(public)
	view := unsafe.String(&buf[0], len(buf))
	if !publicPolicy(view) || !publicPolicy(view) {
		t.Fatal("publicPolicy of a public document: false")
	}
	copy(buf, private)
	if publicPolicy(view) {
		t.Fatal("publicPolicy after the buffer changed to a private document: true")
	}
	for range 2 {
		if !publicPolicy(public) || publicPolicy(private) {
			t.Fatal("publicPolicy alternating documents: wrong answer")
		}
	}
	if got := policyAccounts(`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"}}]}`); len(got) != 1 || got[0] != "111122223333" {
		t.Fatalf("policyAccounts = %v", got)
	}
}
