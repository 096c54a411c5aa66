package lifecycle

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// BenchmarkSweep100k times one eligibility sweep over 100,000 image
// records, all CONTINUOUS_SCAN and ACTIVE (the steady state: the sweep reads
// everything and writes nothing).
func BenchmarkSweep100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	db, err := index.Open(b.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	recs := newFakeRecords()
	covs := make([]*index.Coverage, 0, n)
	now := t0.Add(7 * day)
	for i := range n {
		d := digest.FromString(fmt.Sprint("bench-", i))
		pulled := t0.Add(time.Duration(i) * time.Second)
		recs.imgs[d] = &index.ImageRecord{Digest: d, Repos: []index.RepoImage{{
			Repository: fmt.Sprintf("team%d/app", i%50), Tags: []string{"v1"}, PushedAt: t0, LastPulledAt: &pulled, Status: index.ImageActive}}}
		last := t0
		covs = append(covs, &index.Coverage{Image: d, ScanType: ScanTypePackage, ScanFrequency: FreqContinuous,
			StatusCode: index.StatusActive, Reason: scan.ReasonSuccessful, LastScannedAt: &last, UpdatedAt: t0})
	}
	svc := New(Options{DB: db, Logger: zerolog.Nop(), Clock: &fakeClock{t: now}, Records: recs, Scanner: newFakeScanner()})
	if err := svc.covs.PutMany(ctx, covs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := svc.Sweep(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.Images != n || st.Expired != 0 || st.Backfilled != 0 {
			b.Fatalf("unexpected sweep: %+v", st)
		}
	}
	b.ReportMetric(float64(n), "images/sweep")
}

// BenchmarkQueueThroughput pushes b.N images through Observe (enqueue) and
// Drain (lease, no-op scan, coverage writes, ack) with 2 workers.
func BenchmarkQueueThroughput(b *testing.B) {
	ctx := context.Background()
	db, err := index.Open(b.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	recs := newFakeRecords()
	sc := newFakeScanner()
	svc := New(Options{DB: db, Logger: zerolog.Nop(), Clock: &fakeClock{t: t0}, Records: recs, Scanner: sc, Workers: 2})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := index.Event{Kind: index.EventPush, Repository: "bench/app", Digest: digest.FromString(fmt.Sprint("q-", i)), At: t0}
		if err := recs.Record(ctx, ev); err != nil {
			b.Fatal(err)
		}
		if err := svc.Observe(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := svc.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	if sc.Total() != b.N {
		b.Fatalf("scanned %d of %d", sc.Total(), b.N)
	}
}

// BenchmarkObservePull is the lifecycle's share of a pull of a covered image
// (the proxy calls Observe before sending the manifest body).
func BenchmarkObservePull(b *testing.B) {
	ctx := context.Background()
	svc, recs := observeBench(b)
	d := digest.FromString("pulled")
	ev := index.Event{Kind: index.EventPush, Repository: "bench/app", Digest: d, At: t0}
	if err := recs.Record(ctx, ev); err != nil {
		b.Fatal(err)
	}
	if err := svc.Observe(ctx, ev); err != nil {
		b.Fatal(err)
	}
	if err := svc.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	ev.Kind = index.EventPull
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := svc.Observe(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObservePush is the lifecycle's share of a manifest PUT of a new
// image (the proxy calls Observe before answering): coverage and the scan
// job written.
func BenchmarkObservePush(b *testing.B) {
	ctx := context.Background()
	svc, recs := observeBench(b)
	evs := make([]index.Event, b.N)
	for i := range evs {
		evs[i] = index.Event{Kind: index.EventPush, Repository: "bench/app", Digest: digest.FromString(fmt.Sprint("pushed", i)), At: t0}
		if err := recs.Record(ctx, evs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := svc.Observe(ctx, evs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// observeBench is a Service on a real Badger in a temp dir with fake
// records and scanner, for the Observe benchmarks.
func observeBench(b *testing.B) (*Service, *fakeRecords) {
	b.Helper()
	db, err := index.Open(b.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	recs := newFakeRecords()
	return New(Options{DB: db, Logger: zerolog.Nop(), Clock: &fakeClock{t: t0}, Records: recs, Scanner: newFakeScanner()}), recs
}
