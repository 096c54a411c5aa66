package analyzer

import (
	"archive/tar"
	"context"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// Python reads installed distributions' core metadata
// (https://packaging.python.org/en/latest/specifications/core-metadata/):
// *.dist-info/METADATA, *.egg-info/PKG-INFO and single-file *.egg-info.
// Ecosystem "PyPI"; the purl name is PEP 503 normalised.
type Python struct{}

func (Python) Name() string    { return "python" }
func (Python) Version() string { return "1" }
func (Python) Wants(hdr *tar.Header) bool {
	if !isRegular(hdr) {
		return false
	}
	n := hdr.Name
	b, d := path.Base(n), path.Base(path.Dir(n))
	switch {
	case b == "METADATA" && strings.HasSuffix(d, ".dist-info"):
		return true
	case b == "PKG-INFO" && strings.HasSuffix(d, ".egg-info"):
		return true
	case strings.HasSuffix(b, ".egg-info"):
		return true
	}
	return false
}

// Analyze parses the metadata headers.
func (Python) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	p, err := ParsePythonMetadata(r)
	if err != nil || p == nil {
		return nil, err
	}
	return []scan.Package{*p}, nil
}

var pep503 = regexp.MustCompile(`[-_.]+`)

// PyPINormalize is PEP 503's name normalisation ("Jinja2" → "jinja2").
func PyPINormalize(name string) string { return strings.ToLower(pep503.ReplaceAllString(name, "-")) }

// ParsePythonMetadata reads Name, Version and License from the RFC 822
// header block of a METADATA/PKG-INFO file; nil when it names no distribution.
func ParsePythonMetadata(r io.Reader) (*scan.Package, error) {
	var name, version, license string
	sc := newLineScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break // the body (long description) follows
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			name = v
		case "Version":
			version = v
		case "License":
			license = v
		}
	}
	if err := sc.Err(); err != nil && name == "" {
		return nil, err
	}
	if name == "" || version == "" {
		return nil, nil
	}
	p := &scan.Package{Name: name, Version: version, Ecosystem: "PyPI", Kind: scan.KindLang,
		PURL: purl("pypi", "", PyPINormalize(name), version)}
	if license != "" && license != "UNKNOWN" && len(license) < 200 {
		p.Licenses = []string{license}
	}
	return p, nil
}
