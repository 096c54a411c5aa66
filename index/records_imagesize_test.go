package index

import (
	"context"
	"fmt"
	"testing"
)

// TestRecordsImageSize: a pushed manifest's record carries the image's size
// (config plus layers), beside the manifest's own Size.
func TestRecordsImageSize(t *testing.T) {
	db := openRecordsDB(t, t.TempDir())
	defer db.Close()
	r := NewRecords(db, RecordsOptions{})
	ctx := context.Background()
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
		"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1500},
		"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":28000000},
		          {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":500}]}`,
		recDg("cfg"), recDg("l1"), recDg("l2")))
	d := recDg("sized")
	if err := r.Record(ctx, Event{Kind: EventPush, Repository: "app", Digest: d, Tag: "v1", Size: int64(len(m)), Manifest: m, At: recAt(0)}); err != nil {
		t.Fatal(err)
	}
	rec, err := r.Get(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Size != int64(len(m)) || rec.ImageSize != 1500+28000000+500 {
		t.Fatalf("size %d, image size %d", rec.Size, rec.ImageSize)
	}
}
