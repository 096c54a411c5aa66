package analyzer

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// PyLock reads Python lockfiles: Poetry's poetry.lock ([[package]] tables
// with name and version) and Pipenv's Pipfile.lock (JSON "default" and
// "develop" sections with "==x.y" versions), outside site-packages. Like npm
// lockfiles their packages carry Metadata lockfile=true, and scan.Merge
// drops them when the same distribution (PEP 503 name) and version is
// installed. Ecosystem "PyPI".
type PyLock struct{}

func (PyLock) Name() string    { return "python-lock" }
func (PyLock) Version() string { return "1" }
func (PyLock) Wants(hdr *tar.Header) bool {
	b := path.Base(hdr.Name)
	return isRegular(hdr) && (b == "poetry.lock" || b == "Pipfile.lock") &&
		!strings.Contains(hdr.Name, "site-packages/") && !strings.Contains(hdr.Name, "dist-packages/")
}

// Analyze parses the lockfile.
func (PyLock) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	if path.Base(hdr.Name) == "Pipfile.lock" {
		return ParsePipfileLock(r)
	}
	return ParsePoetryLock(r)
}

func pyLockPackage(name, version string) scan.Package {
	return scan.Package{Name: name, Version: version, Ecosystem: "PyPI", Kind: scan.KindLang,
		PURL: purl("pypi", "", PyPINormalize(name), version), Metadata: map[string]string{"lockfile": "true"}}
}

// ParsePoetryLock reads name and version of each [[package]] table of a
// poetry.lock (TOML; at most 64 MiB), line by line: keys of its sub-tables
// ([package.dependencies], [package.extras]…) are not the package's, and a
// package whose [package.source] is a directory, file, git or URL is not
// from an index and is skipped.
func ParsePoetryLock(r io.Reader) ([]scan.Package, error) {
	sc := newLineScanner(r)
	var pkgs []scan.Package
	seen := map[string]bool{}
	in, sub, skip := false, "", false
	var name, version string
	flush := func() {
		if in && !skip && name != "" && version != "" && !strings.ContainsAny(version, " /:") && !seen[name+"@"+version] {
			seen[name+"@"+version] = true
			pkgs = append(pkgs, pyLockPackage(name, version))
		}
		name, version, sub, skip = "", "", "", false
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			if t, ok := strings.CutPrefix(line, "[package."); ok && in && !strings.HasPrefix(line, "[[") {
				sub = strings.TrimSuffix(t, "]")
				continue
			}
			flush()
			in = line == "[[package]]"
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			continue
		}
		v = v[1 : len(v)-1]
		switch k = strings.TrimSpace(k); {
		case sub == "" && k == "name":
			name = v
		case sub == "" && k == "version":
			version = v
		case sub == "source" && k == "type":
			skip = v == "directory" || v == "file" || v == "git" || v == "url"
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return pkgs, fmt.Errorf("poetry.lock: %w", err)
	}
	return pkgs, nil
}

// ParsePipfileLock reads the "default" and "develop" sections of a
// Pipfile.lock (at most 64 MiB); entries pinned with "==" only (VCS and
// path entries have no version).
func ParsePipfileLock(r io.Reader) ([]scan.Package, error) {
	var doc map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r, maxTextBytes)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("Pipfile.lock: %w", err)
	}
	var pkgs []scan.Package
	seen := map[string]bool{}
	for _, sec := range []string{"default", "develop"} {
		var deps map[string]struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(doc[sec], &deps) != nil {
			continue
		}
		names := make([]string, 0, len(deps))
		for n := range deps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v, ok := strings.CutPrefix(deps[n].Version, "==")
			v = strings.TrimSpace(v)
			if !ok || n == "" || v == "" || strings.ContainsAny(v, " ,;*<>=!") || seen[n+"@"+v] {
				continue
			}
			seen[n+"@"+v] = true
			pkgs = append(pkgs, pyLockPackage(n, v))
		}
	}
	return pkgs, nil
}
