package lifecycle

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// The crash test re-executes this test binary as a child process that
// pushes images and scans them through a real Badger directory, kills it
// with SIGKILL mid-work, then restarts on the same directory and checks that
// no acknowledged push lost its scan and no finding was duplicated.

const (
	crashDirEnv   = "TOLLGATE_LIFECYCLE_CRASH_DIR"
	crashImages   = 60
	findingsPerIm = 3
)

// findingsScanner writes findingsPerIm findings under stable IDs, as the
// real matcher does, then reports the scan on out.
type findingsScanner struct {
	store *index.FindingStore
	out   func(string)
	mu    sync.Mutex
	calls map[digest.Digest]int
	pause time.Duration
}

func (f *findingsScanner) Scan(ctx context.Context, req ScanRequest) (Result, error) {
	var fs []scan.Finding
	for i := range findingsPerIm {
		fs = append(fs, scan.Finding{ID: fmt.Sprintf("%s-CVE-2026-%d", req.Image.Encoded()[:16], i), Image: req.Image,
			VulnerabilityID: fmt.Sprintf("CVE-2026-%d", i), Severity: scan.SeverityHigh,
			Package: scan.Package{Name: "pkg", Version: "1", Ecosystem: "Debian"}})
	}
	if _, err := f.store.Replace(ctx, req.Image, fs, time.Now()); err != nil {
		return Result{}, err
	}
	f.mu.Lock()
	if f.calls != nil {
		f.calls[req.Image]++
	}
	f.mu.Unlock()
	if f.out != nil {
		f.out("scanned " + req.Image.String())
	}
	select { // hold the lease a little: kills land mid-job
	case <-time.After(f.pause):
	case <-ctx.Done():
	}
	return Result{Reason: scan.ReasonSuccessful, Findings: len(fs)}, nil
}

func crashImage(i int) digest.Digest { return digest.FromString(fmt.Sprint("crash-image-", i)) }

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9DuringQueueWork")
	}
	ctx := context.Background()
	db, err := index.Open(dir, index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	records := index.NewRecords(db, index.RecordsOptions{})
	var mu sync.Mutex
	out := func(s string) { mu.Lock(); fmt.Println(s); mu.Unlock() }
	svc := New(Options{DB: db, Logger: zerolog.Nop(), Records: records, Recorder: records, Workers: 2, IdlePoll: 5 * time.Millisecond,
		Scanner: &findingsScanner{store: index.NewFindingStore(db), out: out, pause: 10 * time.Millisecond}})
	go func() { _ = svc.Run(ctx) }()
	for i := range crashImages {
		ev := index.Event{Kind: index.EventPush, Repository: "crash/app", Digest: crashImage(i), At: time.Now().UTC()}
		require.NoError(t, records.Record(ctx, ev))
		require.NoError(t, svc.Observe(ctx, ev))
		out(fmt.Sprint("pushed ", i)) // acknowledged to the client only now
		if i%3 == 0 {
			// A re-push and an advisory delta coalesce with queued work.
			require.NoError(t, svc.Observe(ctx, ev))
			_, err := svc.OnAdvisoryDelta(ctx, []digest.Digest{crashImage(i / 2)})
			require.NoError(t, err)
		}
	}
	out("all pushed")
	select {} // until killed
}

func TestKill9DuringQueueWork(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())

	pushed := map[digest.Digest]bool{}
	scanned := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		var i int
		if _, err := fmt.Sscanf(line, "pushed %d", &i); err == nil {
			pushed[crashImage(i)] = true
		}
		if strings.HasPrefix(line, "scanned ") {
			scanned++
		}
		// Kill while pushes and scans are both in flight.
		if len(pushed) >= crashImages/2 && scanned >= 10 {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.GreaterOrEqual(t, len(pushed), crashImages/2, "child output: the child died before the kill")
	t.Logf("killed after %d acknowledged pushes and %d scans", len(pushed), scanned)

	// Restart on the same directory.
	ctx := context.Background()
	db, err := index.Open(dir, index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	defer db.Close()
	records := index.NewRecords(db, index.RecordsOptions{})
	findings := index.NewFindingStore(db)
	sc2 := &findingsScanner{store: findings, calls: map[digest.Digest]int{}}
	svc := New(Options{DB: db, Logger: zerolog.Nop(), Records: records, Scanner: sc2, Workers: 2})
	_, err = svc.Recover(ctx)
	require.NoError(t, err)
	_, err = svc.Sweep(ctx) // re-queues a push recorded but not yet observed at the kill
	require.NoError(t, err)
	require.NoError(t, svc.Drain(ctx))

	n, err := svc.Queue().Len(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "queue drained")
	for d := range pushed {
		cov, err := svc.covs.Get(ctx, d)
		require.NoError(t, err, "acknowledged push %s lost its coverage", d)
		assert.Equal(t, index.StatusActive+"/"+string(scan.ReasonSuccessful), cov.StatusCode+"/"+string(cov.Reason), d.String())
		assert.NotNil(t, cov.LastScannedAt)
		fs, err := findings.ForImage(ctx, d)
		require.NoError(t, err)
		assert.Len(t, fs, findingsPerIm, "no duplicate or missing findings for %s", d)
		for _, f := range fs {
			assert.Equal(t, scan.FindingActive, f.Status)
		}
	}
	rescanned := 0
	for _, c := range sc2.calls {
		rescanned += c
	}
	t.Logf("after restart: %d images scanned (unscanned or in flight at the kill)", rescanned)
	assert.LessOrEqual(t, rescanned, crashImages, "each image scanned at most once after restart")
}
