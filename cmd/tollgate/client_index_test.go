package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/scan"
)

// A multi-platform tag names an index: `findings list --image` lists its
// platform images' findings (with their platforms), `sbom` picks a
// platform's image (--platform, default the host's).
func TestClientCommandsMultiPlatform(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	amd, arm, idx := digest.FromString("amd64"), digest.FromString("arm64"), digest.FromString("idx")
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":10,"platform":{"os":"linux","architecture":"amd64"}},
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":11,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`, amd, arm)
	recs := index.NewRecords(db, index.RecordsOptions{})
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, ev := range []index.Event{
		{Kind: index.EventPush, Repository: "multi", Digest: amd, At: now},
		{Kind: index.EventPush, Repository: "multi", Digest: arm, At: now},
		{Kind: index.EventPush, Repository: "multi", Digest: idx, Tag: "v1", Manifest: []byte(manifest), At: now},
	} {
		if err := recs.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	fs := index.NewFindingStore(db)
	invs := index.NewInventories(db)
	for d, p := range map[digest.Digest]scan.Platform{amd: {OS: "linux", Architecture: "amd64"}, arm: {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		pkg := scan.Package{Name: "pkg-" + p.Architecture, Version: "1.0", Ecosystem: "npm", Kind: scan.KindLang, Path: "app/package-lock.json",
			PURL: "pkg:npm/pkg-" + p.Architecture + "@1.0"}
		f := scan.Finding{ID: "CVE-" + p.Architecture, VulnerabilityID: "CVE-" + p.Architecture, AdvisoryID: "CVE-" + p.Architecture,
			Title: "t", Severity: scan.SeverityHigh, FixAvailable: "YES", FixedVersions: []string{"2.0"}, Package: pkg}
		if _, err := fs.Replace(ctx, d, []scan.Finding{f}, now); err != nil {
			t.Fatal(err)
		}
		if err := invs.PutImage(ctx, &scan.Inventory{Image: d, Platform: p, Packages: []scan.Package{pkg}}); err != nil {
			t.Fatal(err)
		}
	}
	api := admin.NewAPI(admin.APIOptions{Findings: fs, Images: recs, Filters: index.NewFilters(db),
		SBOM: admin.SBOMs{Inventories: invs, Findings: fs, ToolVersion: "test"}, Logger: zerolog.Nop()})
	flags := []string{"--admin-url", serveAdminAPI(t, db, recs, api).URL, "--token", "tok"}

	out, err := runClient(t, append([]string{"findings", "list", "--image", "multi:v1"}, flags...)...)
	if err != nil || !strings.Contains(out, "CVE-amd64") || !strings.Contains(out, "CVE-arm64") ||
		!strings.Contains(out, "(linux/amd64)") || !strings.Contains(out, "(linux/arm64/v8)") {
		t.Fatalf("findings list --image multi:v1: %v\n%s", err, out)
	}
	out, err = runClient(t, append([]string{"findings", "list", "--image", "multi@" + idx.String()}, flags...)...)
	if err != nil || !strings.Contains(out, "CVE-amd64") || !strings.Contains(out, "CVE-arm64") {
		t.Fatalf("findings list --image multi@index: %v\n%s", err, out)
	}

	sbomPkgs := func(args ...string) (string, error) {
		out, err := runClient(t, append(append([]string{"sbom"}, args...), flags...)...)
		if err != nil {
			return "", err
		}
		var doc struct {
			Components []struct{ Name string } `json:"components"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			return "", fmt.Errorf("%w: %s", err, out)
		}
		var names []string
		for _, c := range doc.Components {
			names = append(names, c.Name)
		}
		return strings.Join(names, ","), nil
	}
	if got, err := sbomPkgs("multi:v1", "--platform", "linux/arm64"); err != nil || got != "pkg-arm64" {
		t.Fatalf("sbom --platform linux/arm64: %q %v", got, err)
	}
	if got, err := sbomPkgs("multi:v1", "--platform", "linux/amd64"); err != nil || got != "pkg-amd64" {
		t.Fatalf("sbom --platform linux/amd64: %q %v", got, err)
	}
	_, err = sbomPkgs("multi:v1")
	switch host := runtime.GOOS + "/" + runtime.GOARCH; host {
	case "linux/amd64", "linux/arm64":
		if err != nil {
			t.Fatalf("sbom of the host's platform %s: %v", host, err)
		}
	default:
		if err == nil || !strings.Contains(err.Error(), "linux/amd64, linux/arm64/v8") {
			t.Fatalf("sbom on %s: %v", host, err)
		}
	}
	if _, err := sbomPkgs("multi:v1", "--platform", "linux/s390x"); err == nil ||
		!strings.Contains(err.Error(), "linux/amd64, linux/arm64/v8") {
		t.Fatalf("sbom --platform linux/s390x: %v", err)
	}

	// Nits: an unknown image is said so, and -o means nothing to sbom.
	if _, err := sbomPkgs("nope/x:1"); err == nil || err.Error() != "image nope/x:1 not found" {
		t.Fatalf("sbom nope/x:1: %v", err)
	}
	if _, err := sbomPkgs("multi:v1", "-o", "json"); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Fatalf("sbom -o json: %v", err)
	}
	help, _ := runClient(t, "sbom", "--help")
	if strings.Contains(help, "--output") || !strings.Contains(help, "--platform") {
		t.Fatalf("sbom --help:\n%s", help)
	}
}

// An index with more platform images than an Inspector filter takes values
// (10): `findings list --image` lists exactly its platform images'
// findings, in the server's order (highest severity first) across all of
// them, by tag and by the index's bare digest.
func TestFindingsListIndexBeyondFilterLimit(t *testing.T) {
	ctx := context.Background()
	db, recs, fs, now := findingsFixture(t)
	finding := func(d digest.Digest, id string, sev scan.Severity) {
		pkg := scan.Package{Name: "pkg", Version: "1.0", Ecosystem: "npm", Kind: scan.KindLang, Path: "app/package-lock.json", PURL: "pkg:npm/pkg@1.0"}
		f := scan.Finding{ID: id, VulnerabilityID: id, AdvisoryID: id, Title: "t", Severity: sev, FixAvailable: "NO", Package: pkg}
		if _, err := fs.Replace(ctx, d, []scan.Finding{f}, now); err != nil {
			t.Fatal(err)
		}
	}
	var entries []string
	want := map[string]bool{}
	for i := range 12 {
		d := digest.FromString(fmt.Sprint("child", i))
		if err := recs.Record(ctx, index.Event{Kind: index.EventPush, Repository: "wide", Digest: d, At: now}); err != nil {
			t.Fatal(err)
		}
		// The last two children hold the worst findings: listed ten by ten
		// they would come last.
		sev := scan.SeverityLow
		if i >= 10 {
			sev = scan.SeverityCritical
		}
		id := fmt.Sprintf("CVE-2026-%04d", i)
		finding(d, id, sev)
		want[id] = true
		entries = append(entries, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":10,"platform":{"os":"linux","architecture":"arch%d"}}`, d, i))
	}
	idx := digest.FromString("wide-index")
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(entries, ",") + `]}`
	other := digest.FromString("other")
	for _, ev := range []index.Event{
		{Kind: index.EventPush, Repository: "wide", Digest: idx, Tag: "v1", Manifest: []byte(manifest), At: now},
		{Kind: index.EventPush, Repository: "wide", Digest: other, Tag: "other", At: now},
	} {
		if err := recs.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	finding(other, "CVE-2026-9999", scan.SeverityCritical) // same repository, not in the index

	api := admin.NewAPI(admin.APIOptions{Findings: fs, Images: recs, Filters: index.NewFilters(db), Logger: zerolog.Nop()})
	hs := serveAdminAPI(t, db, recs, api)

	for _, ref := range []string{"wide:v1", "wide@" + idx.String(), idx.String()} {
		out, err := runClient(t, "findings", "list", "--image", ref, "-o", "json", "--admin-url", hs.URL, "--token", "tok")
		if err != nil {
			t.Fatalf("%s: %v\n%s", ref, err, out)
		}
		var got struct {
			Findings []struct {
				Severity                    string
				PackageVulnerabilityDetails struct{ VulnerabilityId string }
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: %v\n%s", ref, err, out)
		}
		seen := map[string]bool{}
		var sevs []string
		for _, f := range got.Findings {
			seen[f.PackageVulnerabilityDetails.VulnerabilityId] = true
			sevs = append(sevs, f.Severity)
		}
		if len(got.Findings) != len(want) || len(seen) != len(want) {
			t.Errorf("%s: %d findings %v, want the 12 of the platform images", ref, len(got.Findings), seen)
		}
		for id := range want {
			if !seen[id] {
				t.Errorf("%s: %s missing", ref, id)
			}
		}
		if len(sevs) > 2 && (sevs[0] != "CRITICAL" || sevs[1] != "CRITICAL") {
			t.Errorf("%s: severities in order %v, want the two CRITICAL first", ref, sevs)
		}
	}
}

// serveAdminAPI serves api (Inspector/ECR actions and /v1/sbom) and the
// admin server's own routes for db and recs, with bearer token "tok".
func serveAdminAPI(t *testing.T, db *index.DB, recs *index.Records, api *admin.API) *httptest.Server {
	t.Helper()
	auth, err := admin.NewAuth(admin.AuthOptions{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv := admin.New(admin.Options{Logger: zerolog.Nop(), DB: db, Records: recs})
	srv.Handle("POST /", auth.Wrap(api))
	srv.Handle("GET /v1/sbom", auth.Wrap(api.SBOMHandler()))
	srv.Protect(auth)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs
}

// A misspelt filter value or an unknown tag is an error, not an empty
// listing that a CI gate reads as "no findings"; --order alone reverses the
// default order (highest severity first).
func TestClientFilterValuesChecked(t *testing.T) {
	ctx := context.Background()
	db, recs, fs, now := findingsFixture(t)
	d := digest.FromString("app")
	if err := recs.Record(ctx, index.Event{Kind: index.EventPush, Repository: "app", Digest: d, Tag: "v1", At: now}); err != nil {
		t.Fatal(err)
	}
	var fl []scan.Finding
	for id, sev := range map[string]scan.Severity{"CVE-LOW": scan.SeverityLow, "CVE-CRIT": scan.SeverityCritical} {
		pkg := scan.Package{Name: "p" + id, Version: "1.0", Ecosystem: "npm", Kind: scan.KindLang, Path: "app/package-lock.json", PURL: "pkg:npm/p@1.0"}
		fl = append(fl, scan.Finding{ID: id, VulnerabilityID: id, AdvisoryID: id, Title: "t", Severity: sev, FixAvailable: "NO", Package: pkg})
	}
	if _, err := fs.Replace(ctx, d, fl, now); err != nil {
		t.Fatal(err)
	}
	scans := &cliScans{}
	api := admin.NewAPI(admin.APIOptions{Findings: fs, Images: recs, Filters: index.NewFilters(db), Scanner: scans, Logger: zerolog.Nop()})
	flags := []string{"--admin-url", serveAdminAPI(t, db, recs, api).URL, "--token", "tok"}

	for _, c := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"findings", "list", "--severity", "critcal"}, `--severity "CRITCAL": want one of CRITICAL, HIGH`},
		{[]string{"findings", "list", "--status", "open"}, `--status "OPEN"`},
		{[]string{"findings", "list", "--fix-available", "maybe"}, `--fix-available "MAYBE"`},
		{[]string{"findings", "list", "--order", "sideways"}, `--order "SIDEWAYS"`},
		{[]string{"findings", "list", "--image", "app:v2"}, "image app:v2 not found"},
		{[]string{"coverage", "list", "--type", "pod"}, `--type "pod"`},
		{[]string{"coverage", "list", "--status", "done"}, `--status "DONE"`},
	} {
		if out, err := runClient(t, append(c.args, flags...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v (want %q)\n%s", c.args, err, c.want, out)
		}
	}
	first := func(args ...string) string {
		t.Helper()
		out, err := runClient(t, append(append([]string{"findings", "list", "-o", "json"}, args...), flags...)...)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Findings []struct{ Severity string } }
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Findings) != 2 {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return got.Findings[0].Severity
	}
	if s := first("--image", "app:v1"); s != "CRITICAL" {
		t.Errorf("default order: first %s, want CRITICAL", s)
	}
	if s := first("--order", "asc"); s != "LOW" {
		t.Errorf("--order asc: first %s, want LOW", s)
	}
	// The IMAGE column's REPO@<12 hex digits> names the image again.
	table, err := runClient(t, append([]string{"findings", "list"}, flags...)...)
	short := "app@" + d.Encoded()[:12]
	if err != nil || !strings.Contains(table, short) {
		t.Fatalf("findings list: %v\n%s", err, table)
	}
	if s := first("--image", short); s != "CRITICAL" {
		t.Errorf("--image %s: first %s", short, s)
	}
	// scan-image takes the bare digest too (its repository looked up).
	if _, err := runClient(t, append([]string{"scan-image", d.String()}, flags...)...); err != nil || len(scans.got) != 1 || scans.got[0] != "app@"+d.String() {
		t.Errorf("scan-image of a bare digest: %v, scans %v", err, scans.got)
	}
	if _, err := runClient(t, append([]string{"scan-image", digest.FromString("nope").String()}, flags...)...); err == nil ||
		!strings.Contains(err.Error(), "not found") {
		t.Errorf("scan-image of an unknown bare digest: %v", err)
	}
	if _, err := runClient(t, append([]string{"findings", "list", "--image", "app@0123456789ab"}, flags...)...); err == nil ||
		!strings.Contains(err.Error(), "image app@0123456789ab not found") {
		t.Errorf("unknown short digest: %v", err)
	}
}

// A CLI pointed at the wrong admin port says where to look.
func TestClientConnectionRefusedHint(t *testing.T) {
	ln := httptest.NewServer(nil)
	u := ln.URL
	ln.Close() // nothing listens there now
	_, err := runClient(t, "coverage", "list", "--admin-url", u, "--token", "tok")
	if err == nil || !strings.Contains(err.Error(), "--admin-url or TOLLGATE_ADMIN_URL") {
		t.Fatalf("err %v", err)
	}
}

// findingsFixture is a Badger index in a temp dir with its records and
// finding store, and the tests' clock.
func findingsFixture(t *testing.T) (*index.DB, *index.Records, *index.FindingStore, time.Time) {
	t.Helper()
	db := openTestDB(t)
	return db, index.NewRecords(db, index.RecordsOptions{}), index.NewFindingStore(db), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
}
