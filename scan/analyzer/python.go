package analyzer

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// Python reads installed distributions' core metadata
// (https://packaging.python.org/en/latest/specifications/core-metadata/):
// *.dist-info/METADATA, *.egg-info/PKG-INFO, <name>.egg/EGG-INFO/PKG-INFO
// and single-file *.egg-info.
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
	case b == "PKG-INFO" && (strings.HasSuffix(d, ".egg-info") || d == "EGG-INFO"):
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

// PythonArchive reads wheels (.whl) and zipped eggs (.egg) lying in the
// image (e.g. vendored into site-packages or a pip cache): the archive's own
// *.dist-info/METADATA or EGG-INFO/PKG-INFO. Ecosystem "PyPI".
type PythonArchive struct{}

func (PythonArchive) Name() string    { return "python-archive" }
func (PythonArchive) Version() string { return "1" }
func (PythonArchive) Wants(hdr *tar.Header) bool {
	if !isRegular(hdr) {
		return false
	}
	n := strings.ToLower(hdr.Name)
	return strings.HasSuffix(n, ".whl") || strings.HasSuffix(n, ".egg")
}
func (PythonArchive) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return nil, fmt.Errorf("python-archive: needs random access")
}

// WantsHead accepts zip local file headers.
func (PythonArchive) WantsHead(hdr *tar.Header, head []byte) bool {
	return bytes.HasPrefix(head, []byte("PK\x03\x04"))
}

// AnalyzeAt reads the archive's metadata file.
func (PythonArchive) AnalyzeAt(ctx context.Context, hdr *tar.Header, r io.ReaderAt, size int64) (scan.Result, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return scan.Result{}, fmt.Errorf("python-archive: %w", err)
	}
	for _, f := range zr.File {
		dir, base := path.Split(f.Name)
		dir = strings.TrimSuffix(dir, "/")
		if strings.Contains(dir, "/") || !(base == "METADATA" && strings.HasSuffix(dir, ".dist-info") || base == "PKG-INFO" && dir == "EGG-INFO") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return scan.Result{}, fmt.Errorf("python-archive: %w", err)
		}
		p, err := ParsePythonMetadata(rc)
		rc.Close()
		if err != nil || p == nil {
			return scan.Result{}, err
		}
		return scan.Result{Packages: []scan.Package{*p}}, nil
	}
	return scan.Result{}, nil
}
