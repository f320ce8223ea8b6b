package config_test

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
)

var update = flag.Bool("update", false, "rewrite docs/config.md")

const module = "github.com/trailkeeper/trailkeeper"

// docs/config.md is generated from the config structs: every key, its type,
// default and doc comment. The test fails when it is out of date:
// go test ./config -run TestReference -update
func TestReference(t *testing.T) {
	comments := map[string]string{} // "pkgpath.Type.Field" → doc
	parsed := map[string]bool{}
	parse := func(pkgPath string) {
		if parsed[pkgPath] {
			return
		}
		parsed[pkgPath] = true
		dir := filepath.Join("..", strings.TrimPrefix(strings.TrimPrefix(pkgPath, module), "/"))
		fset := token.NewFileSet()
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				for _, fld := range st.Fields.List {
					doc := strings.TrimSpace(fld.Doc.Text() + " " + fld.Comment.Text())
					for _, name := range fld.Names {
						comments[pkgPath+"."+ts.Name.Name+"."+name.Name] = strings.Join(strings.Fields(doc), " ")
					}
				}
				return true
			})
		}
	}
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n" +
		"Generated from the config structs (`config`, and each collector's) by\n" +
		"`go test ./config -run TestReference -update`: do not edit by hand. YAML,\n" +
		"strict (an unknown key is an error); `${env:NAME}` and `${file:PATH}` are\n" +
		"substituted anywhere; durations are Go durations (`90s`, `5m`, `720h`);\n" +
		"relative paths are relative to the config file. Whole examples:\n" +
		"[`examples/quickstart.yaml`](../examples/quickstart.yaml),\n" +
		"[`examples/aws.yaml`](../examples/aws.yaml), [`examples/gcp.yaml`](../examples/gcp.yaml),\n" +
		"[`examples/azure.yaml`](../examples/azure.yaml),\n" +
		"[`deploy/compose/trailkeeper.yaml`](../deploy/compose/trailkeeper.yaml).\n\n")
	b.WriteString("## Daemon\n\n| key | type | default | meaning |\n|---|---|---|---|\n")
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		typ := v.Type()
		parse(typ.PkgPath())
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")
			if tag[0] == "-" || !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if f.Anonymous && len(tag) > 1 && tag[1] == "inline" {
				walk(prefix, fv)
				continue
			}
			key := prefix + tag[0]
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				walk(key+".", fv)
				continue
			}
			if key == "sources" {
				continue
			}
			doc := comments[typ.PkgPath()+"."+typ.Name()+"."+f.Name]
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", key, typeName(f.Type), defaultOf(fv), strings.ReplaceAll(doc, "|", "\\|"))
		}
	}
	walk("", reflect.ValueOf(config.Default()).Elem())
	for _, typ := range registry.Default.Types() {
		sc, _ := registry.Default.NewSourceConfig(typ)
		fmt.Fprintf(&b, "\n## sources[] with `type: %s`\n\n| key | type | default | meaning |\n|---|---|---|---|\n", typ)
		walk("", reflect.ValueOf(sc).Elem())
	}
	got := b.String()
	path := filepath.Join("..", "docs", "config.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != got {
		t.Errorf("docs/config.md is out of date with the config structs: go test ./config -run TestReference -update")
	}
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[config.Secret]():
		return "secret"
	case reflect.TypeFor[config.FilePath]():
		return "path"
	case reflect.TypeFor[time.Duration]():
		return "duration"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer"
	}
	return t.Kind().String()
}

func defaultOf(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		return "`" + x.String() + "`"
	case config.Secret:
		return "(set)"
	}
	return "`" + strings.ReplaceAll(fmt.Sprint(v.Interface()), "|", "\\|") + "`"
}
