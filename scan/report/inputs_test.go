package report

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestParseIgnore(t *testing.T) {
	l, err := ParseIgnore(strings.NewReader(`# accepted risks
CVE-2024-0001
  GHSA-aaaa-bbbb-cccc   # waiting for upstream

cve-2024-0002 exp:2026-01-31
`))
	require.NoError(t, err)
	require.Len(t, l.Entries, 3)
	require.Equal(t, "GHSA-aaaa-bbbb-cccc", l.Entries[1].ID)
	require.Equal(t, 3, l.Entries[1].Line)
	require.Equal(t, time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC), *l.Entries[2].Expires)

	before := time.Date(2026, 1, 30, 23, 0, 0, 0, time.UTC)
	after := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    scan.Finding
		now  time.Time
		want bool
	}{
		{"by vulnerability id", scan.Finding{VulnerabilityID: "CVE-2024-0001"}, before, true},
		{"by advisory id", scan.Finding{VulnerabilityID: "CVE-9", AdvisoryID: "GHSA-aaaa-bbbb-cccc"}, before, true},
		{"by related id", scan.Finding{VulnerabilityID: "X", RelatedIDs: []string{"GHSA-AAAA-BBBB-CCCC"}}, before, true},
		{"case-insensitive, before expiry", scan.Finding{VulnerabilityID: "CVE-2024-0002"}, before, true},
		{"expired", scan.Finding{VulnerabilityID: "CVE-2024-0002"}, after, false},
		{"other", scan.Finding{VulnerabilityID: "CVE-2024-0003"}, before, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, l.Match(tc.f, tc.now) != nil)
		})
	}

	for _, bad := range []string{"CVE-1 exp:tomorrow\n", "CVE-1 because\n", strings.Repeat("x", maxIgnoreLine+1)} {
		_, err := ParseIgnore(strings.NewReader(bad))
		require.Error(t, err, "%.40q", bad)
		require.Contains(t, err.Error(), "line 1")
	}
	var none *IgnoreList
	require.Nil(t, none.Match(scan.Finding{VulnerabilityID: "CVE-1"}, before))
}

func vexFinding(vuln, purl string, image digest.Digest) scan.Finding {
	return scan.Finding{VulnerabilityID: vuln, Image: image, Package: scan.Package{PURL: purl}}
}

func TestOpenVEX(t *testing.T) {
	img := digest.FromString("img")
	other := digest.FromString("other")
	index := digest.FromString("index")
	ssl := "pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12"
	curl := "pkg:deb/debian/curl@7.88.1-10?arch=amd64&distro=debian-12"
	doc := `{
	  "@context": "https://openvex.dev/ns/v0.2.0",
	  "@id": "https://example.com/vex/1",
	  "author": "sec team",
	  "timestamp": "2026-01-01T00:00:00Z",
	  "version": 1,
	  "statements": [
	    {"vulnerability": {"name": "CVE-2024-0001", "aliases": ["GHSA-xxxx-yyyy-zzzz"]},
	     "products": [{"@id": "pkg:oci/app@` + strings.Replace(img.String(), ":", "%3A", 1) + `?repository_url=registry.example/app",
	                   "subcomponents": [{"@id": "pkg:deb/debian/openssl"}]}],
	     "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
	    {"vulnerability": {"name": "CVE-2024-0002"},
	     "products": [{"@id": "registry.example/app@` + img.String() + `"}],
	     "status": "fixed"},
	    {"vulnerability": {"name": "CVE-2024-0003"},
	     "products": [{"@id": "pkg:deb/debian/curl@7.88.1-10?arch=arm64"}],
	     "status": "not_affected", "justification": "component_not_present"},
	    {"vulnerability": {"name": "CVE-2024-0004"},
	     "products": [{"@id": "x", "hashes": {"sha-256": "` + strings.ToUpper(index.Encoded()) + `"}}],
	     "status": "not_affected", "impact_statement": "not reachable"},
	    {"vulnerability": {"name": "CVE-2024-0005"}, "products": [{"@id": "pkg:deb/debian/openssl"}],
	     "status": "not_affected", "timestamp": "2026-02-01T00:00:00Z", "justification": "inline_mitigations_already_exist"},
	    {"vulnerability": {"name": "CVE-2024-0005"}, "products": [{"@id": "pkg:deb/debian/openssl"}],
	     "status": "affected", "timestamp": "2026-03-01T00:00:00Z"},
	    {"vulnerability": {"name": "CVE-2024-0006"}, "products": [{"@id": "pkg:deb/debian/openssl"}],
	     "status": "affected", "timestamp": "2026-03-01T00:00:00Z"},
	    {"vulnerability": {"name": "CVE-2024-0006"}, "products": [{"@id": "pkg:deb/debian/openssl"}],
	     "status": "not_affected", "timestamp": "2026-03-01T00:00:00Z", "justification": "component_not_present"}
	  ]
	}`
	v, err := ParseOpenVEX([]byte(doc))
	require.NoError(t, err)
	require.Len(t, v.Statements, 8)

	// A v0.0.x document: string vulnerability and products, statement-level subcomponents.
	old, err := ParseOpenVEX([]byte(`{"@context":"https://openvex.dev/ns","@id":"old","timestamp":"2023-01-01T00:00:00Z",
	  "statements":[{"vulnerability":"CVE-2024-0007","products":["pkg:oci/app@` + img.String() + `"],
	  "subcomponents":["pkg:deb/debian/curl"],"status":"not_affected","justification":"component_not_present"}]}`))
	require.NoError(t, err)
	all := Merge(v, old)

	for _, tc := range []struct {
		name     string
		f        scan.Finding
		images   []digest.Digest
		suppress bool
	}{
		{"image purl + subcomponent", vexFinding("CVE-2024-0001", ssl, img), nil, true},
		{"alias names the vulnerability", vexFinding("GHSA-xxxx-yyyy-zzzz", ssl, img), nil, true},
		{"other image", vexFinding("CVE-2024-0001", ssl, other), nil, false},
		{"subcomponent is another package", vexFinding("CVE-2024-0001", curl, img), nil, false},
		{"image reference, whole image, fixed", vexFinding("CVE-2024-0002", curl, img), nil, true},
		{"qualifier mismatch (arch)", vexFinding("CVE-2024-0003", curl, img), nil, false},
		{"hash names the index the image came from", vexFinding("CVE-2024-0004", curl, img), []digest.Digest{index}, true},
		{"hash: not without the index", vexFinding("CVE-2024-0004", curl, img), nil, false},
		{"later statement wins (affected)", vexFinding("CVE-2024-0005", ssl, other), nil, false},
		{"same timestamp: later in document wins", vexFinding("CVE-2024-0006", ssl, other), nil, true},
		{"v0.0.x document", vexFinding("CVE-2024-0007", curl, img), nil, true},
		{"v0.0.x: other package", vexFinding("CVE-2024-0007", ssl, img), nil, false},
		{"unknown vulnerability", vexFinding("CVE-2099-1", ssl, img), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.suppress, all.Match(tc.f, tc.images...).Suppresses())
		})
	}
	s := all.Match(vexFinding("CVE-2024-0004", curl, img), index)
	require.Equal(t, "not reachable", s.Justification)
	require.Equal(t, "https://example.com/vex/1", s.DocID)
}

func TestOpenVEXErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":         `{`,
		"not openvex":      `{"bomFormat":"CycloneDX","statements":[]}`,
		"bad status":       `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"x"}],"status":"maybe"}]}`,
		"no products":      `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-1"},"status":"fixed"}]}`,
		"no vulnerability": `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"products":[{"@id":"x"}],"status":"fixed"}]}`,
		"empty product":    `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":"CVE-1","products":[{}],"status":"fixed"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseOpenVEX([]byte(doc))
			require.Error(t, err)
		})
	}
	_, err := ParseOpenVEX(make([]byte, MaxVEXBytes+1))
	require.Error(t, err)
}

func FuzzParseOpenVEX(f *testing.F) {
	f.Add([]byte(`{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-1","aliases":["A"]},"products":[{"@id":"pkg:oci/a@sha256%3A` + strings.Repeat("a", 64) + `","subcomponents":[{"@id":"pkg:deb/debian/x"}]}],"status":"not_affected"}]}`))
	f.Add([]byte(`{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-1","products":["pkg:npm/x@1"],"subcomponents":["y"],"status":"fixed"}]}`))
	fd := vexFinding("CVE-1", "pkg:deb/debian/x@1?arch=amd64", digest.Digest("sha256:"+strings.Repeat("a", 64)))
	fd.RelatedIDs = []string{"A"}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseOpenVEX(b)
		if err != nil {
			return
		}
		for _, s := range v.Statements {
			if s.Vulnerability == "" || len(s.Products) == 0 {
				t.Fatalf("accepted a statement without vulnerability or products: %+v", s)
			}
		}
		_ = v.Match(fd).Suppresses()
	})
}

func FuzzParseIgnore(f *testing.F) {
	f.Add("# c\nCVE-1\nGHSA-a exp:2026-01-01 # x\n\n")
	f.Add("CVE-1 exp:2026-13-01")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseIgnore(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range l.Entries {
			if e.ID == "" || strings.ContainsAny(e.ID, "# \t\n") {
				t.Fatalf("bad entry id %q", e.ID)
			}
			now := time.Time{}
			if e.Expires != nil {
				now = e.Expires.Add(-time.Second)
			}
			if l.Match(scan.Finding{VulnerabilityID: e.ID}, now) == nil {
				t.Fatalf("entry %q does not match its own id", e.ID)
			}
		}
	})
}
