package index

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// InUseReport says one running container (Kubernetes pod container or ECS
// task container) was seen running an image at ObservedAt. Stored at
// use/<image-digest>/<container-key>, where the container key hashes
// (cluster, namespace, workload, containerId): a newer report of the same
// container replaces the older one.
type InUseReport struct {
	Cluster     string        `json:"cluster"`
	Namespace   string        `json:"namespace,omitempty"` // Kubernetes namespace or ECS service
	Workload    string        `json:"workload"`            // Deployment/StatefulSet/… or ECS task family
	ContainerID string        `json:"containerId"`
	Image       digest.Digest `json:"imageDigest"`
	Reference   string        `json:"imageReference,omitempty"` // as the agent saw it, informative
	ObservedAt  time.Time     `json:"observedAt"`
}

// InUseStats is Inspector's in-use view of one image
// (AwsEcrContainerImageDetails.inUseCount and lastInUseAt).
type InUseStats struct {
	// Count is the number of distinct containers seen in the 24 hours before now.
	Count       int        `json:"inUseCount"`
	LastInUseAt *time.Time `json:"lastInUseAt,omitempty"`
}

// ClusterUse is one cluster running an image (Inspector's
// GetClustersForImage ClusterDetails): its workloads and when it was last seen.
type ClusterUse struct {
	Cluster   string        `json:"cluster"`
	LastSeen  time.Time     `json:"lastSeen"`
	Running   int           `json:"runningUnitCount"` // containers seen in the last 24 h
	Stopped   int           `json:"stoppedUnitCount"` // containers seen before that
	Workloads []WorkloadUse `json:"workloads"`
}

// WorkloadUse is one workload of a cluster running an image.
type WorkloadUse struct {
	Namespace string    `json:"namespace,omitempty"`
	Workload  string    `json:"workload"`
	LastSeen  time.Time `json:"lastSeen"`
}

// InUseWindow is how recent a report must be to count in InUseStats.Count.
const InUseWindow = 24 * time.Hour

// InUse stores runtime in-use reports.
type InUse struct{ db *DB }

// NewInUse returns the in-use store over db.
func NewInUse(db *DB) *InUse { return &InUse{db: db} }

func containerKey(r *InUseReport) string {
	h := sha256.Sum256([]byte(strings.Join([]string{r.Cluster, r.Namespace, r.Workload, r.ContainerID}, "\x00")))
	return hex.EncodeToString(h[:16])
}

func inUsePrefix(d digest.Digest) []byte { return key(pfxInUse, d.String(), "") }

// Put stores reports, keeping for each container the newest observation.
// Every report needs Image and ObservedAt.
func (s *InUse) Put(ctx context.Context, reports []InUseReport) error {
	const chunk = 256
	for start := 0; start < len(reports); start += chunk {
		part := reports[start:min(start+chunk, len(reports))]
		for i := range part {
			if part[i].Image == "" || part[i].ObservedAt.IsZero() {
				return errors.New("index: in-use report needs imageDigest and observedAt")
			}
		}
		err := updateRetry(ctx, s.db, func(txn *badger.Txn) error {
			for i := range part {
				r := part[i]
				k := key(pfxInUse, r.Image.String(), containerKey(&r))
				var old InUseReport
				err := getJSON(txn, k, &old)
				if err == nil && !r.ObservedAt.After(old.ObservedAt) {
					continue
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if err := setJSON(txn, k, &r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index: put in-use reports: %w", err)
		}
	}
	return nil
}

// each calls fn for every stored report under prefix.
func (s *InUse) each(ctx context.Context, prefix []byte, fn func(r *InUseReport) error) error {
	return s.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, prefix, false, func(item *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var r InUseReport
			if err := item.Value(func(b []byte) error { return decode(b, &r) }); err != nil {
				return err
			}
			return fn(&r)
		})
	})
}

func addStat(st *InUseStats, r *InUseReport, now time.Time) {
	if now.Sub(r.ObservedAt) < InUseWindow {
		st.Count++
	}
	if st.LastInUseAt == nil || r.ObservedAt.After(*st.LastInUseAt) {
		t := r.ObservedAt
		st.LastInUseAt = &t
	}
}

// Stats returns image d's in-use count (distinct containers seen in the 24 h
// before now) and last in-use time (nil when never reported).
func (s *InUse) Stats(ctx context.Context, d digest.Digest, now time.Time) (InUseStats, error) {
	var st InUseStats
	err := s.each(ctx, inUsePrefix(d), func(r *InUseReport) error { addStat(&st, r, now); return nil })
	return st, err
}

// AllStats returns Stats for every image with reports, in one pass.
func (s *InUse) AllStats(ctx context.Context, now time.Time) (map[digest.Digest]InUseStats, error) {
	out := make(map[digest.Digest]InUseStats)
	err := s.each(ctx, []byte(pfxInUse), func(r *InUseReport) error {
		st := out[r.Image]
		addStat(&st, r, now)
		out[r.Image] = st
		return nil
	})
	return out, err
}

// Clusters returns the clusters that ran image d, most recently seen first,
// each with its workloads (most recent first).
func (s *InUse) Clusters(ctx context.Context, d digest.Digest, now time.Time) ([]ClusterUse, error) {
	byCluster := map[string]*ClusterUse{}
	byWorkload := map[string]*WorkloadUse{}
	err := s.each(ctx, inUsePrefix(d), func(r *InUseReport) error {
		c := byCluster[r.Cluster]
		if c == nil {
			c = &ClusterUse{Cluster: r.Cluster}
			byCluster[r.Cluster] = c
		}
		if r.ObservedAt.After(c.LastSeen) {
			c.LastSeen = r.ObservedAt
		}
		if now.Sub(r.ObservedAt) < InUseWindow {
			c.Running++
		} else {
			c.Stopped++
		}
		wk := r.Cluster + "\x00" + r.Namespace + "\x00" + r.Workload
		w := byWorkload[wk]
		if w == nil {
			w = &WorkloadUse{Namespace: r.Namespace, Workload: r.Workload}
			byWorkload[wk] = w
		}
		if r.ObservedAt.After(w.LastSeen) {
			w.LastSeen = r.ObservedAt
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for wk, w := range byWorkload {
		cl, _, _ := strings.Cut(wk, "\x00")
		byCluster[cl].Workloads = append(byCluster[cl].Workloads, *w)
	}
	out := make([]ClusterUse, 0, len(byCluster))
	for _, c := range byCluster {
		sort.Slice(c.Workloads, func(i, j int) bool {
			if !c.Workloads[i].LastSeen.Equal(c.Workloads[j].LastSeen) {
				return c.Workloads[i].LastSeen.After(c.Workloads[j].LastSeen)
			}
			return c.Workloads[i].Workload < c.Workloads[j].Workload
		})
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].Cluster < out[j].Cluster
	})
	return out, nil
}

// Prune deletes reports observed before before and returns how many.
//
// A container reported again while Prune runs keeps its fresh report: each
// candidate key is read again and deleted in one write transaction, so
// Badger's conflict detection retries the chunk if a Put replaced the key
// after that read (and a Put that read the old report retries in turn).
func (s *InUse) Prune(ctx context.Context, before time.Time) (int, error) {
	var old [][]byte
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxInUse), false, func(item *badger.Item) error {
			var r InUseReport
			if err := item.Value(func(b []byte) error { return decode(b, &r) }); err != nil {
				return err
			}
			if r.ObservedAt.Before(before) {
				old = append(old, item.KeyCopy(nil))
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("index: prune in-use: %w", err)
	}
	const chunk = 256
	pruned := 0
	for start := 0; start < len(old); start += chunk {
		part := old[start:min(start+chunk, len(old))]
		var n int
		err := updateRetry(ctx, s.db, func(txn *badger.Txn) error {
			n = 0
			for _, k := range part {
				var r InUseReport
				err := getJSON(txn, k, &r)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !r.ObservedAt.Before(before) {
					continue // reported again since the scan
				}
				if err := txn.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return pruned, fmt.Errorf("index: prune in-use: %w", err)
		}
		pruned += n
	}
	return pruned, nil
}
