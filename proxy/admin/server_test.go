package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
)

func TestServerHealthReadyAndImages(t *testing.T) {
	db, err := index.Open(t.TempDir(), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs := index.NewRecords(db, index.RecordsOptions{})
	ctx := context.Background()
	for i := range 5 {
		repo := "a"
		if i >= 3 {
			repo = "b"
		}
		if err := recs.Record(ctx, index.Event{Kind: index.EventPush, Repository: repo, Digest: digest.FromString(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var readyErr error
	s := New(Options{DB: db, Records: recs, Ready: func(context.Context) error { return readyErr }})
	get := func(path string) (int, []byte) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.Bytes()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	readyErr = errors.New("registry down")
	if code, body := get("/readyz"); code != 503 {
		t.Fatalf("readyz when not ready: %d %s", code, body)
	}
	// Paginate all images two at a time.
	var all []index.ImageRecord
	tok := ""
	for {
		code, body := get("/v1/images?maxResults=2&nextToken=" + tok)
		if code != 200 {
			t.Fatalf("images %d %s", code, body)
		}
		var page ImagesPage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Images...)
		if page.NextToken == "" {
			break
		}
		tok = page.NextToken
	}
	if len(all) != 5 {
		t.Fatalf("%d images, want 5", len(all))
	}
	code, body := get("/v1/images?repository=b")
	var page ImagesPage
	_ = json.Unmarshal(body, &page)
	if code != 200 || len(page.Images) != 2 {
		t.Fatalf("repository filter: %d %s", code, body)
	}
	if code, _ := get("/v1/images?maxResults=0"); code != 400 {
		t.Fatalf("maxResults=0: %d", code)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	// Mounted routes are served next to the base ones.
	s.Handle("POST /x", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/x", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("mounted route: %d", rec.Code)
	}
	// Without records the listing says so.
	code, _ = get2(New(Options{}), "/v1/images")
	if code != 503 {
		t.Fatalf("no records: %d", code)
	}
}

func get2(s *Server, path string) (int, []byte) {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.Bytes()
}
