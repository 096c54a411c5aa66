package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Export jobs: CreateSbomExport and CreateFindingsReport are asynchronous,
// as Inspector's (https://docs.aws.amazon.com/inspector/v2/APIReference/API_CreateSbomExport.html,
// API_CreateFindingsReport.html): Create validates its input, stores the
// status IN_PROGRESS and returns the reportId; the work runs in the
// background (RunExports) and GetSbomExport / GetFindingsReportStatus
// report IN_PROGRESS until it ends SUCCEEDED or FAILED.

const (
	// exportWorkers bounds the exports running at once.
	exportWorkers = 2
	// exportBacklog bounds the exports waiting for a worker; beyond it
	// Create answers ThrottlingException (429, which the SDKs retry).
	exportBacklog = 32
)

// exportJobs is the API's export queue and serialises status file writes.
type exportJobs struct {
	mu sync.Mutex // serialises writes of status files

	qmu     sync.Mutex // guards queue sends, pending and closed
	queue   chan exportJob
	pending map[string]bool // reportIds accepted and not finished
	closed  bool            // RunExports has ended: no more jobs
}

func newExportJobs() *exportJobs {
	return &exportJobs{queue: make(chan exportJob, exportBacklog), pending: map[string]bool{}}
}

// exportJob is one accepted export: its status (IN_PROGRESS) in dir, and
// the work that completes it. run sets st's final Status (and Files,
// ErrorCode, …); an error it returns makes the export FAILED with
// INTERNAL_ERROR.
type exportJob struct {
	dir string
	st  exportStatus
	run func(ctx context.Context, st *exportStatus) error
}

func errThrottled(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusTooManyRequests, Code: "ThrottlingException", Message: fmt.Sprintf(format, a...)}
}

// submitExport stores st (IN_PROGRESS) in dir and queues run for
// RunExports. ThrottlingException when exportBacklog exports are waiting;
// an error (InternalServerException) once RunExports has ended.
func (a *API) submitExport(dir string, st exportStatus, run func(ctx context.Context, st *exportStatus) error) error {
	j := a.exports
	j.qmu.Lock()
	if j.closed {
		j.qmu.Unlock()
		return errors.New("export: the server is shutting down")
	}
	j.pending[st.ReportID] = true
	j.qmu.Unlock()
	forget := func() {
		j.qmu.Lock()
		delete(j.pending, st.ReportID)
		j.qmu.Unlock()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		forget()
		return fmt.Errorf("export dir: %w", err)
	}
	st.Status = "IN_PROGRESS"
	if err := a.writeStatus(dir, st); err != nil {
		forget()
		return err
	}
	j.qmu.Lock()
	defer j.qmu.Unlock()
	if !j.closed {
		select {
		case j.queue <- exportJob{dir: dir, st: st, run: run}:
			return nil
		default:
		}
	}
	delete(j.pending, st.ReportID)
	_ = os.Remove(filepath.Join(dir, st.ReportID+".status.json"))
	if j.closed {
		return errors.New("export: the server is shutting down")
	}
	return errThrottled("%d exports are already waiting; retry later", exportBacklog)
}

// RunExports runs the queued CreateSbomExport and CreateFindingsReport
// work, at most exportWorkers (2) at a time, until ctx ends; `tollgate
// serve` runs it as a background task with the server's lifetime context.
// Create calls made before it starts are queued and run once it does.
// First, exports a previous process left IN_PROGRESS (their work died with
// it) are marked FAILED (INTERNAL_ERROR). When ctx ends, running exports
// see their context cancelled and end FAILED, queued ones are marked
// FAILED, later Create calls fail; RunExports returns ctx's error once its
// workers have stopped. Call it at most once per API.
func (a *API) RunExports(ctx context.Context) error {
	for _, dir := range []string{a.o.SBOMDir, a.o.ReportDir} {
		a.failInterrupted(dir)
	}
	var wg sync.WaitGroup
	for range exportWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-a.exports.queue:
					a.runExport(ctx, job)
				}
			}
		}()
	}
	wg.Wait()
	a.exports.qmu.Lock()
	a.exports.closed = true
	a.exports.qmu.Unlock()
	for {
		select {
		case job := <-a.exports.queue:
			a.finishExport(job, fmt.Errorf("not started: the server shut down: %w", ctx.Err()))
		default:
			return ctx.Err()
		}
	}
}

// runExport runs one job and stores its final status.
func (a *API) runExport(ctx context.Context, job exportJob) {
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("export panicked: %v", r)
			}
		}()
		return job.run(ctx, &job.st)
	}()
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted: the server shut down: %w", ctx.Err())
	}
	a.finishExport(job, err)
}

// finishExport stores job's final status: FAILED / INTERNAL_ERROR with
// err's message when err is set.
func (a *API) finishExport(job exportJob, err error) {
	st := job.st
	if err != nil {
		st.Status, st.ErrorCode, st.ErrorMessage = "FAILED", "INTERNAL_ERROR", err.Error()
		a.log.Error().Err(err).Str("report", st.ReportID).Msg("export failed")
	} else if st.Status == "IN_PROGRESS" {
		st.Status = "SUCCEEDED"
	}
	if werr := a.writeStatus(job.dir, st); werr != nil {
		a.log.Error().Err(werr).Str("report", st.ReportID).Msg("store export status")
	}
	a.exports.qmu.Lock()
	delete(a.exports.pending, st.ReportID)
	a.exports.qmu.Unlock()
}

// failInterrupted marks FAILED the exports in dir left IN_PROGRESS by an
// earlier process (not those queued by this one).
func (a *API) failInterrupted(dir string) {
	if dir == "" {
		return
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.status.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var st exportStatus
		if json.Unmarshal(b, &st) != nil || st.Status != "IN_PROGRESS" ||
			st.ReportID != strings.TrimSuffix(filepath.Base(p), ".status.json") {
			continue
		}
		a.exports.qmu.Lock()
		queued := a.exports.pending[st.ReportID]
		a.exports.qmu.Unlock()
		if queued {
			continue
		}
		st.Status, st.ErrorCode, st.ErrorMessage = "FAILED", "INTERNAL_ERROR", "interrupted: the server stopped before the export finished"
		if err := a.writeStatus(dir, st); err != nil {
			a.log.Error().Err(err).Str("report", st.ReportID).Msg("store export status")
		}
	}
}
