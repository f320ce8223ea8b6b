package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File stores each cursor in its own file under a folder. Save writes a
// temporary file, fsyncs it, renames it over the old one and fsyncs the
// folder, so a crash leaves either the old cursor or the new one.
type File struct {
	dir string
}

// NewFile returns a File store in dir, creating it.
func NewFile(dir string) (*File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint dir: %w", err)
	}
	return &File{dir: dir}, nil
}

func (s *File) path(key string) string { return filepath.Join(s.dir, EscapeKey(key)+".cursor") }

// Load implements Store.
func (s *File) Load(_ context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, errEmptyKey
	}
	b, err := os.ReadFile(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load cursor %q: %w", key, err)
	}
	return b, nil
}

// Save implements Store.
func (s *File) Save(_ context.Context, key string, cursor []byte) error {
	if key == "" {
		return errEmptyKey
	}
	if err := s.write(s.path(key), cursor); err != nil {
		return fmt.Errorf("save cursor %q: %w", key, err)
	}
	return nil
}

func (s *File) write(dst string, data []byte) error {
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
