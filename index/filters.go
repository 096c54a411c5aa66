package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Filter is one Inspector findings filter (suppression rule), stored at
// cfg/filters/<id> where id is the ARN's last path element
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_Filter.html).
// Criteria is the FilterCriteria exactly as the client sent it (restJson1:
// dates as epoch seconds), so the index does not depend on the API's types.
type Filter struct {
	ARN         string            `json:"arn"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Action      string            `json:"action"` // NONE or SUPPRESS
	Criteria    json.RawMessage   `json:"criteria"`
	Tags        map[string]string `json:"tags,omitempty"`
	OwnerID     string            `json:"ownerId"`
	CreatedAt   time.Time         `json:"createdAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
}

// Filters is the suppression-rule store (prefix cfg/filters/).
type Filters struct{ db *DB }

// NewFilters returns the filter store on db.
func NewFilters(db *DB) *Filters { return &Filters{db: db} }

func filterKey(arn string) []byte { return key(pfxConfig, "filters", arn) }

// PutFilter creates or replaces f (keyed by f.ARN).
func (s *Filters) PutFilter(ctx context.Context, f Filter) error {
	if f.ARN == "" {
		return errors.New("index: filter without arn")
	}
	return s.db.update(func(txn *badger.Txn) error { return setJSON(txn, filterKey(f.ARN), f) })
}

// GetFilter returns the filter with arn, or an error wrapping ErrNotFound.
func (s *Filters) GetFilter(ctx context.Context, arn string) (Filter, error) {
	var f Filter
	err := s.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, filterKey(arn), &f) })
	return f, err
}

// DeleteFilter removes the filter with arn; ErrNotFound (wrapped) if absent.
func (s *Filters) DeleteFilter(ctx context.Context, arn string) error {
	return s.db.update(func(txn *badger.Txn) error {
		k := filterKey(arn)
		if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("filter %s: %w", arn, ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("index: get filter: %w", err)
		}
		if err := txn.Delete(k); err != nil {
			return fmt.Errorf("index: delete filter: %w", err)
		}
		return nil
	})
}

// ListFilters returns every filter in key (ARN) order.
func (s *Filters) ListFilters(ctx context.Context) ([]Filter, error) {
	var out []Filter
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, key(pfxConfig, "filters", ""), false, func(item *badger.Item) error {
			var f Filter
			if err := item.Value(func(b []byte) error { return decode(b, &f) }); err != nil {
				return err
			}
			out = append(out, f)
			return ctx.Err()
		})
	})
	return out, err
}
