package analyzer

import (
	"archive/tar"
	"context"
	"io"

	"github.com/tollgate-registry/tollgate/scan"
)

// Apk reads Alpine's installed database lib/apk/db/installed
// (https://wiki.alpinelinux.org/wiki/Apk_spec#Installed_Database_V2):
// P name, V version, A arch, o origin (the source package), L license;
// F/R file entries become scan.Result.OSOwned when they can hold language
// packages. Family ecosystem "Alpine"; the release (Alpine:v3.18) comes from
// os-release at merge time (Wolfi and Chainguard use apk too).
type Apk struct{}

func (Apk) Name() string    { return "apk" }
func (Apk) Version() string { return "1" }
func (Apk) Wants(hdr *tar.Header) bool {
	return hdr.Name == "lib/apk/db/installed"
}
func (a Apk) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	res, err := a.AnalyzeEntry(ctx, hdr, r)
	return res.Packages, err
}

// AnalyzeEntry parses the database.
func (Apk) AnalyzeEntry(ctx context.Context, hdr *tar.Header, r io.Reader) (scan.Result, error) {
	return ParseApkInstalled(r)
}

// ParseApkInstalled parses an apk installed database.
func ParseApkInstalled(r io.Reader) (scan.Result, error) {
	var res scan.Result
	var p scan.Package
	dir := ""
	flush := func() {
		if p.Name != "" && p.Version != "" {
			p.Ecosystem, p.Kind = "Alpine", scan.KindOS
			if p.SourceName == "" {
				p.SourceName = p.Name
			}
			p.SourceVersion = p.Version
			p.PURL = purl("apk", "alpine", p.Name, p.Version, "arch", p.Arch, "upstream", originQ(p))
			res.Packages = append(res.Packages, p)
		}
		p = scan.Package{}
		dir = ""
	}
	sc := newLineScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if len(line) < 2 || line[1] != ':' {
			continue
		}
		v := line[2:]
		switch line[0] {
		case 'P':
			p.Name = v
		case 'V':
			p.Version = v
		case 'A':
			p.Arch = v
		case 'o':
			p.SourceName = v
		case 'L':
			if v != "" {
				p.Licenses = []string{v}
			}
		case 'F':
			dir = v
		case 'R':
			if o, ok := langOwned(dir + "/" + v); ok {
				res.OSOwned = append(res.OSOwned, o)
			}
		}
	}
	flush()
	return res, sc.Err()
}

func originQ(p scan.Package) string {
	if p.SourceName == p.Name {
		return ""
	}
	return p.SourceName
}
