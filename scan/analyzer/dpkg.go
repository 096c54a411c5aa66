package analyzer

import (
	"archive/tar"
	"context"
	"io"
	"path"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// Dpkg reads Debian's package database: var/lib/dpkg/status, distroless
// var/lib/dpkg/status.d/<name> files (deb-control paragraphs,
// https://man7.org/linux/man-pages/man5/deb-control.5.html), and the
// var/lib/dpkg/info/*.list file lists, whose language-package paths become
// scan.Result.OSOwned. Packages get the family ecosystem "Debian"; scan.Merge
// sets the release (Debian:12, Ubuntu:22.04:LTS) from os-release.
type Dpkg struct{}

func (Dpkg) Name() string    { return "dpkg" }
func (Dpkg) Version() string { return "1" }
func (Dpkg) Wants(hdr *tar.Header) bool {
	n := hdr.Name
	switch {
	case n == "var/lib/dpkg/status":
		return true
	case strings.HasPrefix(n, "var/lib/dpkg/status.d/"):
		b := path.Base(n)
		return path.Dir(n) == "var/lib/dpkg/status.d" && !strings.HasSuffix(b, ".md5sums")
	case strings.HasPrefix(n, "var/lib/dpkg/info/") && strings.HasSuffix(n, ".list"):
		return path.Dir(n) == "var/lib/dpkg/info"
	}
	return false
}

func (a Dpkg) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	res, err := a.AnalyzeEntry(ctx, hdr, r)
	return res.Packages, err
}

// AnalyzeEntry parses a status file or a file list.
func (Dpkg) AnalyzeEntry(ctx context.Context, hdr *tar.Header, r io.Reader) (scan.Result, error) {
	if strings.HasSuffix(hdr.Name, ".list") && strings.HasPrefix(hdr.Name, "var/lib/dpkg/info/") {
		var owned []string
		sc := newLineScanner(r)
		for sc.Scan() {
			if p, ok := langOwned(sc.Text()); ok {
				owned = append(owned, p)
			}
		}
		return scan.Result{OSOwned: owned}, sc.Err()
	}
	pkgs, err := ParseDpkgStatus(r)
	return scan.Result{Packages: pkgs}, err
}

// ParseDpkgStatus parses deb-control paragraphs and returns the installed
// packages (Status "… installed"; a paragraph without Status, as in distroless
// status.d, counts as installed). Source "name (version)" gives SourceName and
// SourceVersion; versions keep their epoch ("1:1.2.13.dfsg-1").
func ParseDpkgStatus(r io.Reader) ([]scan.Package, error) {
	var pkgs []scan.Package
	fields := map[string]string{}
	last := ""
	flush := func() {
		defer clear(fields)
		name, ver := fields["Package"], fields["Version"]
		if name == "" || ver == "" {
			return
		}
		if st, ok := fields["Status"]; ok {
			w := strings.Fields(st)
			if len(w) == 0 || w[len(w)-1] != "installed" {
				return
			}
		}
		p := scan.Package{
			Name: name, Version: ver, Ecosystem: "Debian", Kind: scan.KindOS,
			Arch: fields["Architecture"], SourceName: name,
		}
		if src := fields["Source"]; src != "" {
			sn, sv, _ := strings.Cut(src, " ")
			p.SourceName = sn
			if sv = strings.Trim(strings.TrimSpace(sv), "()"); sv != "" {
				p.SourceVersion = sv
			}
		}
		if p.SourceVersion == "" {
			p.SourceVersion = ver
		}
		q := []string{"arch", p.Arch}
		if p.SourceName != name || p.SourceVersion != ver {
			up := p.SourceName
			if p.SourceVersion != ver {
				up += "@" + p.SourceVersion
			}
			q = append(q, "upstream", up)
		}
		p.PURL = purl("deb", "debian", name, ver, q...)
		pkgs = append(pkgs, p)
	}
	sc := newLineScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			last = ""
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // continuation (Description, Conffiles): not needed
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	_ = last
	flush()
	return pkgs, sc.Err()
}
