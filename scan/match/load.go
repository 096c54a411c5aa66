package match

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxRecordBytes bounds one advisory file (OSV JSON/YAML or secdb
// document) read from a directory or zip: 32 MiB.
const MaxRecordBytes = 32 << 20

// Loaded is the result of reading advisory files: the advisories grouped by
// source (base ecosystem), and what was skipped and why.
type Loaded struct {
	Sources map[string][]Advisory
	Files   int // files parsed
	Skipped []Skipped
}

// Skipped is a file or record that was not imported.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Count returns the number of advisories loaded.
func (l *Loaded) Count() int {
	n := 0
	for _, a := range l.Sources {
		n += len(a)
	}
	return n
}

// SourceNames returns the loaded sources, sorted.
func (l *Loaded) SourceNames() []string {
	var out []string
	for s := range l.Sources {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

type loader struct {
	l     *Loaded
	index map[string]map[string]int // source → id → position
}

func newLoader() *loader {
	return &loader{l: &Loaded{Sources: map[string][]Advisory{}}, index: map[string]map[string]int{}}
}

// wanted reports whether a file name can hold advisories.
func wanted(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json", ".yaml", ".yml":
		return true
	}
	return false
}

func (ld *loader) add(name string, b []byte) {
	advs, err := Parse(name, b)
	if err != nil {
		ld.l.Skipped = append(ld.l.Skipped, Skipped{Path: name, Reason: err.Error()})
		return
	}
	ld.l.Files++
	for _, a := range advs {
		src := a.Source()
		if src == "" {
			ld.l.Skipped = append(ld.l.Skipped, Skipped{Path: name, Reason: a.ID + ": no affected packages"})
			continue
		}
		ix := ld.index[src]
		if ix == nil {
			ix = map[string]int{}
			ld.index[src] = ix
		}
		if i, ok := ix[a.ID]; ok {
			if !MergeSecDB(&ld.l.Sources[src][i], a) {
				ld.l.Sources[src][i] = a // duplicate OSV id: the last file wins
			}
			continue
		}
		ix[a.ID] = len(ld.l.Sources[src])
		ld.l.Sources[src] = append(ld.l.Sources[src], a)
	}
}

// LoadPath reads advisories from a directory (recursively), a .zip archive
// (osv.dev's <ecosystem>/all.zip) or a single OSV JSON/YAML or secdb file.
// Files that do not parse are listed in Loaded.Skipped, not fatal; an
// unreadable path or a corrupt zip is an error.
func LoadPath(ctx context.Context, path string) (*Loaded, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("match: load: %w", err)
	}
	if st.IsDir() {
		return loadDir(ctx, path)
	}
	if strings.EqualFold(filepath.Ext(path), ".zip") {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("match: load: %w", err)
		}
		defer f.Close()
		return LoadZip(ctx, f, st.Size())
	}
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	ld := newLoader()
	ld.add(path, b)
	return ld.l, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("match: load: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("match: load %s: %w", path, err)
	}
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("match: load %s: larger than %d bytes", path, MaxRecordBytes)
	}
	return b, nil
}

func loadDir(ctx context.Context, root string) (*Loaded, error) {
	ld := newLoader()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !wanted(p) {
			ld.l.Skipped = append(ld.l.Skipped, Skipped{Path: p, Reason: "not a .json/.yaml/.yml file"})
			return nil
		}
		b, err := readLimited(p)
		if err != nil {
			ld.l.Skipped = append(ld.l.Skipped, Skipped{Path: p, Reason: err.Error()})
			return nil
		}
		ld.add(p, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("match: load %s: %w", root, err)
	}
	return ld.l, nil
}

// ErrArchiveTooLarge is returned (wrapped) when a zip expands past its limit.
var ErrArchiveTooLarge = errors.New("match: archive too large")

// LoadZip reads every advisory file in a zip archive. Each entry is bounded
// by MaxRecordBytes and the whole archive by 64 times its compressed size
// (zip bombs). Errors wrap ErrArchiveTooLarge or the zip reader's error.
func LoadZip(ctx context.Context, r io.ReaderAt, size int64) (*Loaded, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("match: zip: %w", err)
	}
	ld := newLoader()
	var total int64
	budget := 64*size + MaxRecordBytes
	var buf bytes.Buffer
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if f.FileInfo().IsDir() {
			continue
		}
		if !wanted(f.Name) {
			ld.l.Skipped = append(ld.l.Skipped, Skipped{Path: f.Name, Reason: "not a .json/.yaml/.yml file"})
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("match: zip %s: %w", f.Name, err)
		}
		buf.Reset()
		n, err := io.Copy(&buf, io.LimitReader(rc, MaxRecordBytes+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("match: zip %s: %w", f.Name, err)
		}
		if n > MaxRecordBytes {
			return nil, fmt.Errorf("%w: entry %s over %d bytes", ErrArchiveTooLarge, f.Name, MaxRecordBytes)
		}
		total += n
		if total > budget {
			return nil, fmt.Errorf("%w: expands past %d bytes", ErrArchiveTooLarge, budget)
		}
		ld.add(f.Name, bytes.Clone(buf.Bytes()))
	}
	return ld.l, nil
}
