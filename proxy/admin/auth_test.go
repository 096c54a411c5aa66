package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan"
)

// signed builds a request to path with body, signed by the SDK's own SigV4
// signer at signTime with the given secret, then lets mutate change it.
func signed(t *testing.T, secret string, signTime time.Time, path, body string, mutate func(r *http.Request)) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://admin.test"+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: secret},
		r, hex.EncodeToString(sum[:]), "inspector2", "eu-west-1", signTime)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = readCloser(body)
	if mutate != nil {
		mutate(r)
	}
	return r
}

func readCloser(s string) *nopCloser { return &nopCloser{strings.NewReader(s)} }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func TestSigV4Verification(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, err := NewAuth(AuthOptions{AccessKeys: map[string]string{testKeyID: testSecret}, Logger: zerolog.Nop(),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		wantOK bool
	}{
		{"valid", signed(t, testSecret, now, "/findings/list", `{"maxResults":5}`, nil), true},
		{"valid with query", signed(t, testSecret, now, "/findings/list?b=2&a=1%202", `{}`, nil), true},
		{"14 minutes old", signed(t, testSecret, now.Add(-14*time.Minute), "/findings/list", `{}`, nil), true},
		{"16 minutes old", signed(t, testSecret, now.Add(-16*time.Minute), "/findings/list", `{}`, nil), false},
		{"16 minutes ahead", signed(t, testSecret, now.Add(16*time.Minute), "/findings/list", `{}`, nil), false},
		{"wrong secret", signed(t, testSecret+"x", now, "/findings/list", `{}`, nil), false},
		{"body changed", signed(t, testSecret, now, "/findings/list", `{"maxResults":5}`, func(r *http.Request) {
			r.Body = readCloser(`{"maxResults":6}`)
		}), false},
		{"path changed", signed(t, testSecret, now, "/findings/list", `{}`, func(r *http.Request) { r.URL.Path = "/filters/delete" }), false},
		{"signed header changed", signed(t, testSecret, now, "/findings/list", `{}`, func(r *http.Request) {
			r.Header.Set("Content-Type", "text/plain")
		}), false},
		{"host changed", signed(t, testSecret, now, "/findings/list", `{}`, func(r *http.Request) { r.Host = "evil.test" }), false},
		{"unknown key", signed(t, testSecret, now, "/findings/list", `{}`, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), testKeyID, "AKIAOTHER00000000000", 1))
		}), false},
		{"date header changed", signed(t, testSecret, now, "/findings/list", `{}`, func(r *http.Request) {
			r.Header.Set("X-Amz-Date", now.Add(time.Minute).Format("20060102T150405Z"))
		}), false},
		{"payload hash header lies", signed(t, testSecret, now, "/findings/list", `{}`, func(r *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", sixtyFourZeros)
		}), false},
		{"bearer without token configured", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/findings/list", nil)
			r.Header.Set("Authorization", "Bearer ")
			return r
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Check(tc.req)
			if (err == nil) != tc.wantOK {
				t.Fatalf("Check = %v, want ok=%v", err, tc.wantOK)
			}
			if err != nil && !errors.Is(err, errUnauthenticated) {
				t.Fatalf("error does not wrap errUnauthenticated: %v", err)
			}
		})
	}
}

func TestWrapAnswers401AndNothingElse(t *testing.T) {
	a, _ := NewAuth(AuthOptions{Token: "t", Logger: zerolog.Nop()})
	called := false
	h := a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/findings/list", strings.NewReader("{}")))
	if rec.Code != http.StatusUnauthorized || called || strings.Contains(rec.Body.String(), "finding") {
		t.Fatalf("code %d, handler called %v, body %q", rec.Code, called, rec.Body.String())
	}
}

func TestEnsureTokenFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, path, created, err := EnsureTokenFile(dir)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("first: %q %v %v", tok, created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", st.Mode(), err)
	}
	tok2, _, created, err := EnsureTokenFile(dir)
	if err != nil || created || tok2 != tok {
		t.Fatalf("second: %q %v %v", tok2, created, err)
	}
	if got, err := ReadTokenFile(dir); err != nil || got != tok {
		t.Fatalf("ReadTokenFile: %q %v", got, err)
	}
	if _, err := ReadTokenFile(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSBOMHandler(t *testing.T) {
	s := newFakeStore()
	seed(s)
	api := testAPI(t, s)
	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"image=app:v1&format=spdx", 200, `"SPDX_2_3"`},
		{"image=app@" + dgst(2).String(), 200, `"CYCLONEDX_1_4"`},
		{"image=app:nope", 404, "no image"},
		{"image=nope:v1", 404, "does not exist"},
		{"image=app:v1&format=xml", 400, "format"},
	} {
		rec := httptest.NewRecorder()
		api.SBOMHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sbom?"+tc.query, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: %d %s", tc.query, rec.Code, rec.Body.String())
		}
	}
}

func TestParseImageRef(t *testing.T) {
	d := dgst(1)
	for _, tc := range []struct{ ref, repo, tag, dg string }{
		{"app", "app", "latest", ""},
		{"team/app:v1", "team/app", "v1", ""},
		{"team/app@" + d.String(), "team/app", "", d.String()},
		{"team/app:v1@" + d.String(), "team/app", "", d.String()},
		{"app@sha256:bad", "", "", ""},
		{":v1", "", "", ""},
	} {
		repo, tag, dg := ParseImageRef(tc.ref)
		if repo != tc.repo || tag != tc.tag || dg.String() != tc.dg {
			t.Errorf("ParseImageRef(%q) = %q %q %q", tc.ref, repo, tag, dg)
		}
	}
}

func TestProtectGuardsImagesNotHealth(t *testing.T) {
	a, _ := NewAuth(AuthOptions{Token: "t", Logger: zerolog.Nop()})
	srv := New(Options{Logger: zerolog.Nop()})
	srv.Protect(a)
	for _, tc := range []struct {
		path, token string
		code        int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/v1/images", "", 401},
		{"/v1/images", "t", 503}, // authenticated; no records in this test
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.token != "" {
			r.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		if rec.Code != tc.code {
			t.Errorf("%s (token %q): %d, want %d", tc.path, tc.token, rec.Code, tc.code)
		}
	}
}

type fakeReporter struct{ got []byte }

func (f *fakeReporter) ReportInUse(ctx context.Context, b []byte) error {
	if !strings.Contains(string(b), "reports") {
		return &InputError{Message: "want reports"}
	}
	f.got = b
	return nil
}

func TestInUseHandler(t *testing.T) {
	rep := &fakeReporter{}
	h := InUseHandler(rep, zerolog.Nop())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/inuse", strings.NewReader(`{"reports":[]}`)))
	if rec.Code != http.StatusNoContent || string(rep.got) != `{"reports":[]}` {
		t.Fatalf("valid: %d %q", rec.Code, rep.got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/inuse", strings.NewReader(`{}`)))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "want reports") {
		t.Fatalf("invalid: %d %s", rec.Code, rec.Body.String())
	}
}

type storeForImage struct{ *fakeStore }

func (s storeForImage) ForImage(ctx context.Context, d digest.Digest) ([]scan.Finding, error) {
	var out []scan.Finding
	err := s.Each(ctx, func(f scan.Finding) error {
		if f.Image == d {
			out = append(out, f)
		}
		return nil
	})
	return out, err
}

func TestSuppressedCounts(t *testing.T) {
	s := newFakeStore()
	seed(s)
	api := testAPI(t, s)
	ctx := context.Background()
	sc := SuppressedCounts{API: api, Findings: storeForImage{s}}
	counts := func() map[scan.Severity]int {
		c, err := sc.Counts(ctx, dgst(1))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := counts(); c[scan.SeverityCritical] != 1 || c[scan.SeverityHigh] != 1 {
		t.Fatalf("no rules: %v", c)
	}
	create := func(name, criteria string) string {
		out, err := api.createFilter(ctx, []byte(`{"name":"`+name+`","action":"SUPPRESS","filterCriteria":`+criteria+`}`))
		if err != nil {
			t.Fatal(err)
		}
		return out.(map[string]string)["arn"]
	}
	// Suppressed in "app" only: image 1 also lives in "mirror/app", so it still counts.
	create("app-only", `{"vulnerabilityId":[{"comparison":"EQUALS","value":"CVE-2024-0001"}],"ecrImageRepositoryName":[{"comparison":"EQUALS","value":"app"}]}`)
	if c := counts(); c[scan.SeverityCritical] != 1 {
		t.Fatalf("suppressed in one of two repositories: %v", c)
	}
	arn := create("everywhere", `{"vulnerabilityId":[{"comparison":"EQUALS","value":"CVE-2024-0001"}]}`)
	if c := counts(); c[scan.SeverityCritical] != 0 || c[scan.SeverityHigh] != 1 {
		t.Fatalf("suppressed everywhere: %v", c)
	}
	if _, err := api.deleteFilter(ctx, []byte(`{"arn":"`+arn+`"}`)); err != nil {
		t.Fatal(err)
	}
	if c := counts(); c[scan.SeverityCritical] != 1 {
		t.Fatalf("after the rule went: %v", c)
	}
}
