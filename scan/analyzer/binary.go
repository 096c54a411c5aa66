package analyzer

import (
	"archive/tar"
	"bytes"
	"compress/zlib"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"debug/pe"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// Binary reads executables: Go build information (debug/buildinfo: main
// module, dependencies with replacements applied, and the toolchain as the
// "stdlib" package, as govulncheck and OSV name it) and Rust dependency lists
// embedded by cargo-auditable (the zlib-compressed JSON ".dep-v0" section,
// https://github.com/rust-secure-code/cargo-auditable/blob/master/PARSING.md).
// Only regular files with an execute bit and an ELF, Mach-O or PE magic are
// buffered. Versions are given without Go's "v" prefix, as OSV's Go
// ecosystem and osv-scalibr write them ("1.6.3", stdlib "1.21.0").
type Binary struct{}

func (Binary) Name() string    { return "binary" }
func (Binary) Version() string { return "1" }
func (Binary) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && hdr.Mode&0o111 != 0 && hdr.Size > 64
}
func (Binary) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return nil, errors.New("binary: needs random access")
}

// WantsHead accepts ELF, Mach-O (thin and fat) and PE magics.
func (Binary) WantsHead(hdr *tar.Header, head []byte) bool { return IsExecutable(head) }

// IsExecutable reports whether head starts with an ELF, Mach-O or PE magic.
func IsExecutable(head []byte) bool {
	if len(head) < 4 {
		return false
	}
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return true
	case bytes.HasPrefix(head, []byte("MZ")):
		return true
	}
	switch string(head[:4]) {
	case "\xfe\xed\xfa\xce", "\xfe\xed\xfa\xcf", "\xce\xfa\xed\xfe", "\xcf\xfa\xed\xfe", "\xca\xfe\xba\xbe":
		return true
	}
	return false
}

// AnalyzeAt reads Go build info, else a cargo-auditable section.
func (Binary) AnalyzeAt(ctx context.Context, hdr *tar.Header, r io.ReaderAt, size int64) (scan.Result, error) {
	if bi, err := buildinfo.Read(r); err == nil {
		return scan.Result{Packages: goPackages(bi)}, nil
	}
	pkgs, err := rustAudit(r, size)
	return scan.Result{Packages: pkgs}, err
}

func goVersion(v string) string { return strings.TrimPrefix(v, "v") }

func goPackages(bi *buildinfo.BuildInfo) []scan.Package {
	var pkgs []scan.Package
	add := func(path, version string, meta map[string]string) {
		if path == "" || version == "" || version == "(devel)" {
			return
		}
		v := goVersion(version)
		pkgs = append(pkgs, scan.Package{Name: path, Version: v, Ecosystem: "Go", Kind: scan.KindLang,
			PURL: goPURL(path, version), Metadata: meta})
	}
	tc := strings.Fields(bi.GoVersion)
	meta := map[string]string{}
	if len(tc) > 0 {
		meta["goToolchain"] = tc[0]
	}
	add(bi.Main.Path, bi.Main.Version, map[string]string{"goToolchain": meta["goToolchain"], "goMainModule": "true"})
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		add(d.Path, d.Version, nil)
	}
	if len(tc) > 0 && strings.HasPrefix(tc[0], "go1") {
		v := strings.TrimPrefix(tc[0], "go")
		pkgs = append(pkgs, scan.Package{Name: "stdlib", Version: v, Ecosystem: "Go", Kind: scan.KindLang,
			PURL: purl("golang", "", "stdlib", v), Metadata: map[string]string{"goToolchain": tc[0]}})
	}
	return pkgs
}

// rustAudit reads cargo-auditable's .dep-v0 section from an ELF or PE file.
func rustAudit(r io.ReaderAt, size int64) ([]scan.Package, error) {
	var sec io.Reader
	if f, err := elf.NewFile(r); err == nil {
		if s := f.Section(".dep-v0"); s != nil {
			sec = s.Open()
		}
	} else if f, err := pe.NewFile(r); err == nil {
		if s := f.Section(".dep-v0"); s != nil {
			sec = s.Open()
		}
	}
	if sec == nil {
		return nil, nil
	}
	return ParseCargoAuditable(sec)
}

// ParseCargoAuditable decodes a .dep-v0 section (zlib-compressed JSON
// {"packages":[{"name","version","source","kind"}]}); the input is capped at
// 8 MiB decompressed. Build-only dependencies are skipped.
func ParseCargoAuditable(r io.Reader) ([]scan.Package, error) {
	zr, err := zlib.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("cargo-auditable: %w", err)
	}
	defer zr.Close()
	var doc struct {
		Packages []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Source  string `json:"source"`
			Kind    string `json:"kind"`
		} `json:"packages"`
	}
	if err := json.NewDecoder(io.LimitReader(zr, 8<<20)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("cargo-auditable: %w", err)
	}
	var pkgs []scan.Package
	for _, p := range doc.Packages {
		if p.Name == "" || p.Version == "" || p.Kind == "build" || (p.Source != "" && p.Source != "crates.io" && p.Source != "registry") {
			continue
		}
		pkgs = append(pkgs, scan.Package{Name: p.Name, Version: p.Version, Ecosystem: "crates.io", Kind: scan.KindLang,
			PURL: purl("cargo", "", p.Name, p.Version)})
	}
	return pkgs, nil
}

// goPURL is pkg:golang/<module path>@<version>, the path split at its last
// slash into namespace and name (purl spec, golang type).
func goPURL(module, version string) string {
	ns, name := "", module
	if i := strings.LastIndexByte(module, '/'); i >= 0 {
		ns, name = module[:i], module[i+1:]
	}
	return purl("golang", ns, name, version)
}
