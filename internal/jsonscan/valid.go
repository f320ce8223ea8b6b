package jsonscan

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxDepth bounds nesting, as jsontext does: a record of a million '['
// must be an error, not a deep recursion.
const maxDepth = 10000

// SyntaxError says where a value stops being valid JSON.
type SyntaxError struct {
	Offset int
	What   string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.Offset, e.What)
}

func syntaxErr(i int, what string) error { return &SyntaxError{Offset: i, What: what} }

// plain[c] is true for the bytes a string holds as they are: printable
// ASCII other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = false, false
	return t
}()

// ValidMembers walks the object that is all of obj (surrounding whitespace
// aside), validating it as RFC 8259 JSON with valid UTF-8 (what jsontext
// accepts by default, duplicate names allowed), and calls fn for each
// member with the raw quoted name and the value, both slices of obj. One
// pass both validates and finds the members: the mappers' decoders run it
// on every record.
func ValidMembers(obj []byte, fn func(quotedName, value []byte) error) error {
	i := SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("jsonscan: not an object")
	}
	i = SkipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return trailing(obj, i+1)
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return syntaxErr(i, "expected a member name")
		}
		kend, err := validString(obj, i)
		if err != nil {
			return err
		}
		name := obj[i:kend]
		i = SkipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return syntaxErr(i, "expected ':'")
		}
		i = SkipSpace(obj, i+1)
		vend, err := validValue(obj, i, 1)
		if err != nil {
			return err
		}
		if err := fn(name, obj[i:vend:vend]); err != nil {
			return err
		}
		i = SkipSpace(obj, vend)
		if i >= len(obj) {
			return ErrTruncated
		}
		switch obj[i] {
		case ',':
			i = SkipSpace(obj, i+1)
		case '}':
			return trailing(obj, i+1)
		default:
			return syntaxErr(i, "expected ',' or '}'")
		}
	}
}

// Valid reports whether v is one valid JSON value (surrounding whitespace
// aside), by the rules of ValidMembers.
func Valid(v []byte) bool {
	i := SkipSpace(v, 0)
	end, err := validValue(v, i, 0)
	return err == nil && trailing(v, end) == nil
}

func trailing(v []byte, i int) error {
	if i = SkipSpace(v, i); i != len(v) {
		return syntaxErr(i, "data after the value")
	}
	return nil
}

// validValue returns the index just past the valid value at v[i].
func validValue(v []byte, i, depth int) (int, error) {
	if i >= len(v) {
		return 0, ErrTruncated
	}
	switch c := v[i]; {
	case c == '"':
		return validString(v, i)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, syntaxErr(i, "nested too deep")
		}
		return validContainer(v, i, depth+1)
	case c == 't':
		return literal(v, i, "true")
	case c == 'f':
		return literal(v, i, "false")
	case c == 'n':
		return literal(v, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return validNumber(v, i)
	}
	return 0, syntaxErr(i, "unexpected character")
}

func literal(v []byte, i int, lit string) (int, error) {
	if len(v)-i < len(lit) || string(v[i:i+len(lit)]) != lit {
		return 0, syntaxErr(i, "invalid literal")
	}
	return i + len(lit), nil
}

func validContainer(v []byte, i, depth int) (int, error) {
	closer := byte(']')
	obj := v[i] == '{'
	if obj {
		closer = '}'
	}
	i = SkipSpace(v, i+1)
	if i < len(v) && v[i] == closer {
		return i + 1, nil
	}
	for {
		if obj {
			if i >= len(v) || v[i] != '"' {
				return 0, syntaxErr(i, "expected a member name")
			}
			end, err := validString(v, i)
			if err != nil {
				return 0, err
			}
			i = SkipSpace(v, end)
			if i >= len(v) || v[i] != ':' {
				return 0, syntaxErr(i, "expected ':'")
			}
			i = SkipSpace(v, i+1)
		}
		end, err := validValue(v, i, depth)
		if err != nil {
			return 0, err
		}
		i = SkipSpace(v, end)
		if i >= len(v) {
			return 0, ErrTruncated
		}
		switch v[i] {
		case ',':
			i = SkipSpace(v, i+1)
		case closer:
			return i + 1, nil
		default:
			return 0, syntaxErr(i, "expected ',' or a closing bracket")
		}
	}
}

// validString returns the index just past the valid string at v[i].
func validString(v []byte, i int) (int, error) {
	i++
	for {
		for i < len(v) && plain[v[i]] {
			i++
		}
		if i >= len(v) {
			return 0, ErrTruncated
		}
		switch c := v[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			n, err := validEscape(v, i)
			if err != nil {
				return 0, err
			}
			i = n
		case c < 0x20:
			return 0, syntaxErr(i, "control character in string")
		default:
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, syntaxErr(i, "invalid UTF-8 in string")
			}
			i += size
		}
	}
}

// validEscape checks the escape sequence at v[i] (a backslash) and returns
// the index after it. Surrogates must come in pairs, as valid UTF-8 needs.
func validEscape(v []byte, i int) (int, error) {
	if i+1 >= len(v) {
		return 0, ErrTruncated
	}
	switch v[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2, nil
	case 'u':
	default:
		return 0, syntaxErr(i, "invalid escape")
	}
	r, ok := hex4(v, i+2)
	if !ok {
		return 0, syntaxErr(i, "invalid \\u escape")
	}
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return 0, syntaxErr(i, "unpaired surrogate")
	case r >= 0xD800 && r <= 0xDBFF:
		if i+12 > len(v) || v[i+6] != '\\' || v[i+7] != 'u' {
			return 0, syntaxErr(i, "unpaired surrogate")
		}
		lo, ok := hex4(v, i+8)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return 0, syntaxErr(i, "unpaired surrogate")
		}
		return i + 12, nil
	}
	return i + 6, nil
}

func hex4(v []byte, i int) (rune, bool) {
	if i+4 > len(v) {
		return 0, false
	}
	var r rune
	for _, c := range v[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// validNumber returns the index just past the valid number at v[i].
func validNumber(v []byte, i int) (int, error) {
	start := i
	if v[i] == '-' {
		i++
	}
	switch {
	case i < len(v) && v[i] == '0':
		i++
	case i < len(v) && v[i] >= '1' && v[i] <= '9':
		i = digits(v, i)
	default:
		return 0, syntaxErr(start, "invalid number")
	}
	if i < len(v) && v[i] == '.' {
		if j := digits(v, i+1); j == i+1 {
			return 0, syntaxErr(start, "invalid number")
		} else {
			i = j
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		if j := digits(v, i); j == i {
			return 0, syntaxErr(start, "invalid number")
		} else {
			i = j
		}
	}
	return i, nil
}

func digits(v []byte, i int) int {
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	return i
}
