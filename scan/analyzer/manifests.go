package analyzer

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// Composer reads PHP Composer's vendor/composer/installed.json (v1: a list;
// v2: {"packages": [...]}). Ecosystem "Packagist".
type Composer struct{}

func (Composer) Name() string    { return "composer" }
func (Composer) Version() string { return "1" }
func (Composer) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && strings.HasSuffix("/"+hdr.Name, "/vendor/composer/installed.json")
}

type composerPkg struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	License []string `json:"license"`
}

// Analyze parses installed.json.
func (Composer) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return ParseComposerInstalled(r)
}

// ParseComposerInstalled parses installed.json (at most 64 MiB).
func ParseComposerInstalled(r io.Reader) ([]scan.Package, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxTextBytes))
	if err != nil {
		return nil, err
	}
	var list []composerPkg
	if err := json.Unmarshal(b, &list); err != nil {
		var v2 struct {
			Packages []composerPkg `json:"packages"`
		}
		if err := json.Unmarshal(b, &v2); err != nil {
			return nil, fmt.Errorf("composer installed.json: %w", err)
		}
		list = v2.Packages
	}
	var pkgs []scan.Package
	for _, p := range list {
		vendor, name, ok := strings.Cut(p.Name, "/")
		if !ok || p.Version == "" {
			continue
		}
		v := strings.TrimPrefix(p.Version, "v")
		pkgs = append(pkgs, scan.Package{Name: p.Name, Version: v, Ecosystem: "Packagist", Kind: scan.KindLang,
			PURL: purl("composer", vendor, name, v), Licenses: p.License})
	}
	return pkgs, nil
}

// DotNet reads .NET *.deps.json files: "libraries" entries of type
// "package" are NuGet packages ("Name/Version" keys). Ecosystem "NuGet".
type DotNet struct{}

func (DotNet) Name() string    { return "dotnet" }
func (DotNet) Version() string { return "1" }
func (DotNet) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && strings.HasSuffix(hdr.Name, ".deps.json")
}

// Analyze parses the deps.json.
func (DotNet) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return ParseDepsJSON(r)
}

// ParseDepsJSON parses a deps.json (at most 64 MiB).
func ParseDepsJSON(r io.Reader) ([]scan.Package, error) {
	var doc struct {
		Libraries map[string]struct {
			Type string `json:"type"`
		} `json:"libraries"`
	}
	if err := json.NewDecoder(io.LimitReader(r, maxTextBytes)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("deps.json: %w", err)
	}
	var pkgs []scan.Package
	for k, l := range doc.Libraries {
		name, ver, ok := strings.Cut(k, "/")
		if !ok || l.Type != "package" || name == "" || ver == "" {
			continue
		}
		pkgs = append(pkgs, scan.Package{Name: name, Version: ver, Ecosystem: "NuGet", Kind: scan.KindLang,
			PURL: purl("nuget", "", name, ver)})
	}
	return pkgs, nil
}

// Gemspec reads installed RubyGems specifications
// (…/specifications/<name>-<version>.gemspec), the Ruby files RubyGems
// writes at install time, by their `s.name = "…"` and `s.version = "…"`
// lines (Ruby is not evaluated). Ecosystem "RubyGems".
type Gemspec struct{}

func (Gemspec) Name() string    { return "gemspec" }
func (Gemspec) Version() string { return "1" }
func (Gemspec) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && strings.HasSuffix(hdr.Name, ".gemspec") &&
		path.Base(path.Dir(hdr.Name)) == "specifications"
}

var gemAttr = regexp.MustCompile(`^\s*\w+\.(name|version|licenses?)\s*=\s*(.*)$`)
var gemQuoted = regexp.MustCompile(`["']([^"']+)["']`)

// Analyze parses the gemspec.
func (Gemspec) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	p := ParseGemspec(r)
	if p == nil {
		return nil, nil
	}
	return []scan.Package{*p}, nil
}

// ParseGemspec reads name, version and licenses; nil when either of the
// first two is missing.
func ParseGemspec(r io.Reader) *scan.Package {
	var name, version string
	var lic []string
	sc := newLineScanner(io.LimitReader(r, 4<<20))
	for sc.Scan() {
		m := gemAttr.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		vals := gemQuoted.FindAllStringSubmatch(m[2], -1)
		if len(vals) == 0 {
			continue
		}
		switch m[1] {
		case "name":
			if name == "" {
				name = vals[0][1]
			}
		case "version":
			if version == "" {
				version = vals[0][1]
			}
		default:
			for _, v := range vals {
				lic = append(lic, v[1])
			}
		}
	}
	if name == "" || version == "" {
		return nil
	}
	return &scan.Package{Name: name, Version: version, Ecosystem: "RubyGems", Kind: scan.KindLang,
		PURL: purl("gem", "", name, version), Licenses: lic}
}
