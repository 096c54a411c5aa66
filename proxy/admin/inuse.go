package admin

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/rs/zerolog"
)

// InUseReporter records runtime in-use reports (Lifecycle implements it).
type InUseReporter interface {
	// ReportInUse parses and records an agent's payload; an *InputError
	// when the payload is invalid.
	ReportInUse(ctx context.Context, payload []byte) error
}

// maxInUseBytes caps an in-use payload (10,000 reports of small fields).
const maxInUseBytes = 16 << 20

// InUseHandler serves POST /v1/inuse, tollgate's own endpoint for runtime
// in-use reports (neither Inspector nor ECR has one). The body is
//
//	{"reports":[{"cluster":"prod","namespace":"web","workload":"frontend",
//	  "containerId":"…","imageDigest":"sha256:…" | "imageReference":"repo:tag",
//	  "observedAt":"2026-03-01T12:00:00Z"}]}
//
// It answers 204 when recorded, 400 {"message"} when invalid. Mount it
// behind Auth.Wrap.
func InUseHandler(rep InUseReporter, log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxInUseBytes+1))
		if err == nil && len(b) > maxInUseBytes {
			err = &InputError{Message: "payload larger than 16 MiB"}
		}
		if err == nil {
			err = rep.ReportInUse(r.Context(), b)
		}
		var ie *InputError
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.As(err, &ie):
			writeServerJSON(w, http.StatusBadRequest, map[string]string{"message": ie.Message})
		default:
			log.Error().Err(err).Str("op", "inuse").Msg("recording in-use reports")
			writeServerJSON(w, http.StatusInternalServerError, map[string]string{"message": "internal error"})
		}
	})
}
