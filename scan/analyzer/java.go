package analyzer

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/tollgate-registry/tollgate/scan"
)

// Java reads Java archives (.jar, .war, .ear, .jpi, .hpi) and the archives
// nested in them, up to MaxDepth levels: Maven coordinates from
// META-INF/maven/<group>/<artifact>/pom.properties, else the manifest's
// Implementation-/Bundle- name and version. Ecosystem "Maven", name
// "group:artifact". Nested archives are read into memory up to 64 MiB each.
type Java struct {
	MaxDepth int
}

const maxNestedJar = 64 << 20

func (Java) Name() string               { return "java" }
func (Java) Version() string            { return "1" }
func (Java) Wants(hdr *tar.Header) bool { return isRegular(hdr) && isJavaArchive(hdr.Name) }
func (Java) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return nil, errors.New("java: needs random access")
}

func isJavaArchive(n string) bool {
	switch strings.ToLower(path.Ext(n)) {
	case ".jar", ".war", ".ear", ".jpi", ".hpi":
		return true
	}
	return false
}

// WantsHead accepts zip local file headers.
func (Java) WantsHead(hdr *tar.Header, head []byte) bool {
	return bytes.HasPrefix(head, []byte("PK\x03\x04"))
}

// AnalyzeAt reads the archive and its nested archives.
func (j Java) AnalyzeAt(ctx context.Context, hdr *tar.Header, r io.ReaderAt, size int64) (scan.Result, error) {
	depth := j.MaxDepth
	if depth <= 0 {
		depth = scan.DefaultMaxNestingDepth
	}
	pkgs, err := ParseJar(ctx, hdr.Name, r, size, depth)
	return scan.Result{Packages: pkgs}, err
}

// ParseJar reads one Java archive at p (used as Package.Path, nested archives
// as "outer.war!/WEB-INF/lib/x.jar"). Past depth it returns a *scan.LimitError
// alongside what was found.
func ParseJar(ctx context.Context, p string, r io.ReaderAt, size int64, depth int) ([]scan.Package, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("java: %s: %w", p, err)
	}
	var pkgs []scan.Package
	var manifest map[string]string
	var errs []error
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return pkgs, err
		}
		name := f.Name
		switch {
		case strings.HasPrefix(name, "META-INF/maven/") && path.Base(name) == "pom.properties":
			props := readProps(f)
			g, a, v := props["groupId"], props["artifactId"], props["version"]
			if g != "" && a != "" && v != "" {
				pkgs = append(pkgs, mavenPackage(g, a, v, p))
			}
		case name == "META-INF/MANIFEST.MF":
			manifest = readProps(f)
		case isJavaArchive(name) && f.UncompressedSize64 < maxNestedJar:
			np := p + "!/" + scan.CleanPath(name)
			if depth <= 1 {
				errs = append(errs, &scan.LimitError{Limit: "MaxNestingDepth", Max: float64(depth), Path: np})
				continue
			}
			rc, err := f.Open()
			if err != nil {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(rc, maxNestedJar))
			rc.Close()
			if err != nil {
				continue
			}
			sub, err := ParseJar(ctx, np, bytes.NewReader(b), int64(len(b)), depth-1)
			pkgs = append(pkgs, sub...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	hasOwn := false
	for _, pk := range pkgs {
		if pk.Path == p {
			hasOwn = true
		}
	}
	if !hasOwn && manifest != nil {
		name := firstOf(manifest, "Implementation-Title", "Bundle-SymbolicName", "Specification-Title")
		ver := firstOf(manifest, "Implementation-Version", "Bundle-Version", "Specification-Version")
		group := firstOf(manifest, "Implementation-Vendor-Id")
		if name != "" && ver != "" {
			name, _, _ = strings.Cut(name, ";")
			if group == "" {
				group = name
			}
			pkgs = append(pkgs, mavenPackage(group, path.Base(strings.ReplaceAll(name, " ", "-")), ver, p))
		}
	}
	return pkgs, errors.Join(errs...)
}

func mavenPackage(group, artifact, version, p string) scan.Package {
	return scan.Package{Name: group + ":" + artifact, Version: version, Ecosystem: "Maven", Kind: scan.KindLang,
		PURL: purl("maven", group, artifact, version), Path: p}
}

func firstOf(m map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}

// readProps reads a Java properties or manifest file (key=value / key: value), at most 1 MiB.
func readProps(f *zip.File) map[string]string {
	rc, err := f.Open()
	if err != nil {
		return nil
	}
	defer rc.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(rc, 1<<20))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			continue
		}
		m[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return m
}
