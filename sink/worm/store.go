package worm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrExists is returned by Put for a key that already holds an object.
var ErrExists = errors.New("object exists")

// Store is write-once object storage, the archive's backend.
//
// Put stores data under key durably before it returns, and never replaces
// an object: a key that exists gives ErrExists. It returns the object's
// version id, if the backend has versions. A failed Put may be retried.
// Get returns ErrNotExist (fs.ErrNotExist) for a missing key. List returns
// the keys under prefix, sorted.
type Store interface {
	Put(ctx context.Context, key string, data []byte) (version string, err error)
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]string, error)
}

// DirStore keeps objects as files under a folder: written to a temporary
// name, fsynced, linked to their key (which fails if it exists), the
// folder fsynced, and the file made read-only.
type DirStore struct{ Root string }

// Put implements Store.
func (d DirStore) Put(_ context.Context, key string, data []byte) (string, error) {
	path, err := d.path(key)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", key, err)
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return "", err
	}
	// A hard link, unlike rename, refuses to replace an existing file.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%s: %w", key, ErrExists)
		}
		return "", err
	}
	f, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return "", f.Sync()
}

// Get implements Store.
func (d DirStore) Get(_ context.Context, key string) ([]byte, error) {
	path, err := d.path(key)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// List implements Store.
func (d DirStore) List(_ context.Context, prefix string) ([]string, error) {
	var keys []string
	err := filepath.WalkDir(d.Root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, _ := filepath.Rel(d.Root, p)
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	slices.Sort(keys)
	return keys, err
}

func (d DirStore) path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("bad key %q", key)
	}
	return filepath.Join(d.Root, filepath.FromSlash(key)), nil
}

// Strays lists the files under the folder that are no archive object: a
// temporary file a killed write left (".tmp-*"), or anything outside the
// archive's folders (manifest/, seg/, checkpoint/). Verify reports them.
func (d DirStore) Strays(_ context.Context) ([]string, error) {
	var out []string
	err := filepath.WalkDir(d.Root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(d.Root, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(e.Name(), ".tmp-") || !knownKey(key) {
			out = append(out, key)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// RemoveTemp deletes the temporary files killed writes left behind; the
// archiver calls it at start, when no write of its own is under way.
func (d DirStore) RemoveTemp(ctx context.Context) (int, error) {
	strays, err := d.Strays(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, key := range strays {
		if strings.HasPrefix(key[strings.LastIndexByte(key, '/')+1:], ".tmp-") {
			if err := os.Remove(filepath.Join(d.Root, filepath.FromSlash(key))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// knownKey: a key the archive writes.
func knownKey(key string) bool {
	for _, p := range []string{"manifest/", "seg/", "checkpoint/"} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
