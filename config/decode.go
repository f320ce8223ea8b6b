package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder checks a YAML tree against a Go type before yaml.v3 decodes it,
// because yaml.v3 stops at the first unknown key and does not say where a
// value sits. It collects every problem with its path and line, and records
// the line of every path so that Validate's errors can be located too.
type decoder struct {
	file     string
	problems Problems
	lines    map[string]int
	// substituted nodes got their value from ${env:…} or ${file:…}: their
	// value is never quoted in a message, since it may be a secret.
	substituted map[*yaml.Node]bool
	// visits bounds the walk: aliases can make a small file a huge tree.
	visits int
}

const maxVisits = 100_000

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// check walks n as a value of type t at path, reporting what will not decode.
func (d *decoder) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.visits++; d.visits == maxVisits {
		d.add(n, path, "the document expands to too many values (aliases?)")
	}
	if d.visits >= maxVisits {
		return
	}
	if _, ok := d.lines[path]; !ok && path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leaves the default in place
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.add(n, path, "expected a mapping, got %s", d.describe(n))
			return
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				d.add(k, p, "duplicate key")
				continue
			}
			seen[k.Value] = true
			d.lines[p] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				d.add(k, p, "unknown key (known keys: %s)", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			d.check(v, ft, p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, "expected a list, got %s", d.describe(n))
			return
		}
		for i, item := range n.Content {
			d.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(n, path, "expected a mapping, got %s", d.describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			d.lines[p] = n.Content[i].Line
			d.check(n.Content[i+1], t.Elem(), p)
		}
	case reflect.Interface:
		// anything goes
	default:
		d.checkScalar(n, t, path)
	}
}

func (d *decoder) checkScalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		d.add(n, path, "expected %s, got %s", kindName(t), d.describe(n))
		return
	}
	if t == durationType {
		// yaml.v3 would read a bare 30 as 30ns: insist on a unit.
		if _, err := time.ParseDuration(n.Value); err != nil {
			d.add(n, path, "expected a duration such as 30s, 5m or 2h, got %s", d.describe(n))
		}
		return
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		d.add(n, path, "expected %s, got %s", kindName(t), d.describe(n))
	}
}

func (d *decoder) describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if d.substituted[n] {
		return "a substituted value"
	}
	return strconv.Quote(n.Value)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// collectFields maps YAML keys to field types, following ",inline" structs.
func collectFields(t reflect.Type, out map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			collectFields(ft, out)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lineOf finds the line of path, or of its nearest ancestor that has one.
func (d *decoder) lineOf(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
