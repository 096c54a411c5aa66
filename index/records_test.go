package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

func openRecordsDB(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func recDg(s string) digest.Digest { return digest.FromString(s) }

var recT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func recAt(min int) time.Time { return recT0.Add(time.Duration(min) * time.Minute) }

func TestRecordsEventSequences(t *testing.T) {
	indexManifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":10,"platform":{"os":"linux","architecture":"amd64"}},
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":11,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`,
		recDg("amd64"), recDg("arm64"))
	type check func(t *testing.T, r *Records)
	cases := []struct {
		name   string
		events []Event
		check  check
	}{
		{
			name: "push then pulls; HEAD is not an event",
			events: []Event{
				{Kind: EventPush, Repository: "app", Digest: recDg("a"), Tag: "v1", MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 42, At: recAt(0)},
				{Kind: EventPull, Repository: "app", Digest: recDg("a"), Tag: "v1", At: recAt(5)},
				{Kind: EventPull, Repository: "app", Digest: recDg("a"), At: recAt(3)}, // out of order
			},
			check: func(t *testing.T, r *Records) {
				rec, err := r.Get(context.Background(), recDg("a"))
				if err != nil {
					t.Fatal(err)
				}
				ri := rec.Repo("app")
				if rec.Size != 42 || ri.PullCount != 2 || !ri.LastPulledAt.Equal(recAt(5)) || !ri.PushedAt.Equal(recAt(0)) || ri.Status != ImageActive {
					t.Fatalf("%+v %+v", rec, ri)
				}
			},
		},
		{
			name: "seen (a mirror's manifest the policy evaluates) records the image, not a pull",
			events: []Event{
				{Kind: EventSeen, Repository: "free/app", Digest: recDg("s"), Tag: "v1", MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 7, Mirror: true, At: recAt(0)},
				{Kind: EventSeen, Repository: "free/app", Digest: recDg("s"), Tag: "v1", Mirror: true, At: recAt(1)},
			},
			check: func(t *testing.T, r *Records) {
				ctx := context.Background()
				rec, err := r.Get(ctx, recDg("s"))
				if err != nil {
					t.Fatal(err)
				}
				ri := rec.Repo("free/app")
				if ri == nil || ri.PullCount != 0 || ri.LastPulledAt != nil || len(ri.Tags) != 1 || ri.Tags[0] != "v1" || rec.Size != 7 {
					t.Fatalf("%+v %+v", rec, ri)
				}
				if d, err := r.Tag(ctx, "free/app", "v1"); err != nil || d != recDg("s") {
					t.Fatalf("tag: %s %v", d, err)
				}
				if err := r.Record(ctx, Event{Kind: EventPull, Repository: "free/app", Digest: recDg("s"), Mirror: true, At: recAt(2)}); err != nil {
					t.Fatal(err)
				}
				rec, _ = r.Get(ctx, recDg("s"))
				if ri := rec.Repo("free/app"); ri.PullCount != 1 || !ri.LastPulledAt.Equal(recAt(2)) {
					t.Fatalf("after the pull: %+v", ri)
				}
			},
		},
		{
			name: "tag moves keep history",
			events: []Event{
				{Kind: EventPush, Repository: "app", Digest: recDg("a"), Tag: "latest", At: recAt(0)},
				{Kind: EventPush, Repository: "app", Digest: recDg("b"), Tag: "latest", At: recAt(1)},
				{Kind: EventPush, Repository: "app", Digest: recDg("b"), Tag: "latest", At: recAt(2)}, // same: no history
				{Kind: EventPush, Repository: "app/sub", Digest: recDg("c"), Tag: "latest", At: recAt(3)},
			},
			check: func(t *testing.T, r *Records) {
				ctx := context.Background()
				a, _ := r.Get(ctx, recDg("a"))
				b, _ := r.Get(ctx, recDg("b"))
				if len(a.Repo("app").Tags) != 0 || len(b.Repo("app").Tags) != 1 {
					t.Fatalf("tags a=%v b=%v", a.Repo("app").Tags, b.Repo("app").Tags)
				}
				h, err := r.TagHistory(ctx, "app", "latest")
				if err != nil || len(h) != 2 || h[0].Digest != recDg("a") || h[1].Previous != recDg("a") || h[1].Digest != recDg("b") {
					t.Fatalf("history %+v %v", h, err)
				}
				if d, err := r.Tag(ctx, "app", "latest"); err != nil || d != recDg("b") {
					t.Fatalf("tag %s %v", d, err)
				}
				repos, _ := r.ListRepositories(ctx)
				if len(repos) != 2 || repos[0] != "app" || repos[1] != "app/sub" {
					t.Fatalf("repos %v", repos)
				}
			},
		},
		{
			name: "index fills children and parents",
			events: []Event{
				{Kind: EventPush, Repository: "multi", Digest: recDg("amd64"), At: recAt(0)},
				{Kind: EventPush, Repository: "multi", Digest: recDg("idx"), Tag: "v1", Manifest: []byte(indexManifest), At: recAt(1)},
			},
			check: func(t *testing.T, r *Records) {
				ctx := context.Background()
				idx, _ := r.Get(ctx, recDg("idx"))
				if !idx.Index || len(idx.Children) != 2 || idx.Children[1].Platform.Variant != "v8" || idx.MediaType != "application/vnd.oci.image.index.v1+json" {
					t.Fatalf("index %+v", idx)
				}
				for _, c := range []string{"amd64", "arm64"} {
					ch, err := r.Get(ctx, recDg(c))
					if err != nil || len(ch.Parents) != 1 || ch.Parents[0] != recDg("idx") || ch.Repo("multi") == nil {
						t.Fatalf("child %s: %+v %v", c, ch, err)
					}
				}
			},
		},
		{
			name: "delete by digest and by tag; re-push revives",
			events: []Event{
				{Kind: EventPush, Repository: "app", Digest: recDg("a"), Tag: "v1", At: recAt(0)},
				{Kind: EventPush, Repository: "app", Digest: recDg("a"), Tag: "v2", At: recAt(1)},
				{Kind: EventDelete, Repository: "app", Tag: "v2", At: recAt(2)},
				{Kind: EventPush, Repository: "other", Digest: recDg("a"), At: recAt(2)},
				{Kind: EventDelete, Repository: "app", Digest: recDg("a"), At: recAt(3)},
			},
			check: func(t *testing.T, r *Records) {
				ctx := context.Background()
				rec, _ := r.Get(ctx, recDg("a"))
				ri := rec.Repo("app")
				if !ri.Deleted || len(ri.Tags) != 0 || rec.Repo("other").Deleted {
					t.Fatalf("%+v", rec)
				}
				if _, err := r.Tag(ctx, "app", "v1"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("tag v1 survived delete: %v", err)
				}
				if _, err := r.Status(ctx, "app", recDg("a")); !errors.Is(err, ErrNotFound) {
					t.Fatalf("status of deleted: %v", err)
				}
				if err := r.Record(ctx, Event{Kind: EventPush, Repository: "app", Digest: recDg("a"), Tag: "v3", At: recAt(9)}); err != nil {
					t.Fatal(err)
				}
				rec, _ = r.Get(ctx, recDg("a"))
				if ri := rec.Repo("app"); ri.Deleted || !ri.PushedAt.Equal(recAt(9)) || ri.Tags[0] != "v3" {
					t.Fatalf("revive %+v", ri)
				}
			},
		},
		{
			name: "archive and restore",
			events: []Event{
				{Kind: EventPush, Repository: "app", Digest: recDg("a"), At: recAt(0)},
				{Kind: EventArchive, Repository: "app", Digest: recDg("a"), At: recAt(1)},
			},
			check: func(t *testing.T, r *Records) {
				ctx := context.Background()
				if st, _ := r.Status(ctx, "app", recDg("a")); st != ImageArchived {
					t.Fatalf("status %s", st)
				}
				if err := r.SetStatus(ctx, "app", recDg("a"), ImageActive); err != nil {
					t.Fatal(err)
				}
				if st, _ := r.Status(ctx, "app", recDg("a")); st != ImageActive {
					t.Fatalf("status %s", st)
				}
				if err := r.SetStatus(ctx, "nope", recDg("a"), ImageArchived); !errors.Is(err, ErrNotFound) {
					t.Fatalf("archive in unknown repo: %v", err)
				}
				if err := r.SetStatus(ctx, "app", recDg("a"), "FROZEN"); err == nil {
					t.Fatal("invalid status accepted")
				}
			},
		},
		{
			name: "mirror pull creates the record; malformed manifest still recorded",
			events: []Event{
				{Kind: EventPull, Repository: "docker.io/library/alpine", Digest: recDg("m"), Tag: "3", Mirror: true, Manifest: []byte("{not json"), At: recAt(0)},
			},
			check: func(t *testing.T, r *Records) {
				rec, err := r.Get(context.Background(), recDg("m"))
				if err != nil || rec.Repo("docker.io/library/alpine").PullCount != 1 || rec.Repo("docker.io/library/alpine").Tags[0] != "3" {
					t.Fatalf("%+v %v", rec, err)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := openRecordsDB(t, t.TempDir())
			defer db.Close()
			r := NewRecords(db, RecordsOptions{})
			for _, ev := range c.events {
				if err := r.Record(context.Background(), ev); err != nil {
					t.Fatalf("%+v: %v", ev, err)
				}
			}
			c.check(t, r)
		})
	}
}

func TestRecordsListPaginatesAndSurvivesReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	db := openRecordsDB(t, dir)
	r := NewRecords(db, RecordsOptions{})
	ctx := context.Background()
	for i := range 25 {
		repo := "even"
		if i%2 == 1 {
			repo = "odd"
		}
		if err := r.Record(ctx, Event{Kind: EventPush, Repository: repo, Digest: recDg(fmt.Sprint(i)), At: recAt(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openRecordsDB(t, dir)
	defer db.Close()
	r = NewRecords(db, RecordsOptions{})
	for _, c := range []struct {
		repo string
		want int
	}{{"", 25}, {"even", 13}, {"odd", 12}, {"ev", 0}} {
		var all []ImageRecord
		var tok digest.Digest
		pages := 0
		for {
			recs, next, err := r.List(ctx, ListOptions{Repository: c.repo, After: tok, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, recs...)
			pages++
			if next == "" {
				break
			}
			tok = next
		}
		if len(all) != c.want {
			t.Fatalf("repo %q: %d records over %d pages, want %d", c.repo, len(all), pages, c.want)
		}
		seen := map[digest.Digest]bool{}
		for i, rec := range all {
			if seen[rec.Digest] || (i > 0 && all[i-1].Digest >= rec.Digest) {
				t.Fatalf("repo %q: duplicate or unordered %s", c.repo, rec.Digest)
			}
			seen[rec.Digest] = true
			if c.repo != "" && rec.Repo(c.repo) == nil {
				t.Fatalf("repo %q: listed %s from elsewhere", c.repo, rec.Digest)
			}
		}
	}
	n := 0
	if err := r.EachImage(ctx, func(*ImageRecord) error { n++; return nil }); err != nil || n != 25 {
		t.Fatalf("EachImage %d %v", n, err)
	}
}

func TestRecordsInTxnHookIsAtomic(t *testing.T) {
	db := openRecordsDB(t, t.TempDir())
	defer db.Close()
	boom := errors.New("boom")
	r := NewRecords(db, RecordsOptions{InTxn: func(_ *badger.Txn, ev Event, _ *ImageRecord) error {
		if ev.Tag == "fail" {
			return boom
		}
		return nil
	}})
	ctx := context.Background()
	if err := r.Record(ctx, Event{Kind: EventPush, Repository: "app", Digest: recDg("x"), Tag: "fail"}); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if _, err := r.Get(ctx, recDg("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record written although the hook failed: %v", err)
	}
	if _, err := r.Tag(ctx, "app", "fail"); !errors.Is(err, ErrNotFound) {
		t.Fatal("tag written although the hook failed")
	}
}

func TestReferrersFromRecords(t *testing.T) {
	db := openRecordsDB(t, t.TempDir())
	defer db.Close()
	r := NewRecords(db, RecordsOptions{})
	refs := NewReferrers(db)
	ctx := context.Background()
	subj := recDg("subject")
	art := func(at, cfg string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,
			"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1}}`,
			at, cfg, recDg("cfg"), subj))
	}
	for i, m := range [][]byte{art("application/sig", "application/vnd.oci.empty.v1+json"), art("", "application/vnd.example.config")} {
		if err := r.Record(ctx, Event{Kind: EventPush, Repository: "app", Digest: recDg(fmt.Sprint("r", i)), Size: int64(len(m)), Manifest: m}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := refs.List(ctx, "app", subj, "")
	if len(all) != 2 {
		t.Fatalf("%+v", all)
	}
	byCfg, _ := refs.List(ctx, "app", subj, "application/vnd.example.config")
	if len(byCfg) != 1 || byCfg[0].Digest != recDg("r1") {
		t.Fatalf("artifactType falls back to config.mediaType: %+v", byCfg)
	}
	if other, _ := refs.List(ctx, "other", subj, ""); len(other) != 0 {
		t.Fatalf("other repo: %+v", other)
	}
	if err := r.Record(ctx, Event{Kind: EventDelete, Repository: "app", Digest: recDg("r0")}); err != nil {
		t.Fatal(err)
	}
	if left, _ := refs.List(ctx, "app", subj, ""); len(left) != 1 || left[0].Digest != recDg("r1") {
		t.Fatalf("after delete: %+v", left)
	}
}

// TestRecordsConcurrentPullsAllCount: concurrent pulls of one image (a
// fleet starting) conflict in Badger; every one must still be counted.
func TestRecordsConcurrentPullsAllCount(t *testing.T) {
	db := openRecordsDB(t, t.TempDir())
	defer db.Close()
	r := NewRecords(db, RecordsOptions{})
	ctx := context.Background()
	if err := r.Record(ctx, Event{Kind: EventPush, Repository: "app", Digest: recDg("hot"), Tag: "v1"}); err != nil {
		t.Fatal(err)
	}
	const n = 64
	errs := make(chan error, n)
	for range n {
		go func() {
			errs <- r.Record(ctx, Event{Kind: EventPull, Repository: "app", Digest: recDg("hot"), Tag: "v1"})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	rec, _ := r.Get(ctx, recDg("hot"))
	if got := rec.Repo("app").PullCount; got != n {
		t.Fatalf("pullCount %d, want %d", got, n)
	}
}
