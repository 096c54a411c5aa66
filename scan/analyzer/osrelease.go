package analyzer

import (
	"archive/tar"
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// OSRelease reads os-release(5) (etc/os-release, usr/lib/os-release) into
// scan.Result.OS; the image's OS is the topmost layer's (scan.Merge).
type OSRelease struct{}

func (OSRelease) Name() string    { return "os-release" }
func (OSRelease) Version() string { return "1" }
func (OSRelease) Wants(hdr *tar.Header) bool {
	return isRegular(hdr) && (hdr.Name == "etc/os-release" || hdr.Name == "usr/lib/os-release")
}
func (a OSRelease) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return nil, nil
}

// AnalyzeEntry parses the file; an os-release without ID yields nothing.
func (OSRelease) AnalyzeEntry(ctx context.Context, hdr *tar.Header, r io.Reader) (scan.Result, error) {
	os := ParseOSRelease(io.LimitReader(r, 1<<20))
	if os.ID == "" {
		return scan.Result{}, nil
	}
	os.Path = hdr.Name
	return scan.Result{OS: &os}, nil
}

// ParseOSRelease parses os-release(5) KEY=value lines (values optionally
// quoted, shell escapes undone); unknown keys are ignored.
func ParseOSRelease(r io.Reader) scan.OSRelease {
	var os scan.OSRelease
	sc := newLineScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = unquote(strings.TrimSpace(v))
		switch strings.TrimSpace(k) {
		case "ID":
			os.ID = strings.ToLower(v)
		case "VERSION_ID":
			os.VersionID = v
		case "VERSION_CODENAME":
			os.Codename = v
		case "PRETTY_NAME":
			os.PrettyName = v
		case "ID_LIKE":
			os.IDLike = v
		}
	}
	return os
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
		return v[1 : len(v)-1]
	}
	return v
}
