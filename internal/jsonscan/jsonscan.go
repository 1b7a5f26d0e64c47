// Package jsonscan is a validating JSON scanner that builds nothing: it
// walks one value byte by byte (strings eight bytes at a time) and reports
// where things are, for code that fills only what it needs from a record
// (rules/cloudtrail's header) or must check JSON fast before it copies it
// (notifiers' alert encoder). It accepts exactly what encoding/json accepts,
// up to encoding/json's nesting limit.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
)

// Scanner reads the JSON in Data from I on. Its methods leave I after what
// they read; on an error I is anywhere.
type Scanner struct {
	Data []byte
	I    int
	// CheckFloats makes Skip and the number scan report ErrRange for a
	// number that does not fit a float64, as encoding/json does when it
	// decodes into an `any`.
	CheckFloats bool
	// Spaced is set once WS has skipped white space.
	Spaced bool

	// marks, when set by Marked, classify Data's bytes for Str.
	marks []uint64
}

// ErrSyntax means the input is not valid JSON (or is nested deeper than
// encoding/json accepts).
var ErrSyntax = errors.New("invalid JSON")

// ErrRange means a number is out of float64's range (see CheckFloats).
var ErrRange = errors.New("number out of range")

// maxDepth is encoding/json's nesting limit: it accepts values nested this
// deep and no deeper.
const maxDepth = 10000

// WS skips white space.
func (s *Scanner) WS() {
	for s.I < len(s.Data) {
		switch s.Data[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
			s.Spaced = true
		default:
			return
		}
	}
}

// Next consumes the `,` or `}` after a member's value and reports whether
// the object ended.
func (s *Scanner) Next() (bool, error) {
	s.WS()
	if s.I >= len(s.Data) {
		return false, ErrSyntax
	}
	switch s.Data[s.I] {
	case ',':
		s.I++
		return false, nil
	case '}':
		s.I++
		return true, nil
	}
	return false, ErrSyntax
}

// Flags Str reports about a string.
const (
	StrEscaped  = 1 << iota // holds a backslash escape
	StrNonASCII             // holds a byte >= 0x80
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// Str scans a JSON string at s.I and returns the bounds of its contents
// (without quotes) and flags.
func (s *Scanner) Str() (start, end, flags int, err error) {
	end, flags, err = StrAt(s.Data, s.marks, s.I)
	if err != nil {
		return 0, 0, 0, err
	}
	start = s.I + 1
	s.I = end + 1
	return start, end, flags, nil
}

// StrAt validates the JSON string whose opening quote is data[i] and
// returns the place of its closing quote, and flags. marks (from Mark, or
// nil) let it find the end of a plain string without reading its bytes.
func StrAt(data []byte, marks []uint64, i int) (end, flags int, err error) {
	if i >= len(data) || data[i] != '"' {
		return 0, 0, ErrSyntax
	}
	if marks != nil {
		if n := PlainLen(marks, uint(i+1)); n >= 0 {
			return i + 1 + n, 0, nil
		}
	}
	return strAt(data, marks, i)
}

// strAt is StrAt for strings that PlainLen does not take.
func strAt(data []byte, marks []uint64, i int) (end, flags int, err error) {
	if i >= len(data) || data[i] != '"' {
		return 0, 0, ErrSyntax
	}
	i++
	if marks != nil {
		if end, high, ok := strMarked(data, marks, i); ok {
			if high {
				flags = StrNonASCII
			}
			return end, flags, nil
		}
	}
	var high uint64
	for {
		// Eight bytes at a time: find the first quote, backslash or
		// control byte (the lowest flagged byte is exact; the borrow in
		// the subtraction can only flag bytes above it).
		for i+8 <= len(data) {
			x := binary.LittleEndian.Uint64(data[i:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			m := ((q - lsb) &^ q) | ((b - lsb) &^ b) | (x - lsb*0x20)
			m &^= x
			m &= msb
			if m != 0 {
				n := bits.TrailingZeros64(m) >> 3
				// Bytes below the stop one: note any high bit (a
				// shift by 64 is 0 in Go).
				high |= (x << (8 * (8 - n))) & msb
				i += n
				goto slow
			}
			high |= x
			i += 8
		}
	slow:
		if i >= len(data) {
			return 0, 0, ErrSyntax
		}
		c := data[i]
		switch {
		case c == '"':
			if high&msb != 0 {
				flags |= StrNonASCII
			}
			return i, flags, nil
		case c == '\\':
			flags |= StrEscaped
			i++
			if i >= len(data) {
				return 0, 0, ErrSyntax
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(data) {
					return 0, 0, ErrSyntax
				}
				for _, h := range data[i+1 : i+5] {
					if !isHex(h) {
						return 0, 0, ErrSyntax
					}
				}
				i += 5
			default:
				return 0, 0, ErrSyntax
			}
		case c < 0x20:
			return 0, 0, ErrSyntax
		default:
			high |= uint64(c)
			i++
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *Scanner) Lit(word string) bool {
	if len(s.Data)-s.I >= len(word) && string(s.Data[s.I:s.I+len(word)]) == word {
		s.I += len(word)
		return true
	}
	return false
}

// Skip validates and skips one JSON value.
func (s *Scanner) Skip() error {
	next, spaced, err := skipAt(s.Data, s.marks, s.I, 0, s.CheckFloats)
	s.I = next
	s.Spaced = s.Spaced || spaced
	return err
}

// SkipAt validates the JSON value at data[i] (no white space before it),
// nested in depth containers, and returns the place after it. With
// checkFloats, a number that does not fit a float64 is ErrRange, as it is
// to encoding/json when it decodes the number into an `any`. marks are as
// for StrAt.
func SkipAt(data []byte, marks []uint64, i, depth int, checkFloats bool) (next int, err error) {
	next, _, err = skipAt(data, marks, i, depth, checkFloats)
	return next, err
}

// skipAt is SkipAt that also reports whether the value holds white space
// (between its tokens). It walks the value in one loop, its containers
// on a stack of bits (1: an array), the first 64 levels in a word.
func skipAt(data []byte, marks []uint64, i, depth int, checkFloats bool) (next int, spaced bool, err error) {
	var (
		// stack's bit 0 is 1 when the innermost open container is an
		// array, bit 1 for the one around it, and so on; the bits of
		// containers more than 64 levels out are in deep (rare).
		stack uint64
		deep  []uint64
		level int // containers open in this value
	)
value:
	if i >= len(data) {
		return i, spaced, ErrSyntax
	}
	switch c := data[i]; c {
	case '"':
		if marks != nil {
			if n := PlainLen(marks, uint(i+1)); n >= 0 {
				i += n + 2
				break
			}
		}
		end, _, err := strAt(data, marks, i)
		if err != nil {
			return i, spaced, err
		}
		i = end + 1
	case '{', '[':
		if depth+level >= maxDepth {
			return i, spaced, ErrSyntax
		}
		i++
		if i < len(data) && data[i] <= ' ' {
			i, spaced = ws(data, i, spaced)
		}
		if i < len(data) && data[i] == c+2 { // '}' or ']': empty
			i++
			break
		}
		if level >= 64 {
			deep = append(deep, stack>>63)
		}
		level++
		if c == '[' {
			stack = stack<<1 | 1
			goto value
		}
		stack <<= 1
		goto key
	case 't':
		if !hasLit(data, i, "true") {
			return i, spaced, ErrSyntax
		}
		i += 4
	case 'f':
		if !hasLit(data, i, "false") {
			return i, spaced, ErrSyntax
		}
		i += 5
	case 'n':
		if !hasLit(data, i, "null") {
			return i, spaced, ErrSyntax
		}
		i += 4
	default:
		if c != '-' && (c < '0' || c > '9') {
			return i, spaced, ErrSyntax
		}
		start := i
		if i, err = numberAt(data, i); err != nil {
			return i, spaced, err
		}
		if checkFloats && !floatInRange(data[start:i]) {
			return i, spaced, ErrRange
		}
	}
	// After a value: the end, or what follows it in its container.
	for level > 0 {
		if i < len(data) && data[i] <= ' ' {
			i, spaced = ws(data, i, spaced)
		}
		if i >= len(data) {
			return i, spaced, ErrSyntax
		}
		c := data[i]
		i++
		if c == ',' {
			if i < len(data) && data[i] <= ' ' {
				i, spaced = ws(data, i, spaced)
			}
			if stack&1 != 0 {
				goto value
			}
			goto key
		}
		closer := byte('}')
		if stack&1 != 0 {
			closer = ']'
		}
		if c != closer {
			return i - 1, spaced, ErrSyntax
		}
		// The container closed.
		level--
		stack >>= 1
		if level >= 64 {
			stack |= deep[len(deep)-1] << 63
			deep = deep[:len(deep)-1]
		}
	}
	return i, spaced, nil
key:
	// A member: "key" : value.
	n := -1
	if marks != nil && i < len(data) && data[i] == '"' {
		if n = PlainLen(marks, uint(i+1)); n >= 0 {
			i += n + 2
		}
	}
	if n < 0 {
		end, _, err := strAt(data, marks, i)
		if err != nil {
			return i, spaced, err
		}
		i = end + 1
	}
	if i < len(data) && data[i] <= ' ' {
		i, spaced = ws(data, i, spaced)
	}
	if i >= len(data) || data[i] != ':' {
		return i, spaced, ErrSyntax
	}
	i++
	if i < len(data) && data[i] <= ' ' {
		i, spaced = ws(data, i, spaced)
	}
	goto value
}

// ws skips white space from data[i] on, noting in spaced whether there
// was any.
func ws(data []byte, i int, spaced bool) (int, bool) {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
			spaced = true
		default:
			return i, spaced
		}
	}
	return i, spaced
}

// SkipWS returns the place of the first byte from data[i] on that is not
// white space.
func SkipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// hasLit reports whether data holds word at i.
func hasLit(data []byte, i int, word string) bool {
	return len(data)-i >= len(word) && string(data[i:i+len(word)]) == word
}

// floatInRange reports whether n, a valid JSON number, parses as a float64
// without a range error. Plain integers and decimals shorter than 300
// bytes always do; only those need no parse.
func floatInRange(n []byte) bool {
	if len(n) < 300 && bytes.IndexAny(n, "eE") < 0 {
		return true
	}
	_, err := strconv.ParseFloat(string(n), 64)
	return err == nil
}

// NumberSyntax validates a JSON number at s.I and leaves s.I after it.
func (s *Scanner) NumberSyntax() error {
	var err error
	s.I, err = numberAt(s.Data, s.I)
	return err
}

// numberAt validates the JSON number (RFC 8259 grammar) at data[i], a '-'
// or a digit, and returns the place after it.
func numberAt(data []byte, i int) (int, error) {
	if data[i] == '-' {
		i++
	}
	if i < len(data) && data[i] == '0' {
		i++
	} else if j := digits(data, i); j == i {
		return i, ErrSyntax
	} else {
		i = j
	}
	if i < len(data) && data[i] == '.' {
		j := digits(data, i+1)
		if j == i+1 {
			return j, ErrSyntax
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(data, i)
		if j == i {
			return j, ErrSyntax
		}
		i = j
	}
	return i, nil
}

// digits returns the place of the first byte from data[i] on that is not
// a digit.
func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}
