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

func (f *fakeImporter) Import(_ context.Context, paths []string, merge bool) ([]index.UpdateResult, error) {
	var out []index.UpdateResult
	for _, path := range paths {
		f.paths = append(f.paths, path)
		switch path {
		case "/missing":
			return out, fmt.Errorf("%s: match: load: %w", path, fs.ErrNotExist)
		case "/broken":
			return append(out, index.UpdateResult{Source: "Go"}), fmt.Errorf("%s: %w", path, errors.New("disk full"))
		}
		out = append(out, index.UpdateResult{Source: "Alpine", Origin: path, Count: 1})
	}
	return out, nil
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
		{`{"paths":["/missing"]}`, 400, "no such file or directory on the server: /missing"},
		{`{"paths":["/a.json","/broken"]}`, 500, `"source":"Go"`},
		{`{"paths":["/a.json","/broken"]}`, 500, `"origin":"/a.json"`},
		{`{"paths":["/a.json","/broken"]}`, 500, `/broken: disk full`},
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
