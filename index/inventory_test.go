package index

import (
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestInventoriesLayerAndImage(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewInventories(db)
	ctx := context.Background()
	d := digest.FromString("layer")
	if _, err := s.GetLayer(ctx, d, "dpkg@1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing layer: %v, want ErrNotFound", err)
	}
	li := &scan.LayerInventory{Digest: d, AnalyzersVersion: "dpkg@1", Packages: []scan.Package{{Name: "bash", Version: "5.2", Ecosystem: "Debian", Layer: d}}}
	if err := s.PutLayer(ctx, li); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetLayer(ctx, d, "dpkg@1")
	if err != nil || len(got.Packages) != 1 || got.Packages[0].Name != "bash" {
		t.Fatalf("get layer: %v %+v", err, got)
	}
	// Another analyzer set version is another key: bumping a version invalidates.
	if _, err := s.GetLayer(ctx, d, "dpkg@2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other version: %v", err)
	}
	if ok, _ := s.HasLayer(ctx, d, "dpkg@1"); !ok {
		t.Error("HasLayer false after PutLayer")
	}
	if ok, _ := s.HasLayer(ctx, d, "dpkg@2"); ok {
		t.Error("HasLayer true for another version")
	}
	img := digest.FromString("manifest")
	if _, err := s.GetImage(ctx, img); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing image: %v", err)
	}
	inv := scan.Merge([]*scan.LayerInventory{li})
	inv.Image = img
	if err := s.PutImage(ctx, inv); err != nil {
		t.Fatal(err)
	}
	gi, err := s.GetImage(ctx, img)
	if err != nil || gi.Image != img || len(gi.Packages) != 1 || gi.Layers[0] != d {
		t.Fatalf("get image: %v %+v", err, gi)
	}
	if err := s.DeleteImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetImage(ctx, img); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted image: %v", err)
	}
	if err := s.PutLayer(ctx, &scan.LayerInventory{}); err == nil {
		t.Error("PutLayer without digest accepted")
	}
}
