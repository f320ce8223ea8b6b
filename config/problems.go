package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem with one field. Validate methods return these,
// joined with errors.Join; Load adds the file and line.
type FieldError struct {
	Path string // YAML path, e.g. sources[0].path
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Prefix re-roots the FieldErrors in err under prefix (used when a nested
// struct validates itself without knowing where it sits).
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			p := prefix
			if fe.Path != "" {
				if strings.HasPrefix(fe.Path, "[") {
					p += fe.Path
				} else {
					p += "." + fe.Path
				}
			}
			out = append(out, &FieldError{Path: p, Msg: fe.Msg})
			continue
		}
		out = append(out, &FieldError{Path: prefix, Msg: e.Error()})
	}
	return errors.Join(out...)
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Problem is one thing wrong with a config file, located by path and line.
type Problem struct {
	File string
	Line int // 0 if unknown
	Path string
	Msg  string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Path == "" {
		return fmt.Sprintf("%s: %s", loc, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Path, p.Msg)
}

// Problems is every problem found in a config file. It is the error Load
// returns, so that users fix them all in one go.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Path < ps[j].Path
	})
	return ps
}
