package analyzer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tollgate-registry/tollgate/scan"
)

// YarnLock reads yarn.lock, both classic (v1, "# yarn lockfile v1") and
// berry (v2+, YAML with __metadata), outside node_modules. Like
// package-lock.json its packages carry Metadata lockfile=true, and scan.Merge
// drops them when the same package is installed in node_modules. Berry
// entries resolved by another protocol than npm: (workspace:, link:, portal:,
// file:, patch:, git) are not registry packages and are skipped, as are
// classic entries resolved from a file or link.
type YarnLock struct{}

func (YarnLock) Name() string    { return "yarn-lock" }
func (YarnLock) Version() string { return "2" }
func (YarnLock) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && path.Base(hdr.Name) == "yarn.lock" && !strings.Contains(hdr.Name, "node_modules/")
}

// Analyze parses the lockfile.
func (YarnLock) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return ParseYarnLock(r)
}

// ParseYarnLock parses a yarn.lock of either format (at most 64 MiB). Both
// are read line by line: an unindented line ending in ':' starts an entry
// (one or more comma-separated descriptors), an indented `version "x"` (v1)
// or `version: x` (berry) gives its version, and berry's `resolution:` its
// protocol.
func ParseYarnLock(r io.Reader) ([]scan.Package, error) {
	sc := newLineScanner(r)
	var pkgs []scan.Package
	seen := map[string]bool{}
	var name, version, resolution string
	flush := func() {
		defer func() { name, version, resolution = "", "", "" }()
		if name == "" || version == "" || strings.ContainsAny(version, ":/ ") {
			return
		}
		if resolution != "" {
			// berry: "name@npm:1.2.3"; anything else is not from a registry.
			_, proto, ok := cutVersionAt(resolution)
			if !ok || !strings.HasPrefix(proto, "npm:") {
				return
			}
		}
		if seen[name+"@"+version] {
			return
		}
		seen[name+"@"+version] = true
		p := npmPackage(name, version)
		p.Metadata = map[string]string{"lockfile": "true"}
		pkgs = append(pkgs, p)
	}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r") // lockfiles checked in with CRLF
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			flush()
			if !strings.HasSuffix(line, ":") || strings.HasPrefix(line, "__metadata") {
				continue
			}
			name = yarnEntryName(strings.TrimSuffix(line, ":"))
			continue
		}
		if name == "" {
			continue
		}
		t := strings.TrimSpace(line)
		// Only the entry's own fields (2-space indent), not dependencies'.
		if indent := len(line) - len(strings.TrimLeft(line, " \t")); indent > 2 {
			continue
		}
		switch {
		case strings.HasPrefix(t, "version:"):
			version = unquote(strings.TrimSpace(t[len("version:"):]))
		case strings.HasPrefix(t, "version "):
			version = unquote(strings.TrimSpace(t[len("version "):]))
		case strings.HasPrefix(t, "resolution:"):
			resolution = unquote(strings.TrimSpace(t[len("resolution:"):]))
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return pkgs, fmt.Errorf("yarn.lock: %w", err)
	}
	return pkgs, nil
}

// yarnEntryName is the package name of an entry key such as
// `"@babel/core@^7.0.0", "@babel/core@^7.1.0"` or `lodash@^4.17.15`, or ""
// for a classic entry resolved from a file, link or workspace.
func yarnEntryName(key string) string {
	first, _, _ := strings.Cut(key, ",")
	name, spec, ok := cutVersionAt(strings.Trim(first, "\"' "))
	if !ok || name == "" {
		return ""
	}
	for _, p := range []string{"file:", "link:", "workspace:", "portal:"} {
		if strings.HasPrefix(spec, p) {
			return ""
		}
	}
	return name
}

// cutVersionAt splits "name@rest" at the '@' that ends the name (a scoped
// name starts with '@').
func cutVersionAt(s string) (name, rest string, ok bool) {
	i := strings.Index(s[min(1, len(s)):], "@")
	if i < 0 {
		return "", "", false
	}
	i++
	return s[:i], s[i+1:], true
}

// PNPMLock reads pnpm-lock.yaml (lockfile v5 "/name/1.0.0_peer" keys, v6
// "/name@1.0.0(peer)" keys and v9 "name@1.0.0" keys), outside node_modules.
// Packages carry Metadata lockfile=true (see YarnLock). Entries whose
// version is not a registry version (link:, file:, tarball URLs without a
// version field) are skipped.
type PNPMLock struct{}

func (PNPMLock) Name() string    { return "pnpm-lock" }
func (PNPMLock) Version() string { return "1" }
func (PNPMLock) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && path.Base(hdr.Name) == "pnpm-lock.yaml" && !strings.Contains(hdr.Name, "node_modules/")
}

// Analyze parses the lockfile.
func (PNPMLock) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return ParsePNPMLock(r)
}

// ParsePNPMLock parses a pnpm lockfile (at most 64 MiB).
func ParsePNPMLock(r io.Reader) ([]scan.Package, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxTextBytes))
	if err != nil {
		return nil, fmt.Errorf("pnpm-lock.yaml: %w", err)
	}
	var doc struct {
		LockfileVersion any `yaml:"lockfileVersion"`
		Packages        map[string]struct {
			Name    string `yaml:"name"`
			Version string `yaml:"version"`
		} `yaml:"packages"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("pnpm-lock.yaml: %w", err)
	}
	slashKeys := strings.HasPrefix(strings.Trim(fmt.Sprint(doc.LockfileVersion), "'\""), "5")
	seen := map[string]bool{}
	var pkgs []scan.Package
	for k, v := range doc.Packages {
		name, version := pnpmKey(k, slashKeys)
		if v.Name != "" {
			name = v.Name
		}
		if v.Version != "" {
			version = v.Version
		}
		if name == "" || version == "" || strings.ContainsAny(version, ":/ ") || seen[name+"@"+version] {
			continue
		}
		seen[name+"@"+version] = true
		p := npmPackage(name, version)
		p.Metadata = map[string]string{"lockfile": "true"}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// pnpmKey splits a packages key into name and version: v5
// "/@scope/name/1.0.0_peer@2.0.0", v6 "/@scope/name@1.0.0(peer@2.0.0)",
// v9 "@scope/name@1.0.0(peer@2.0.0)".
func pnpmKey(k string, slashKeys bool) (name, version string) {
	k = strings.TrimPrefix(k, "/")
	if i := strings.IndexByte(k, '('); i >= 0 {
		k = k[:i]
	}
	if slashKeys {
		i := strings.LastIndexByte(k, '/')
		if i <= 0 {
			return "", ""
		}
		name, version = k[:i], k[i+1:]
		if j := strings.IndexByte(version, '_'); j >= 0 {
			version = version[:j]
		}
		if strings.Count(name, "/") > 1 || strings.Contains(name, "/") && !strings.HasPrefix(name, "@") {
			return "", "" // a git host path or tarball URL, not name/version
		}
		return name, version
	}
	name, version, ok := cutVersionAt(k)
	if !ok {
		return "", ""
	}
	return name, version
}
