package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// ScanningConfiguration is the registry scanning configuration (key
// cfg/scanning): ECR's RegistryScanningConfiguration
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_RegistryScanningConfiguration.html)
// together with Inspector's EcrConfiguration rescan durations
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_EcrConfiguration.html).
// Validation lives in scan/lifecycle; the store keeps what it is given.
type ScanningConfiguration struct {
	ScanType string         `json:"scanType"` // BASIC or ENHANCED
	Rules    []ScanningRule `json:"rules"`
	// RescanDuration is LIFETIME or DAYS_14/30/60/90/180 (push date window).
	RescanDuration string `json:"rescanDuration"`
	// PullDateRescanDuration is DAYS_14/30/60/90/180 (pull or in-use window).
	PullDateRescanDuration string `json:"pullDateRescanDuration"`
	// PullDateRescanMode is LAST_PULL_DATE or LAST_IN_USE_AT.
	PullDateRescanMode string `json:"pullDateRescanMode"`
	// Generation increases by one on every stored update.
	Generation int64     `json:"generation"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// ScanningRule is ECR's RegistryScanningRule.
type ScanningRule struct {
	ScanFrequency     string             `json:"scanFrequency"` // SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL
	RepositoryFilters []RepositoryFilter `json:"repositoryFilters"`
}

// RepositoryFilter is ECR's ScanningRepositoryFilter.
type RepositoryFilter struct {
	Filter     string `json:"filter"`
	FilterType string `json:"filterType"` // WILDCARD
}

// Settings stores persisted configuration under cfg/.
type Settings struct{ db *DB }

// NewSettings returns the configuration store over db.
func NewSettings(db *DB) *Settings { return &Settings{db: db} }

var keyScanning = key(pfxConfig, "scanning")

// Scanning returns the stored scanning configuration; ErrNotFound (wrapped)
// before the first Put or Seed.
func (s *Settings) Scanning(ctx context.Context) (ScanningConfiguration, error) {
	var c ScanningConfiguration
	err := s.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, keyScanning, &c) })
	return c, err
}

// PutScanning stores c, setting Generation to the stored one plus one.
// It returns what was stored.
func (s *Settings) PutScanning(ctx context.Context, c ScanningConfiguration) (ScanningConfiguration, error) {
	err := updateRetry(ctx, s.db, func(txn *badger.Txn) error {
		var old ScanningConfiguration
		err := getJSON(txn, keyScanning, &old)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		c.Generation = old.Generation + 1
		return setJSON(txn, keyScanning, c)
	})
	return c, err
}

// SeedScanning stores c only when no configuration exists yet (first start)
// and returns the effective configuration and whether c was stored.
func (s *Settings) SeedScanning(ctx context.Context, c ScanningConfiguration) (ScanningConfiguration, bool, error) {
	var out ScanningConfiguration
	seeded := false
	err := updateRetry(ctx, s.db, func(txn *badger.Txn) error {
		seeded = false
		err := getJSON(txn, keyScanning, &out)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		c.Generation = 1
		out, seeded = c, true
		return setJSON(txn, keyScanning, c)
	})
	return out, seeded, err
}

// updateRetry runs fn in a read-write transaction, retrying on Badger's
// optimistic-concurrency conflicts (badger.ErrConflict) until ctx ends.
// fn must be safe to run more than once.
func updateRetry(ctx context.Context, db *DB, fn func(txn *badger.Txn) error) error {
	for {
		err := db.update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("index: update: %w", ctx.Err())
		}
	}
}
