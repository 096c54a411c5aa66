package lifecycle

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseInUsePayload: agents' payloads are untrusted. Parsing never
// panics, and an accepted payload's reports all satisfy the documented rules.
func FuzzParseInUsePayload(f *testing.F) {
	f.Add([]byte(`{"reports":[{"cluster":"prod","namespace":"shop","workload":"deploy/app","containerId":"c1","imageReference":"r.example:5000/team/app:1.0","observedAt":"2026-01-01T12:00:00Z"}]}`))
	f.Add([]byte(`{"reports":[{"cluster":"ecs-prod","namespace":"svc","workload":"task/app:3","containerId":"arn:aws:ecs:task/1","imageDigest":"sha256:a88fdf4d64dc577720d2410eb70774e4fcf7a7556c831df1825c4fade8172ebe"}]}`))
	f.Add([]byte(`{"reports":[]}`))
	f.Add([]byte(`{"reports":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseInUsePayload(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidReport) {
				t.Fatalf("error does not wrap ErrInvalidReport: %v", err)
			}
			return
		}
		if len(rs) > MaxReports {
			t.Fatalf("%d reports accepted", len(rs))
		}
		for _, r := range rs {
			if r.Cluster == "" || r.Workload == "" || r.ContainerID == "" || (r.ImageDigest == "" && r.ImageReference == "") {
				t.Fatalf("incomplete report accepted: %+v", r)
			}
		}
	})
}

// FuzzParseReference: references come from agents. Accepted ones give a
// non-empty repository without host, spaces or empty path components, and a
// tag or a digest.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"nginx", "nginx:1.25", "localhost:5000/team/app:v1", "r.example/a/b@sha256:a88fdf4d64dc577720d2410eb70774e4fcf7a7556c831df1825c4fade8172ebe", "a:b:c", "@", "x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		repo, tag, d, err := ParseReference(ref)
		if err != nil {
			return
		}
		if repo == "" || strings.Contains(repo, "//") || strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") || strings.ContainsAny(repo, " @") {
			t.Fatalf("bad repository %q from %q", repo, ref)
		}
		if tag == "" && d == "" {
			t.Fatalf("neither tag nor digest from %q", ref)
		}
		if d != "" {
			if err := d.Validate(); err != nil {
				t.Fatalf("invalid digest %q from %q", d, ref)
			}
		}
	})
}
