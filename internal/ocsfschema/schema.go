// Package ocsfschema validates events against the OCSF schema source files
// (the ocsf-schema repository layout: dictionary.json, categories.json,
// events/, objects/, profiles/). It compiles what the OCSF server compiles
// (extends chains, $include'd profiles, dictionary types, enums) and checks
// an event the way a strict consumer would: required attributes, types,
// enum values, profile-gated attributes, deprecated attributes, object
// constraints, and no attribute outside the schema except under unmapped.
package ocsfschema

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Schema is a compiled OCSF schema.
type Schema struct {
	Version    string
	dict       map[string]rawAttr
	types      map[string]dataType
	objectsRaw map[string]rawEntity
	eventsRaw  map[string]rawEntity
	profiles   map[string]map[string]rawAttr
	categories map[string]int
	objects    map[string]*entity // compiled, by name
	classes    map[int]*entity    // compiled, by class_uid
}

type rawAttr map[string]any

type rawEntity struct {
	Name        string                     `json:"name"`
	Caption     string                     `json:"caption"`
	Extends     string                     `json:"extends"`
	Category    string                     `json:"category"`
	UID         *int                       `json:"uid"`
	Attributes  map[string]json.RawMessage `json:"attributes"`
	Constraints map[string][]string        `json:"constraints"`
	Deprecated  any                        `json:"@deprecated"`
}

type dataType struct {
	base   string // the primitive: string_t, integer_t, long_t, float_t, boolean_t, json_t
	regex  *regexp.Regexp
	maxLen int
	rng    []float64
}

// Attr is one compiled attribute.
type Attr struct {
	Name        string
	Type        string // a data type (…_t), "object" (any object) or an object name
	IsArray     bool
	Requirement string
	Profile     string
	Enum        map[string]bool
	Deprecated  bool
}

type entity struct {
	name        string
	attrs       map[string]*Attr
	constraints map[string][]string
	classUID    int
	categoryUID int
}

// Load reads and compiles the schema in dir.
func Load(dir string) (*Schema, error) {
	s := &Schema{
		types: map[string]dataType{}, objectsRaw: map[string]rawEntity{}, eventsRaw: map[string]rawEntity{},
		profiles: map[string]map[string]rawAttr{}, categories: map[string]int{},
		objects: map[string]*entity{}, classes: map[int]*entity{},
	}
	var v struct{ Version string }
	if err := readJSON(filepath.Join(dir, "version.json"), &v); err != nil {
		return nil, err
	}
	s.Version = v.Version
	var dict struct {
		Attributes map[string]rawAttr `json:"attributes"`
		Types      struct {
			Attributes map[string]rawAttr `json:"attributes"`
		} `json:"types"`
	}
	if err := readJSON(filepath.Join(dir, "dictionary.json"), &dict); err != nil {
		return nil, err
	}
	s.dict = dict.Attributes
	for name, t := range dict.Types.Attributes {
		dt := dataType{base: name}
		if b, ok := t["type"].(string); ok {
			dt.base = b
		}
		if r, ok := t["regex"].(string); ok {
			re, err := regexp.Compile(r)
			if err != nil {
				return nil, fmt.Errorf("type %s: %w", name, err)
			}
			dt.regex = re
		}
		if m, ok := t["max_len"].(float64); ok {
			dt.maxLen = int(m)
		}
		if r, ok := t["range"].([]any); ok && len(r) == 2 {
			dt.rng = []float64{r[0].(float64), r[1].(float64)}
		}
		s.types[name] = dt
	}
	var cats struct {
		Attributes map[string]struct {
			UID int `json:"uid"`
		} `json:"attributes"`
	}
	if err := readJSON(filepath.Join(dir, "categories.json"), &cats); err != nil {
		return nil, err
	}
	for name, c := range cats.Attributes {
		s.categories[name] = c.UID
	}
	if err := s.readEntities(filepath.Join(dir, "objects"), s.objectsRaw); err != nil {
		return nil, err
	}
	if err := s.readEntities(filepath.Join(dir, "events"), s.eventsRaw); err != nil {
		return nil, err
	}
	profileFiles, _ := filepath.Glob(filepath.Join(dir, "profiles", "*.json"))
	for _, f := range profileFiles {
		var p struct {
			Name       string             `json:"name"`
			Attributes map[string]rawAttr `json:"attributes"`
		}
		if err := readJSON(f, &p); err != nil {
			return nil, err
		}
		s.profiles[p.Name] = p.Attributes
	}
	for name := range s.objectsRaw {
		if _, err := s.object(name, dir); err != nil {
			return nil, err
		}
	}
	for name, e := range s.eventsRaw {
		if e.UID == nil {
			continue // abstract (base_event is the one concrete exception)
		}
		ent, err := s.compile(name, s.eventsRaw, dir, nil)
		if err != nil {
			return nil, err
		}
		s.classes[ent.classUID] = ent
	}
	return s, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (s *Schema) readEntities(dir string, into map[string]rawEntity) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		var e rawEntity
		if err := readJSON(p, &e); err != nil {
			return err
		}
		into[e.Name] = e
		return nil
	})
}

func (s *Schema) object(name, dir string) (*entity, error) {
	if e, ok := s.objects[name]; ok {
		return e, nil
	}
	e, err := s.compile(name, s.objectsRaw, dir, nil)
	if err != nil {
		return nil, err
	}
	s.objects[name] = e
	return e, nil
}

// compile merges an entity with its extends chain and included profiles.
func (s *Schema) compile(name string, raws map[string]rawEntity, dir string, seen []string) (*entity, error) {
	raw, ok := raws[name]
	if !ok {
		return nil, fmt.Errorf("unknown entity %q", name)
	}
	for _, n := range seen {
		if n == name {
			return nil, fmt.Errorf("extends cycle at %s", name)
		}
	}
	ent := &entity{name: name, attrs: map[string]*Attr{}, constraints: map[string][]string{}}
	merged := map[string]rawAttr{}
	if raw.Extends != "" {
		parent, err := s.compile(raw.Extends, raws, dir, append(seen, name))
		if err != nil {
			return nil, err
		}
		maps.Copy(ent.constraints, parent.constraints)
		ent.categoryUID = parent.categoryUID
		for n, a := range parent.attrs {
			merged[n] = a.raw()
		}
	}
	if raw.Category != "" {
		ent.categoryUID = s.categories[raw.Category]
	}
	for n, msg := range raw.Attributes {
		if n == "$include" {
			var incs []string
			if err := json.Unmarshal(msg, &incs); err != nil {
				return nil, fmt.Errorf("%s: $include: %w", name, err)
			}
			for _, inc := range incs {
				pname := strings.TrimSuffix(filepath.Base(inc), ".json")
				pattrs, ok := s.profiles[pname]
				if !ok || !strings.HasPrefix(inc, "profiles/") {
					return nil, fmt.Errorf("%s: unsupported $include %q", name, inc)
				}
				for an, pa := range pattrs {
					a := rawAttr{}
					maps.Copy(a, merged[an])
					maps.Copy(a, pa)
					a["profile"] = pname
					merged[an] = a
				}
			}
			continue
		}
		var a rawAttr
		if err := json.Unmarshal(msg, &a); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", name, n, err)
		}
		prev := merged[n]
		m := rawAttr{}
		maps.Copy(m, prev)
		for k, v := range a {
			if k == "enum" { // enums of a chain are united, as the OCSF server does
				en := map[string]any{}
				if pe, ok := prev["enum"].(map[string]any); ok {
					maps.Copy(en, pe)
				}
				if ne, ok := v.(map[string]any); ok {
					maps.Copy(en, ne)
				}
				m["enum"] = en
				continue
			}
			m[k] = v
		}
		merged[n] = m
	}
	maps.Copy(ent.constraints, raw.Constraints)
	for n, a := range merged {
		d := s.dict[n]
		if d == nil {
			return nil, fmt.Errorf("%s.%s: not in the dictionary", name, n)
		}
		at := &Attr{Name: n, Enum: map[string]bool{}}
		at.Type, _ = d["type"].(string)
		if t, ok := a["type"].(string); ok {
			at.Type = t
		}
		at.IsArray, _ = d["is_array"].(bool)
		at.Requirement, _ = a["requirement"].(string)
		at.Profile, _ = a["profile"].(string)
		_, at.Deprecated = a["@deprecated"]
		if _, dep := d["@deprecated"]; dep {
			at.Deprecated = true
		}
		for _, src := range []rawAttr{d, a} {
			if en, ok := src["enum"].(map[string]any); ok {
				for k := range en {
					at.Enum[k] = true
				}
			}
		}
		ent.attrs[n] = at
	}
	if raw.UID != nil {
		ent.classUID = ent.categoryUID*1000 + *raw.UID
		// The compiled class knows its own ids; the base enums ({0}) do not.
		if a := ent.attrs["class_uid"]; a != nil {
			a.Enum = map[string]bool{strconv.Itoa(ent.classUID): true}
		}
		if a := ent.attrs["category_uid"]; a != nil {
			a.Enum = map[string]bool{strconv.Itoa(ent.categoryUID): true}
		}
	}
	return ent, nil
}

func (a *Attr) raw() rawAttr {
	r := rawAttr{"type": a.Type, "requirement": a.Requirement}
	if a.Profile != "" {
		r["profile"] = a.Profile
	}
	if len(a.Enum) > 0 {
		en := map[string]any{}
		for k := range a.Enum {
			en[k] = map[string]any{}
		}
		r["enum"] = en
	}
	if a.Deprecated {
		r["@deprecated"] = true
	}
	return r
}

// Validate checks one encoded event and returns every problem found, each
// naming the attribute path.
func (s *Schema) Validate(event []byte) []error {
	dec := json.NewDecoder(strings.NewReader(string(event)))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		return []error{fmt.Errorf("not a JSON object: %w", err)}
	}
	v := &validation{s: s}
	cu, ok := intOf(ev["class_uid"])
	if !ok {
		return []error{fmt.Errorf("class_uid: missing or not an integer")}
	}
	class, ok := s.classes[int(cu)]
	if !ok {
		return []error{fmt.Errorf("class_uid: unknown class %d", cu)}
	}
	if md, ok := ev["metadata"].(map[string]any); ok {
		if ps, ok := md["profiles"].([]any); ok {
			v.profiles = map[string]bool{}
			for _, p := range ps {
				name, _ := p.(string)
				if _, known := s.profiles[name]; !known {
					v.errf("metadata.profiles", "unknown profile %q", name)
				}
				v.profiles[name] = true
			}
		}
		if ver, _ := md["version"].(string); ver != s.Version {
			v.errf("metadata.version", "is %q, schema is %q", ver, s.Version)
		}
	}
	v.object(ev, class, "")
	if cat, ok := intOf(ev["category_uid"]); ok && int(cat) != class.categoryUID {
		v.errf("category_uid", "%d, class %d is in category %d", cat, class.classUID, class.categoryUID)
	}
	if act, ok := intOf(ev["activity_id"]); ok {
		if tu, ok := intOf(ev["type_uid"]); ok && tu != cu*100+act {
			v.errf("type_uid", "%d, want class_uid*100+activity_id = %d", tu, cu*100+act)
		}
	}
	return v.errs
}

type validation struct {
	s        *Schema
	profiles map[string]bool
	errs     []error
}

func (v *validation) errf(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (v *validation) object(obj map[string]any, ent *entity, path string) {
	for name, val := range obj {
		p := join(path, name)
		a, ok := ent.attrs[name]
		if !ok {
			v.errf(p, "not an attribute of %s", ent.name)
			continue
		}
		if a.Profile != "" && !v.profiles[a.Profile] {
			v.errf(p, "comes from profile %q, which metadata.profiles does not list", a.Profile)
		}
		if a.Deprecated {
			v.errf(p, "is deprecated in OCSF %s", v.s.Version)
		}
		if val == nil {
			v.errf(p, "is null (omit it instead)")
			continue
		}
		if a.IsArray {
			arr, ok := val.([]any)
			if !ok {
				v.errf(p, "must be an array")
				continue
			}
			for i, el := range arr {
				v.value(el, a, fmt.Sprintf("%s[%d]", p, i))
			}
			continue
		}
		v.value(val, a, p)
	}
	for name, a := range ent.attrs {
		if a.Requirement != "required" || (a.Profile != "" && !v.profiles[a.Profile]) {
			continue
		}
		if _, ok := obj[name]; !ok {
			v.errf(join(path, name), "is required in %s", ent.name)
		}
	}
	if set := ent.constraints["at_least_one"]; len(set) > 0 && count(obj, set) == 0 {
		v.errf(path, "%s needs at least one of %v", ent.name, set)
	}
	if set := ent.constraints["just_one"]; len(set) > 0 && count(obj, set) != 1 {
		v.errf(path, "%s needs exactly one of %v", ent.name, set)
	}
}

func count(obj map[string]any, names []string) int {
	n := 0
	for _, k := range names {
		if _, ok := obj[k]; ok {
			n++
		}
	}
	return n
}

func (v *validation) value(val any, a *Attr, path string) {
	if dt, ok := v.s.types[a.Type]; ok {
		v.scalar(val, a, dt, path)
		return
	}
	obj, ok := val.(map[string]any)
	if !ok {
		v.errf(path, "must be an object (%s)", a.Type)
		return
	}
	if a.Type == "object" || a.Name == "unmapped" {
		return // free-form
	}
	ent, ok := v.s.objects[a.Type]
	if !ok {
		v.errf(path, "unknown object type %s", a.Type)
		return
	}
	v.object(obj, ent, path)
}

func (v *validation) scalar(val any, a *Attr, dt dataType, path string) {
	base := dt.base
	// A derived type may itself derive (timestamp_t → long_t).
	for i := 0; i < 3; i++ {
		if t, ok := v.s.types[base]; ok && t.base != base {
			base = t.base
			continue
		}
		break
	}
	switch base {
	case "json_t":
		return
	case "string_t":
		s, ok := val.(string)
		if !ok {
			v.errf(path, "must be a string (%s)", a.Type)
			return
		}
		if dt.maxLen > 0 && len(s) > dt.maxLen {
			v.errf(path, "longer than %d (%s)", dt.maxLen, a.Type)
		}
		if dt.regex != nil && !dt.regex.MatchString(s) {
			v.errf(path, "%q is not a valid %s", s, a.Type)
		}
		if len(a.Enum) > 0 && !a.Enum[s] {
			v.errf(path, "%q is not in the enum", s)
		}
	case "integer_t", "long_t":
		n, ok := intOf(val)
		if !ok {
			v.errf(path, "must be an integer (%s)", a.Type)
			return
		}
		if len(a.Enum) > 0 && !a.Enum[strconv.FormatInt(n, 10)] {
			v.errf(path, "%d is not in the enum", n)
		}
		if dt.rng != nil && (float64(n) < dt.rng[0] || float64(n) > dt.rng[1]) {
			v.errf(path, "%d is out of range %v", n, dt.rng)
		}
	case "float_t":
		if _, ok := val.(json.Number); !ok {
			v.errf(path, "must be a number")
		}
	case "boolean_t":
		if _, ok := val.(bool); !ok {
			v.errf(path, "must be true or false")
		}
	default:
		v.errf(path, "unsupported data type %s", a.Type)
	}
}

func intOf(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}
