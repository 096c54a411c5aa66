package index

import (
	"context"
	"errors"
	"fmt"
	"slices"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Referrers serves the OCI referrers API
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers)
// from the manifests with a subject that passed the proxy. Keys:
//
//	ref/<subject-digest>/<digest>  referrerEntry (descriptor + repositories)
//
// Entries are written by Records.Record in the push transaction and removed
// by a delete of the referrer in a repository.
type Referrers struct{ db *DB }

// NewReferrers returns the referrers store over db.
func NewReferrers(db *DB) *Referrers { return &Referrers{db: db} }

type referrerEntry struct {
	Descriptor v1.Descriptor `json:"descriptor"`
	Repos      []string      `json:"repos"`
}

func referrerKey(subject, d digest.Digest) []byte {
	return key(pfxReferrer, subject.String(), d.String())
}

// List returns the descriptors of the manifests in repo whose subject is
// subject, in digest order; when artifactType is non-empty, only those of
// that artifact type. An unknown subject gives an empty list, no error.
func (r *Referrers) List(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	out := []v1.Descriptor{}
	prefix := key(pfxReferrer, subject.String(), "")
	err := r.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, prefix, false, func(item *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var e referrerEntry
			if err := item.Value(func(b []byte) error { return decode(b, &e) }); err != nil {
				return err
			}
			if !slices.Contains(e.Repos, repo) {
				return nil
			}
			if artifactType != "" && e.Descriptor.ArtifactType != artifactType {
				return nil
			}
			out = append(out, e.Descriptor)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("index: referrers of %s: %w", subject, err)
	}
	return out, nil
}

// putReferrer adds repo to the referrer entry of desc under subject.
func putReferrer(txn *badger.Txn, repo string, subject digest.Digest, desc v1.Descriptor) error {
	k := referrerKey(subject, desc.Digest)
	var e referrerEntry
	if err := getJSON(txn, k, &e); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	e.Descriptor = desc
	if !slices.Contains(e.Repos, repo) {
		e.Repos = append(e.Repos, repo)
	}
	return setJSON(txn, k, e)
}

// deleteReferrer removes repo from the referrer entry of d under subject.
func deleteReferrer(txn *badger.Txn, repo string, subject, d digest.Digest) error {
	k := referrerKey(subject, d)
	var e referrerEntry
	err := getJSON(txn, k, &e)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	e.Repos = slices.DeleteFunc(e.Repos, func(s string) bool { return s == repo })
	if len(e.Repos) == 0 {
		if err := txn.Delete(k); err != nil {
			return fmt.Errorf("index: delete referrer: %w", err)
		}
		return nil
	}
	return setJSON(txn, k, e)
}

// referrerDescriptor is the referrers-API descriptor of the manifest m with
// digest d: its artifactType, or for an image manifest without one, its
// config media type (spec: "artifactType ... or config.mediaType").
func (m *parsedManifest) referrerDescriptor(d digest.Digest, mediaType string, size int64) v1.Descriptor {
	at := m.ArtifactType
	if at == "" && m.Config != nil && !m.isIndex() {
		at = m.Config.MediaType
	}
	if mediaType == "" {
		mediaType = m.MediaType
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: size, ArtifactType: at, Annotations: m.Annotations}
}
