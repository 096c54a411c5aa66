package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// DBSources lists the imported advisory sources (index.AdvisoryStore).
type DBSources interface {
	Sources(ctx context.Context) ([]index.AdvisorySource, error)
}

// DBStatusSource is one advisory source in GET /v1/db/status: what
// `tollgate db status` prints, and its age at the server's clock.
type DBStatusSource struct {
	index.AdvisorySource
	// AgeSeconds is how long before Now the source was last imported.
	AgeSeconds int64 `json:"ageSeconds"`
}

// DBStatusResponse is the answer of GET /v1/db/status.
type DBStatusResponse struct {
	// Now is the server's clock, against which ages are measured.
	Now time.Time `json:"now"`
	// Empty is true when no advisory data is imported: every scan then ends
	// SUCCESSFUL with no findings.
	Empty   bool             `json:"empty"`
	Sources []DBStatusSource `json:"sources"`
}

// DBStatusHandler serves GET /v1/db/status: `tollgate db status` for a
// running server, which holds the index's directory lock. It answers 200
// {"now","empty","sources":[…]} (per source: counts, newest modified,
// imported-at, origin, ageSeconds), 500 {"message"} when the store cannot
// be read. Mount it behind Auth.Wrap.
func DBStatusHandler(src DBSources, log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srcs, err := src.Sources(r.Context())
		if err != nil {
			log.Error().Err(err).Str("op", "db-status").Msg("listing advisory sources failed")
			writeServerJSON(w, http.StatusInternalServerError, map[string]string{"message": "advisory status: " + err.Error()})
			return
		}
		now := time.Now().UTC()
		out := DBStatusResponse{Now: now, Empty: len(srcs) == 0, Sources: make([]DBStatusSource, 0, len(srcs))}
		for _, s := range srcs {
			out.Sources = append(out.Sources, DBStatusSource{AdvisorySource: s, AgeSeconds: int64(s.Age(now) / time.Second)})
		}
		writeServerJSON(w, http.StatusOK, out)
	})
}
