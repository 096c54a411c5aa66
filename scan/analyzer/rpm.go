package analyzer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	rpmdb "github.com/erikvarga/go-rpmdb/pkg"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver go-rpmdb opens rpmdb.sqlite with

	"github.com/tollgate-registry/tollgate/scan"
)

// RPM reads RPM package databases in their three backends: SQLite
// (rpmdb.sqlite, rpm ≥ 4.16), Berkeley DB (Packages) and NDB (Packages.db,
// SUSE), under var/lib/rpm or usr/lib/sysimage/rpm, with
// github.com/erikvarga/go-rpmdb (the library osv-scalibr's rpm extractor
// uses). The library opens databases by file name, so the spooled entry is
// copied to a private temporary file first. Version is [epoch:]version-release;
// SourceName/SourceVersion come from the source RPM file name. Family
// ecosystem "Red Hat" (the release and distribution, e.g. AlmaLinux:9, come
// from os-release at merge time).
type RPM struct {
	// TempDir holds the database copy; empty means os.TempDir().
	TempDir string
}

func (RPM) Name() string    { return "rpm" }
func (RPM) Version() string { return "1" }
func (RPM) Wants(hdr *tar.Header) bool {
	if !isRegular(hdr) {
		return false
	}
	switch path.Dir(hdr.Name) {
	case "var/lib/rpm", "usr/lib/sysimage/rpm", "usr/share/rpm":
		switch path.Base(hdr.Name) {
		case "Packages", "Packages.db", "rpmdb.sqlite":
			return true
		}
	}
	return false
}
func (RPM) Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]scan.Package, error) {
	return nil, errors.New("rpm: needs random access")
}

// WantsHead accepts every database (the three formats have different magics).
func (RPM) WantsHead(hdr *tar.Header, head []byte) bool { return len(head) > 0 }

// AnalyzeAt copies the database to a temporary file and lists its packages.
func (a RPM) AnalyzeAt(ctx context.Context, hdr *tar.Header, r io.ReaderAt, size int64) (scan.Result, error) {
	dir := a.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "tollgate-rpmdb-*")
	if err != nil {
		return scan.Result{}, fmt.Errorf("rpm: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, io.NewSectionReader(r, 0, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return scan.Result{}, fmt.Errorf("rpm: copy database: %w", err)
	}
	return ReadRPMDB(ctx, f.Name())
}

// ReadRPMDB lists the packages of the RPM database file at file (any backend).
func ReadRPMDB(ctx context.Context, file string) (res scan.Result, err error) {
	defer func() {
		// go-rpmdb indexes into headers it trusts; a crafted database must not take the walk down.
		if p := recover(); p != nil {
			err = fmt.Errorf("rpm: invalid database: %v", p)
		}
	}()
	db, err := rpmdb.Open(file)
	if err != nil {
		return res, fmt.Errorf("rpm: open: %w", err)
	}
	defer db.Close()
	infos, err := db.ListPackagesWithContext(ctx)
	if err != nil {
		return res, fmt.Errorf("rpm: list: %w", err)
	}
	for _, pi := range infos {
		if pi.Name == "" || pi.Version == "" || pi.Name == "gpg-pubkey" {
			continue
		}
		vr := pi.Version
		if pi.Release != "" {
			vr += "-" + pi.Release
		}
		ver := vr
		epoch := ""
		if pi.Epoch != nil && *pi.Epoch != 0 {
			epoch = strconv.Itoa(*pi.Epoch)
			ver = epoch + ":" + vr
		}
		p := scan.Package{Name: pi.Name, Version: ver, Ecosystem: "Red Hat", Kind: scan.KindOS, Arch: pi.Arch,
			SourceName: pi.Name, SourceVersion: ver}
		if sn, sv, ok := parseSourceRPM(pi.SourceRpm); ok {
			p.SourceName, p.SourceVersion = sn, sv
			if epoch != "" {
				p.SourceVersion = epoch + ":" + sv
			}
		}
		if pi.License != "" {
			p.Licenses = []string{pi.License}
		}
		q := []string{"arch", pi.Arch, "epoch", epoch}
		if p.SourceName != p.Name {
			q = append(q, "upstream", pi.SourceRpm)
		}
		p.PURL = purl("rpm", "redhat", pi.Name, vr, q...)
		res.Packages = append(res.Packages, p)
		if files, err := pi.InstalledFileNames(); err == nil {
			for _, fn := range files {
				if o, ok := langOwned(fn); ok {
					res.OSOwned = append(res.OSOwned, o)
				}
			}
		}
	}
	return res, nil
}

// parseSourceRPM splits "openssl-1.1.1k-7.cm2.src.rpm" into ("openssl", "1.1.1k-7.cm2").
func parseSourceRPM(s string) (name, version string, ok bool) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, ".rpm"), ".src")
	s = strings.TrimSuffix(s, ".nosrc")
	r := strings.LastIndexByte(s, '-')
	if r <= 0 {
		return "", "", false
	}
	v := strings.LastIndexByte(s[:r], '-')
	if v <= 0 {
		return "", "", false
	}
	return s[:v], s[v+1:], true
}
