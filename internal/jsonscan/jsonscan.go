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
	"encoding/json"
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

	depth int
}

// Leave notes that the caller, which entered a container with Open, has
// read its closing bracket.
func (s *Scanner) Leave() { s.depth-- }

// ErrSyntax means the input is not valid JSON (or is nested deeper than
// encoding/json accepts).
var ErrSyntax = errors.New("invalid JSON")

// ErrRange means a number is out of float64's range (see CheckFloats).
var ErrRange = errors.New("number out of range")

// maxDepth is encoding/json's nesting limit; a deeper record is left to it
// to reject.
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

// member reads `"key":` at s.I (after the opening brace or a comma) and
// leaves s.I at the value. It returns the key without its quotes (decoded
// when it holds escapes, which only the rare header-level caller needs) and
// whether the key has bytes outside ASCII or escapes.
func (s *Scanner) Member(decode bool) (key []byte, odd bool, err error) {
	s.WS()
	start, end, flags, err := s.Str()
	if err != nil {
		return nil, false, err
	}
	key = s.Data[start:end]
	if flags&StrEscaped != 0 && decode {
		var k string
		if json.Unmarshal(s.Data[start-1:end+1], &k) != nil {
			return nil, false, ErrSyntax
		}
		key = []byte(k)
	}
	s.WS()
	if s.I >= len(s.Data) || s.Data[s.I] != ':' {
		return nil, false, ErrSyntax
	}
	s.I++
	s.WS()
	return key, flags&(StrNonASCII|StrEscaped) != 0, nil
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

// Open consumes a '{' or '[' and reports whether the container is empty
// (and already closed).
func (s *Scanner) Open(closer byte) (bool, error) {
	s.depth++
	if s.depth > maxDepth-1 {
		return false, ErrSyntax
	}
	s.I++
	s.WS()
	if s.I < len(s.Data) && s.Data[s.I] == closer {
		s.I++
		s.depth--
		return true, nil
	}
	return false, nil
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

// str scans a JSON string at s.I and returns the bounds of its contents
// (without quotes) and flags.
func (s *Scanner) Str() (start, end, flags int, err error) {
	if s.I >= len(s.Data) || s.Data[s.I] != '"' {
		return 0, 0, 0, ErrSyntax
	}
	s.I++
	start = s.I
	data := s.Data
	i := s.I
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
			return 0, 0, 0, ErrSyntax
		}
		c := data[i]
		switch {
		case c == '"':
			s.I = i + 1
			if high&msb != 0 {
				flags |= StrNonASCII
			}
			return start, i, flags, nil
		case c == '\\':
			flags |= StrEscaped
			i++
			if i >= len(data) {
				return 0, 0, 0, ErrSyntax
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(data) {
					return 0, 0, 0, ErrSyntax
				}
				for _, h := range data[i+1 : i+5] {
					if !isHex(h) {
						return 0, 0, 0, ErrSyntax
					}
				}
				i += 5
			default:
				return 0, 0, 0, ErrSyntax
			}
		case c < 0x20:
			return 0, 0, 0, ErrSyntax
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
	if s.I >= len(s.Data) {
		return ErrSyntax
	}
	switch c := s.Data[s.I]; {
	case c == '"':
		_, _, _, err := s.Str()
		return err
	case c == '{':
		if empty, err := s.Open('}'); empty || err != nil {
			return err
		}
		for {
			if _, _, err := s.Member(false); err != nil {
				return err
			}
			if err := s.Skip(); err != nil {
				return err
			}
			if end, err := s.Next(); end || err != nil {
				s.depth--
				return err
			}
		}
	case c == '[':
		if empty, err := s.Open(']'); empty || err != nil {
			return err
		}
		for {
			s.WS()
			if err := s.Skip(); err != nil {
				return err
			}
			s.WS()
			if s.I >= len(s.Data) {
				return ErrSyntax
			}
			switch s.Data[s.I] {
			case ',':
				s.I++
			case ']':
				s.I++
				s.depth--
				return nil
			default:
				return ErrSyntax
			}
		}
	case c == 't':
		if s.Lit("true") {
			return nil
		}
	case c == 'f':
		if s.Lit("false") {
			return nil
		}
	case c == 'n':
		if s.Lit("null") {
			return nil
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return ErrSyntax
}

// number validates a JSON number (RFC 8259 grammar). With CheckFloats, a
// number that strconv.ParseFloat rejects as out of range is ErrRange, as
// it is to encoding/json when it decodes the number into a float64.
func (s *Scanner) number() error {
	start := s.I
	if err := s.NumberSyntax(); err != nil {
		return err
	}
	if s.CheckFloats && !floatInRange(s.Data[start:s.I]) {
		return ErrRange
	}
	return nil
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

func (s *Scanner) NumberSyntax() error {
	if s.Data[s.I] == '-' {
		s.I++
	}
	if s.I < len(s.Data) && s.Data[s.I] == '0' {
		s.I++
	} else if s.digits() == 0 {
		return ErrSyntax
	}
	if s.I < len(s.Data) && s.Data[s.I] == '.' {
		s.I++
		if s.digits() == 0 {
			return ErrSyntax
		}
	}
	if s.I < len(s.Data) && (s.Data[s.I] == 'e' || s.Data[s.I] == 'E') {
		s.I++
		if s.I < len(s.Data) && (s.Data[s.I] == '+' || s.Data[s.I] == '-') {
			s.I++
		}
		if s.digits() == 0 {
			return ErrSyntax
		}
	}
	return nil
}

func (s *Scanner) digits() int {
	n := 0
	for s.I < len(s.Data) && s.Data[s.I] >= '0' && s.Data[s.I] <= '9' {
		s.I++
		n++
	}
	return n
}
