package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// refPattern matches ${env:NAME} and ${file:PATH}; $${ escapes a literal ${.
var refPattern = regexp.MustCompile(`\$?\$\{(env|file):([^}]*)\}`)

// substitute replaces references in every scalar of the tree, so secrets
// can live in the environment or in files instead of the config. Paths of
// ${file:…} are relative to the config file's folder.
func (d *decoder) substitute(n *yaml.Node, path, baseDir string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = path + "[" + strconv.Itoa(i) + "]"
			}
			d.substitute(c, p, baseDir)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.substitute(n.Content[i+1], join(path, n.Content[i].Value), baseDir)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		changed := false
		n.Value = refPattern.ReplaceAllStringFunc(n.Value, func(ref string) string {
			if strings.HasPrefix(ref, "$$") {
				return ref[1:]
			}
			m := refPattern.FindStringSubmatch(ref)
			kind, name := m[1], strings.TrimSpace(m[2])
			changed = true
			switch kind {
			case "env":
				v, ok := os.LookupEnv(name)
				if !ok {
					d.add(n, path, "environment variable %s is not set", name)
				}
				return v
			default:
				p := name
				if !filepath.IsAbs(p) {
					p = filepath.Join(baseDir, p)
				}
				b, err := readSmallFile(p)
				if err != nil {
					d.add(n, path, "cannot read ${file:%s}: %v", name, errWithoutPath(err))
					return ""
				}
				return strings.TrimRight(string(b), "\r\n")
			}
		})
		if changed {
			d.substituted[n] = true
			// Resolve the tag again from the new value, so that a port from
			// the environment decodes as a number; string fields keep the
			// text as written either way.
			n.Tag, n.Style = "", 0
		}
	}
}

// readSmallFile reads a regular file of at most 1 MiB: a secret, not a
// device or a pipe that would block start-up.
func readSmallFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > 1<<20 {
		return nil, errors.New("larger than 1 MiB")
	}
	return os.ReadFile(p)
}

func errWithoutPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
