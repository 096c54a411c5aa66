package index

import (
	"context"
	"testing"
)

// FuzzRecordManifest: a push with any manifest bytes (untrusted: the
// client's PUT body) is recorded without error, the record is readable,
// and referrers of whatever subject it names are listable.
func FuzzRecordManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"subject":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"config":{"mediaType":"x"}}`))
	f.Add([]byte(`{"manifests":[{"digest":"../../x"}]}`))
	db, err := Open("", Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	r := NewRecords(db, RecordsOptions{})
	refs := NewReferrers(db)
	f.Fuzz(func(t *testing.T, manifest []byte) {
		ctx := context.Background()
		d := recDg(string(manifest))
		if err := r.Record(ctx, Event{Kind: EventPush, Repository: "fuzz", Digest: d, Tag: "t", Manifest: manifest}); err != nil {
			t.Fatalf("record: %v", err)
		}
		rec, err := r.Get(ctx, d)
		if err != nil || rec.Repo("fuzz") == nil {
			t.Fatalf("get: %+v %v", rec, err)
		}
		if rec.Subject != "" {
			if _, err := refs.List(ctx, "fuzz", rec.Subject, ""); err != nil {
				t.Fatal(err)
			}
		}
	})
}
