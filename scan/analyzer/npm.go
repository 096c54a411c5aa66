package analyzer

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// NPM reads installed npm packages: node_modules/<name>/package.json and
// node_modules/@scope/<name>/package.json at any depth (package.json files
// deeper inside a package are not packages). Ecosystem "npm".
type NPM struct{}

func (NPM) Name() string    { return "npm" }
func (NPM) Version() string { return "1" }
func (NPM) Wants(hdr *tar.Header) bool {
	n := hdr.Name
	if !isRegular(hdr) || path.Base(n) != "package.json" {
		return false
	}
	dir := path.Dir(n)
	parent := path.Dir(dir)
	if path.Base(parent) == "node_modules" {
		return !strings.HasPrefix(path.Base(dir), "@")
	}
	return strings.HasPrefix(path.Base(parent), "@") && path.Base(path.Dir(parent)) == "node_modules"
}

// Analyze parses the package.json.
func (NPM) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	p, err := ParsePackageJSON(r)
	if err != nil || p == nil {
		return nil, err
	}
	return []scan.Package{*p}, nil
}

// ParsePackageJSON reads name, version and license of a package.json (at
// most 8 MiB); nil when it names no package.
func ParsePackageJSON(r io.Reader) (*scan.Package, error) {
	var doc struct {
		Name    string          `json:"name"`
		Version string          `json:"version"`
		License json.RawMessage `json:"license"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 8<<20)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("package.json: %w", err)
	}
	if doc.Name == "" || doc.Version == "" {
		return nil, nil
	}
	p := npmPackage(doc.Name, doc.Version)
	var lic string
	if json.Unmarshal(doc.License, &lic) != nil {
		var lo struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(doc.License, &lo)
		lic = lo.Type
	}
	if lic != "" {
		p.Licenses = []string{lic}
	}
	return &p, nil
}

func npmPackage(name, version string) scan.Package {
	ns, n := "", name
	if strings.HasPrefix(name, "@") {
		if s, rest, ok := strings.Cut(name, "/"); ok {
			ns, n = s, rest
		}
	}
	return scan.Package{Name: name, Version: version, Ecosystem: "npm", Kind: scan.KindLang,
		PURL: purl("npm", ns, n, version)}
}

// NPMLock reads package-lock.json and npm-shrinkwrap.json (lockfile v1
// "dependencies" trees and v2/v3 "packages" maps), outside node_modules.
// Its packages carry Metadata lockfile=true; scan.Merge drops them when the
// same package is installed.
type NPMLock struct{}

func (NPMLock) Name() string    { return "npm-lock" }
func (NPMLock) Version() string { return "1" }
func (NPMLock) Wants(hdr *tar.Header) bool {
	b := path.Base(hdr.Name)
	return isRegular(hdr) && (b == "package-lock.json" || b == "npm-shrinkwrap.json") &&
		!strings.Contains(hdr.Name, "node_modules/")
}

// Analyze parses the lockfile.
func (NPMLock) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return ParsePackageLock(r)
}

type lockDep struct {
	Version      string             `json:"version"`
	Dev          bool               `json:"dev"`
	Link         bool               `json:"link"`
	Dependencies map[string]lockDep `json:"dependencies"`
}

// ParsePackageLock parses an npm lockfile (at most 64 MiB).
func ParsePackageLock(r io.Reader) ([]scan.Package, error) {
	var doc struct {
		Packages map[string]struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Link    bool   `json:"link"`
		} `json:"packages"`
		Dependencies map[string]lockDep `json:"dependencies"`
	}
	if err := json.NewDecoder(io.LimitReader(r, maxTextBytes)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("package-lock: %w", err)
	}
	seen := map[string]bool{}
	var pkgs []scan.Package
	add := func(name, version string) {
		if name == "" || version == "" || strings.ContainsAny(version, ":/") || seen[name+"@"+version] {
			return
		}
		seen[name+"@"+version] = true
		p := npmPackage(name, version)
		p.Metadata = map[string]string{"lockfile": "true"}
		pkgs = append(pkgs, p)
	}
	if len(doc.Packages) > 0 {
		for k, v := range doc.Packages {
			i := strings.LastIndex(k, "node_modules/")
			if i < 0 || v.Link {
				continue
			}
			name := v.Name
			if name == "" {
				name = k[i+len("node_modules/"):]
			}
			add(name, v.Version)
		}
	} else {
		var walk func(map[string]lockDep, int)
		walk = func(m map[string]lockDep, depth int) {
			if depth > 64 {
				return
			}
			for name, d := range m {
				if !d.Link {
					add(name, d.Version)
				}
				walk(d.Dependencies, depth+1)
			}
		}
		walk(doc.Dependencies, 0)
	}
	return pkgs, nil
}
