package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// DBImporter imports advisories from paths on the server (directories,
// zips, or single OSV JSON/YAML or Alpine secdb files), in order and as one
// import (index.ImportBatch: a source in several paths holds their union),
// and applies the deltas (rescans). An error names the path it concerns; a
// path that does not exist gives an error wrapping fs.ErrNotExist.
type DBImporter interface {
	Import(ctx context.Context, paths []string, merge bool) ([]index.UpdateResult, error)
}

// DBImportRequest is the body of POST /v1/db/import.
type DBImportRequest struct {
	// Paths are absolute paths on the server, imported in order.
	Paths []string `json:"paths"`
	// Merge keeps the advisories of the sources a directory or zip does
	// not name (single files always merge).
	Merge bool `json:"merge,omitempty"`
}

// DBImportResponse is the answer of POST /v1/db/import.
type DBImportResponse struct {
	Results []index.UpdateResult `json:"results"`
}

// DBImportHandler serves POST /v1/db/import: `tollgate db import` for a
// running server, which holds the index's directory lock (the CLI cannot
// open it then). The body is {"paths":["/abs/path",…],"merge":false}; it
// answers 200 {"results":[…]} (index.UpdateResult per source), 400
// {"message"} for a bad body or a path that does not exist, 500 when an
// import failed (the results so far are included). Mount it behind Auth.Wrap.
func DBImportHandler(imp DBImporter, log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req DBImportRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeServerJSON(w, http.StatusBadRequest, map[string]string{"message": "invalid body: " + err.Error()})
			return
		}
		if len(req.Paths) == 0 {
			writeServerJSON(w, http.StatusBadRequest, map[string]string{"message": "paths: at least one path is required"})
			return
		}
		for _, p := range req.Paths {
			if !filepath.IsAbs(p) {
				writeServerJSON(w, http.StatusBadRequest, map[string]string{"message": "paths: not an absolute path on the server: " + p})
				return
			}
		}
		out := DBImportResponse{Results: []index.UpdateResult{}}
		rs, err := imp.Import(r.Context(), req.Paths, req.Merge)
		out.Results = append(out.Results, rs...)
		switch {
		case err == nil:
			writeServerJSON(w, http.StatusOK, out)
		case errors.Is(err, fs.ErrNotExist):
			writeServerJSON(w, http.StatusBadRequest, map[string]string{"message": "no such file or directory on the server: " + err.Error()})
		default:
			log.Error().Err(err).Str("op", "db-import").Strs("paths", req.Paths).Msg("advisory import failed")
			writeServerJSON(w, http.StatusInternalServerError, struct {
				Message string `json:"message"`
				DBImportResponse
			}{"import failed: " + err.Error(), out})
		}
	})
}
