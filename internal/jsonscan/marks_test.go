package jsonscan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// classifyRef is classify byte by byte: the definition the fast versions
// must meet.
func classifyRef(src []byte, out []uint64) {
	for i, c := range src {
		w := markStride * (i / 64)
		if c == '"' {
			out[w] |= 1 << (i % 64)
		}
		if c == '\\' || c < 0x20 {
			out[w+1] |= 1 << (i % 64)
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			out[w+2] |= 1 << (i % 64)
		}
	}
}

// classifiers are the implementations of classify this machine can run:
// the portable one always, AVX2 and AVX-512 where the CPU has them.
func classifiers() map[string]func([]byte, []uint64) {
	m := map[string]func([]byte, []uint64){"go": classifyGo}
	if hasAVX2 {
		m["avx2"] = classifyAVX2
	}
	if hasAVX512 {
		m["avx512"] = classifyAVX512
	}
	return m
}

// TestClassifyAgrees checks every classify against the byte-by-byte
// definition, on every byte value at every place of a block and on random
// blocks.
func TestClassifyAgrees(t *testing.T) {
	if !hasAVX2 || !hasAVX512 {
		t.Logf("classifiers checked on this CPU: %v (the others need AVX2 / AVX-512)", Classifiers())
	}
	var inputs [][]byte
	for c := 0; c < 256; c++ {
		for _, at := range []int{0, 7, 8, 31, 32, 33, 63} {
			b := make([]byte, 128)
			for i := range b {
				b[i] = 'a'
			}
			b[at] = byte(c)
			b[64+63-at] = byte(c)
			inputs = append(inputs, b)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, 64*(1+r.IntN(4)))
		for i := range b {
			b[i] = byte(r.IntN(256))
			if r.IntN(2) == 0 {
				const picks = "\"\\ \x1f\x20\x7f\x80\xff{}a"
				b[i] = picks[r.IntN(len(picks))]
			}
		}
		inputs = append(inputs, b)
	}
	for name, f := range classifiers() {
		for _, in := range inputs {
			want := make([]uint64, len(in)/64*markStride)
			classifyRef(in, want)
			got := make([]uint64, len(want))
			f(in, got)
			if !slices.Equal(got, want) {
				t.Fatalf("%s(%q) = %x, want %x", name, in, got, want)
			}
		}
	}
}

// withEachClassify runs f once with each classify this machine has (see
// Classifiers) as the one Mark uses.
func withEachClassify(t *testing.T, f func(t *testing.T)) {
	for _, name := range Classifiers() {
		prev := UseClassifier(name)
		t.Run(name, f)
		UseClassifier(prev)
	}
}

// markedValid is valid with marks.
func markedValid(data []byte) bool {
	s := Scanner{Data: data, marks: Mark(data, make([]uint64, markWords(len(data))))}
	return s.valid()
}

// plainLenRef is PlainLen by its definition, byte by byte.
func plainLenRef(data []byte, j int) int {
	for n := 0; n < 64 && j+n < len(data); n++ {
		switch c := data[j+n]; {
		case c == '"':
			return n
		case c == '\\' || c < 0x20 || c >= 0x80:
			return -1
		}
	}
	return -1
}

// TestMarkedStr checks Str with marks against Str without (and PlainLen
// against its definition), on strings that
// end in the first block, later blocks, the last partial block or not at
// all, with and without escapes, control and high bytes.
func TestMarkedStr(t *testing.T) {
	withEachClassify(t, func(t *testing.T) {
		for _, pre := range []int{0, 1, 30, 62, 63, 64, 100} {
			for _, body := range []string{``, `a`, `abc`, strings.Repeat("b", 62), strings.Repeat("b", 63), strings.Repeat("b", 64),
				strings.Repeat("\u00e9", 31) + "x", `a\u00e9` + strings.Repeat("c", 60), "caf\u00e9", `a\"b`, "a\x01b", `a\u00e9`, `\x`,
				string(make([]byte, 70)), fmt.Sprintf("%0130d", 7), fmt.Sprintf("%0130d\u00e9", 7)} {
				for _, close := range []string{`"`, ``} {
					data := []byte(fmt.Sprintf("%*s\"%s%s", pre, "", body, close))
					plain := Scanner{Data: data, I: pre}
					marked := Scanner{Data: data, I: pre, marks: Mark(data, make([]uint64, markWords(len(data))))}
					if got, want := PlainLen(marked.marks, uint(pre+1)), plainLenRef(data, pre+1); got != want {
						t.Errorf("%q: PlainLen = %d, want %d", data, got, want)
					}
					s1, e1, f1, err1 := plain.Str()
					s2, e2, f2, err2 := marked.Str()
					if s1 != s2 || e1 != e2 || f1 != f2 || (err1 == nil) != (err2 == nil) || (err1 == nil && plain.I != marked.I) {
						t.Errorf("%q: marked Str = %d %d %d %v (I %d), plain %d %d %d %v (I %d)",
							data, s2, e2, f2, err2, marked.I, s1, e1, f1, err1, plain.I)
					}
				}
			}
		}
	})
}

// BenchmarkClassify measures each classify this machine has on 1,280
// bytes (a typical CloudTrail record):
//
//	go test -run '^$' -bench Classify -cpu 1 -count 5 ./internal/jsonscan
func BenchmarkClassify(b *testing.B) {
	src := []byte(strings.Repeat(`{"eventName":"Decrypt","userAgent":"aws-sdk-go/1.0 \u00e9"},`, 40))[:1280]
	out := make([]uint64, markWords(len(src)))
	for name, f := range classifiers() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				f(src, out)
			}
		})
	}
}
