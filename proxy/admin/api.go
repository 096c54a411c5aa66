package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// APIOptions configures NewAPI. Every source is optional: operations that
// need a missing one answer ValidationException ("… is not available").
type APIOptions struct {
	Findings FindingSource
	Images   ImageSource
	Coverage CoverageSource
	Config   ConfigStore
	Filters  FilterStore
	Scanner  Scanner
	Archiver Archiver
	Deleter  Deleter
	InUse    InUseSource
	SBOM     SBOMExporter

	// Region and AccountID appear in ARNs and ECR registry ids
	// (defaults "us-east-1" and "000000000000").
	Region    string
	AccountID string
	// SBOMDir and ReportDir receive CreateSbomExport and
	// CreateFindingsReport output (instead of S3). Empty disables them.
	SBOMDir   string
	ReportDir string

	Logger zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// API serves the Amazon Inspector (inspector2, restJson1) operations at
// their SDK paths (POST /findings/list, …) and the ECR (awsJson1_1)
// operations at POST / with X-Amz-Target
// AmazonEC2ContainerRegistry_V20150921.<Operation>. It does not
// authenticate: wrap it with Auth.Wrap.
type API struct {
	o       APIOptions
	log     zerolog.Logger
	inspOps map[string]func(ctx context.Context, body []byte) (any, error)
	ecrOps  map[string]func(ctx context.Context, body []byte) (any, error)
	exports *exportJobs
}

// maxRequestBytes caps request bodies (the API's inputs are small).
const maxRequestBytes = 1 << 20

// NewAPI returns the API handler.
func NewAPI(o APIOptions) *API {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.AccountID == "" {
		o.AccountID = "000000000000"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &API{o: o, log: o.Logger.With().Str("op", "admin").Logger(), exports: newExportJobs()}
	a.inspOps = map[string]func(context.Context, []byte) (any, error){
		"/findings/list":              a.listFindings,
		"/findings/details/batch/get": a.batchGetFindingDetails,
		"/findings/aggregation/list":  a.listFindingAggregations,
		"/coverage/list":              a.listCoverage,
		"/coverage/statistics/list":   a.listCoverageStatistics,
		"/configuration/get":          a.getConfiguration,
		"/configuration/update":       a.updateConfiguration,
		"/filters/create":             a.createFilter,
		"/filters/list":               a.listFilters,
		"/filters/update":             a.updateFilter,
		"/filters/delete":             a.deleteFilter,
		"/sbomexport/create":          a.createSbomExport,
		"/sbomexport/get":             a.getSbomExport,
		"/reporting/create":           a.createFindingsReport,
		"/reporting/status/get":       a.getFindingsReportStatus,
		"/cluster/get":                a.getClustersForImage,
	}
	a.ecrOps = a.ecrOperations()
	return a
}

// Handles reports whether r is an API request (so a router can send the
// rest elsewhere).
func (a *API) Handles(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	if r.URL.Path == "/" {
		return r.Header.Get("X-Amz-Target") != ""
	}
	_, ok := a.inspOps[r.URL.Path]
	return ok
}

// ServeHTTP dispatches to the Inspector or ECR operation.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && r.Header.Get("X-Amz-Target") != "" {
		a.serveECR(w, r)
		return
	}
	op, ok := a.inspOps[r.URL.Path]
	if !ok || r.Method != http.MethodPost {
		writeRestJSONError(w, &APIError{Status: http.StatusNotFound, Code: "UnknownOperationException",
			Message: fmt.Sprintf("no operation at %s %s", r.Method, r.URL.Path)})
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeRestJSONError(w, toAPIError(err, "InternalServerException"))
		return
	}
	out, err := op(r.Context(), body)
	if err != nil {
		ae := toAPIError(err, "InternalServerException")
		if ae.Status >= 500 {
			a.log.Error().Err(err).Str("path", r.URL.Path).Msg("inspector2 operation failed")
		}
		writeRestJSONError(w, ae)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if out == nil {
		out = struct{}{}
	}
	if err := json.NewEncoder(w).Encode(out); err != nil {
		a.log.Debug().Err(err).Msg("write response")
	}
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		return nil, errValidation("reading request: %v", err)
	}
	if len(b) > maxRequestBytes {
		return nil, errValidation("request body larger than %d bytes", maxRequestBytes)
	}
	return b, nil
}

// decodeInput unmarshals a request body (empty means {}) into v.
func decodeInput(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae
		}
		return errValidation("invalid request: %v", err)
	}
	return nil
}

func unavailable(what string) error {
	return errValidation("%s is not available on this tollgate", what)
}

// maxResults validates an optional page size: default def, range 1..max.
func maxResults(p *int, def, max int) (int, error) {
	if p == nil {
		return def, nil
	}
	if *p < 1 || *p > max {
		return 0, errValidation("maxResults %d: want 1 to %d", *p, max)
	}
	return *p, nil
}
