// Package jsonscan finds the boundaries of values inside JSON that has
// already been validated, without validating it again. The mappers validate
// a record once, at its top level, and walk the nested objects they need
// with these: a second validating pass over the same bytes was a fifth of
// the CloudTrail mapper's time.
//
// On input that is not valid JSON the functions return wrong boundaries or
// an error, never panic.
package jsonscan

import (
	"bytes"
	"errors"
)

// ErrTruncated is returned when a value runs past the end of its input.
var ErrTruncated = errors.New("jsonscan: unexpected end of JSON")

// StringEnd returns the index of the quote that closes the string whose
// opening quote is at v[open], or len(v)-1 when it is not closed.
func StringEnd(v []byte, open int) int {
	j := open + 1
	for {
		k := bytes.IndexByte(v[j:], '"')
		if k < 0 {
			return len(v) - 1
		}
		j += k
		n := 0 // backslashes right before: an odd count escapes the quote
		for p := j - 1; p > open && v[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j
		}
		j++
	}
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func SkipSpace(v []byte, i int) int {
	for i < len(v) {
		switch v[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// ValueEnd returns the index just past the value that starts at v[i].
func ValueEnd(v []byte, i int) (int, error) {
	if i >= len(v) {
		return 0, ErrTruncated
	}
	switch v[i] {
	case '"':
		e := StringEnd(v, i)
		if e <= i || v[e] != '"' {
			return 0, ErrTruncated
		}
		return e + 1, nil
	case '{', '[':
		depth := 0
		for j := i; j < len(v); j++ {
			switch v[j] {
			case '"':
				e := StringEnd(v, j)
				if e <= j || v[e] != '"' {
					return 0, ErrTruncated
				}
				j = e
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, ErrTruncated
	}
	// A number or a literal: it ends where a delimiter begins.
	j := i
	for j < len(v) {
		switch v[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, nil
		}
		j++
	}
	return j, nil
}

// Members calls fn for each member of the object at the start of obj (after
// optional whitespace), with the raw quoted name and the value, both slices
// of obj. It stops at the first error fn returns.
func Members(obj []byte, fn func(quotedName, value []byte) error) error {
	i := SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("jsonscan: not an object")
	}
	i++
	for {
		i = SkipSpace(obj, i)
		if i >= len(obj) {
			return ErrTruncated
		}
		switch obj[i] {
		case '}':
			return nil
		case ',':
			i = SkipSpace(obj, i+1)
		}
		if i >= len(obj) || obj[i] != '"' {
			return ErrTruncated
		}
		kend, err := ValueEnd(obj, i)
		if err != nil {
			return err
		}
		name := obj[i:kend]
		i = SkipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return errors.New("jsonscan: missing colon")
		}
		i = SkipSpace(obj, i+1)
		vend, err := ValueEnd(obj, i)
		if err != nil {
			return err
		}
		if err := fn(name, obj[i:vend:vend]); err != nil {
			return err
		}
		i = vend
	}
}
