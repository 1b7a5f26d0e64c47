// Package archtest holds the tests of the module's shape: rules about
// which package may import which, checked over every Go file (tests
// included). It has no code of its own.
package archtest
