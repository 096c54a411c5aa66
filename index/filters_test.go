package index

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestFiltersLifecycle(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	s := NewFilters(db)
	now := time.Now().UTC().Truncate(time.Second)
	a := Filter{ARN: "arn:aws:inspector2:us-east-1:000000000000:owner/000000000000/filter/a", Name: "a", Action: "SUPPRESS",
		Criteria: json.RawMessage(`{"severity":[{"comparison":"EQUALS","value":"LOW"}]}`), CreatedAt: now, UpdatedAt: now}
	b := a
	b.ARN, b.Name = a.ARN[:len(a.ARN)-1]+"b", "b"
	for _, f := range []Filter{b, a} {
		if err := s.PutFilter(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetFilter(ctx, a.ARN)
	if err != nil || got.Name != "a" || string(got.Criteria) != string(a.Criteria) || !got.CreatedAt.Equal(now) {
		t.Fatalf("GetFilter = %+v, %v", got, err)
	}
	list, err := s.ListFilters(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("ListFilters = %+v, %v", list, err)
	}
	if err := s.DeleteFilter(ctx, a.ARN); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFilter(ctx, a.ARN); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetFilter(ctx, a.ARN); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := s.PutFilter(ctx, Filter{}); err == nil {
		t.Fatal("PutFilter without ARN succeeded")
	}
}
