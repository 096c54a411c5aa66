package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan/match"
)

type failingSources struct{}

func (failingSources) Sources(context.Context) ([]index.AdvisorySource, error) {
	return nil, errors.New("disk on fire")
}

func getDBStatus(t *testing.T, h http.Handler) (int, DBStatusResponse, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/db/status", nil))
	var out DBStatusResponse
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("body %s: %v", rec.Body, err)
		}
	}
	return rec.Code, out, rec.Body.String()
}

func TestDBStatusHandler(t *testing.T) {
	db, err := index.Open(filepath.Join(t.TempDir(), "index"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := index.NewAdvisoryStore(db, zerolog.Nop())

	// Empty: says so, with an empty list (not null).
	code, out, body := getDBStatus(t, DBStatusHandler(store, zerolog.Nop()))
	if code != http.StatusOK || !out.Empty || out.Sources == nil || len(out.Sources) != 0 || !strings.Contains(body, `"sources":[]`) {
		t.Fatalf("empty db: %d %s", code, body)
	}

	modified := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	advs := []match.Advisory{{ID: "GO-2026-0001", Modified: modified, Affected: []match.Affected{{Package: match.AffectedPackage{Ecosystem: "Go", Name: "example.com/m"}}}}}
	if _, err := store.Import(context.Background(), "Go", advs, index.ImportOptions{Origin: "/feeds/go.zip"}); err != nil {
		t.Fatal(err)
	}
	code, out, body = getDBStatus(t, DBStatusHandler(store, zerolog.Nop()))
	if code != http.StatusOK || out.Empty || len(out.Sources) != 1 {
		t.Fatalf("one source: %d %s", code, body)
	}
	s := out.Sources[0]
	if s.Source != "Go" || s.Count != 1 || s.Packages != 1 || !s.NewestModified.Equal(modified) || s.Origin != "/feeds/go.zip" ||
		s.ImportedAt.IsZero() || out.Now.Before(s.ImportedAt) || s.AgeSeconds < 0 {
		t.Fatalf("source %s", body)
	}

	code, _, body = getDBStatus(t, DBStatusHandler(failingSources{}, zerolog.Nop()))
	if code != http.StatusInternalServerError || !strings.Contains(body, "message") {
		t.Fatalf("failing store: %d %s", code, body)
	}
}
