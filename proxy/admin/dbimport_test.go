package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

type fakeImporter struct{ paths []string }

func (f *fakeImporter) Import(_ context.Context, path string, merge bool) ([]index.UpdateResult, error) {
	f.paths = append(f.paths, path)
	switch path {
	case "/missing":
		return nil, fmt.Errorf("match: load: %w", fs.ErrNotExist)
	case "/broken":
		return []index.UpdateResult{{Source: "Go"}}, errors.New("disk full")
	}
	return []index.UpdateResult{{Source: "Alpine", Origin: path, Count: 1}}, nil
}

func TestDBImportHandler(t *testing.T) {
	cases := []struct {
		body   string
		status int
		want   string
	}{
		{`{"paths":["/a.json","/b.zip"]}`, 200, `"origin":"/b.zip"`},
		{`{"paths":["rel.json"]}`, 400, "absolute"},
		{`{"paths":[]}`, 400, "at least one"},
		{`{"path":"/a"}`, 400, "invalid body"},
		{`{"paths":["/missing"]}`, 400, "no such file"},
		{`{"paths":["/a.json","/broken"]}`, 500, `"source":"Go"`},
	}
	for _, c := range cases {
		imp := &fakeImporter{}
		rec := httptest.NewRecorder()
		DBImportHandler(imp, zerolog.Nop()).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/db/import", strings.NewReader(c.body)))
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d %s; want %d containing %s", c.body, rec.Code, rec.Body, c.status, c.want)
		}
	}
}
