package cfn

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// transactionActions maps the item kinds of a TransactWriteItems request
// to the IAM actions that authorise them ("Using IAM with DynamoDB
// transactions", Amazon DynamoDB Developer Guide).
var transactionActions = map[string]string{
	"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
	"ConditionCheck": "dynamodb:ConditionCheckItem",
}

// ActionsOf returns the IAM actions of the methods of the API interfaces
// (service "sqs", "dynamodb", ...), each named after its operation, sorted;
// TransactWriteItems is replaced by the actions of the item kinds the Go
// package in pkgDir writes in transactions. A deployment example's test
// compares its policy with them, so the policy grants what the code calls.
func ActionsOf(t testing.TB, service, pkgDir string, apis ...reflect.Type) []string {
	t.Helper()
	set := map[string]bool{}
	for _, api := range apis {
		for i := range api.NumMethod() {
			op := api.Method(i).Name
			if op != "TransactWriteItems" {
				set[service+":"+op] = true
				continue
			}
			for _, kind := range transactionItemKinds(t, pkgDir) {
				set[transactionActions[kind]] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// transactionItemKinds returns the fields (Put, Delete, ...) set in the
// types.TransactWriteItem literals of the non-test Go files of dir.
func transactionItemKinds(t testing.TB, dir string) []string {
	t.Helper()
	isItem := func(e ast.Expr) bool {
		sel, ok := e.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "TransactWriteItem"
	}
	kinds := map[string]bool{}
	addKeys := func(lit *ast.CompositeLit) {
		for _, el := range lit.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			if key == nil {
				continue
			}
			if _, known := transactionActions[key.Name]; !known {
				t.Errorf("%s: TransactWriteItem field %s: add its IAM action to transactionActions", dir, key.Name)
			}
			kinds[key.Name] = true
		}
	}
	InspectPackage(t, dir, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		switch typ := lit.Type.(type) {
		case *ast.SelectorExpr:
			if isItem(typ) {
				addKeys(lit)
			}
		case *ast.ArrayType:
			// []types.TransactWriteItem{{Put: ...}}: the elements'
			// type is elided.
			if isItem(typ.Elt) {
				for _, el := range lit.Elts {
					if inner, ok := el.(*ast.CompositeLit); ok && inner.Type == nil {
						addKeys(inner)
					}
				}
			}
		}
		return true
	})
	if len(kinds) == 0 {
		t.Errorf("%s: no TransactWriteItem literal found, yet the API has TransactWriteItems", dir)
	}
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// InspectPackage walks the syntax of every non-test Go file of dir with
// fn, as ast.Inspect does.
func InspectPackage(t testing.TB, dir string, fn func(ast.Node) bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, fn)
	}
}
