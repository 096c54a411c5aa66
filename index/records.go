package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// Records keys (owned by this file):
//
//	img/<digest>              ImageRecord
//	tag/<repo>/<tag>          tagValue (current digest of the tag)
//	tgh/<repo>/<tag>/<nanos>  TagChange (nanos zero-padded to 20 digits: key order is time order)
//	rpi/<repo>@<digest>       empty: repository → image index for List by repository
//	                          ('@' cannot occur in a repository name, so a
//	                          repository's prefix never matches a longer one)
const pfxRepoImage = "rpi/"

// Records keeps the push/pull/delete records of image manifests in Badger.
// Every Record is one Badger transaction, committed before the proxy answers
// the client. Safe for concurrent use.
type Records struct {
	db   *DB
	opts RecordsOptions
	// mu serialises this store's write transactions: concurrent pulls of
	// one image touch the same key and would otherwise conflict (Badger's
	// optimistic transactions); a record transaction is a few keys, so one
	// writer at a time costs little.
	mu sync.Mutex
}

// RecordsOptions configures NewRecords; the zero value works.
type RecordsOptions struct {
	// Now is the clock used when an Event has no time (default time.Now).
	Now func() time.Time
	// InTxn, if set, runs inside the Record transaction after the records
	// are updated, with the event and the resulting image record (nil for a
	// tag-only delete), so other state (an outbox entry, a scan job) commits
	// atomically with the record. An error aborts the whole transaction.
	InTxn func(txn *badger.Txn, ev Event, rec *ImageRecord) error
}

// NewRecords returns the records store over db.
func NewRecords(db *DB, opts RecordsOptions) *Records {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Records{db: db, opts: opts}
}

// TagChange is one move of a tag (key tgh/<repo>/<tag>/<nanos>).
type TagChange struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag"`
	Digest     digest.Digest `json:"digest,omitempty"`   // empty when the tag was deleted
	Previous   digest.Digest `json:"previous,omitempty"` // empty when the tag was new
	Kind       EventKind     `json:"kind"`
	At         time.Time     `json:"at"`
}

type tagValue struct {
	Digest    digest.Digest `json:"digest"`
	UpdatedAt time.Time     `json:"updatedAt"`
}

func imageKey(d digest.Digest) []byte { return key(pfxImage, d.String()) }
func tagKey(repo, tag string) []byte  { return key(pfxTag, repo, tag) }
func repoImageKey(repo string, d digest.Digest) []byte {
	return []byte(pfxRepoImage + repo + "@" + d.String())
}
func tagHistKey(repo, tag string, at time.Time) []byte {
	return key(pfxTagHist, repo, tag, fmt.Sprintf("%020d", at.UnixNano()))
}

// maxTxnRetries bounds retries of a transaction that lost a conflict.
const maxTxnRetries = 8

// update runs fn in a read-write transaction, one at a time, retrying on
// conflicts with writers outside this store.
func (r *Records) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	for range maxTxnRetries {
		if e := ctx.Err(); e != nil {
			return fmt.Errorf("index: records: %w", e)
		}
		err = r.db.update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("index: records: %w", err)
}

// Record applies ev to the records in one transaction:
//
//   - push (manifest PUT 201): creates or revives the repository entry of
//     img/<digest> (pushedAt, status ACTIVE), fills media type, size,
//     subject and, for image indexes, Children (with platforms) and the
//     children's Parents; moves ev.Tag to the digest with history.
//   - pull (manifest GET 200): lastPulledAt and pullCount; creates the
//     record if unknown (mirror mode, or pushes that bypassed the proxy) and
//     moves ev.Tag if the registry now resolves it elsewhere.
//   - seen (a mirror's manifest the pull policy evaluates): as a pull,
//     without lastPulledAt and pullCount.
//   - delete: by digest, marks the repository entry deleted and removes its
//     tags and referrer entry; by tag (ev.Digest empty or ev.Tag set on a
//     tag DELETE), removes only the tag.
//   - archive / restore: sets the repository entry's status.
//
// A push or pull whose manifest (ev.Manifest) is not valid JSON is recorded
// without the parsed fields. Errors: Badger failures, wrapped.
func (r *Records) Record(ctx context.Context, ev Event) error {
	if ev.At.IsZero() {
		ev.At = r.opts.Now()
	}
	ev.At = ev.At.UTC()
	if ev.Repository == "" {
		return errors.New("index: records: event without repository")
	}
	var m *parsedManifest
	if len(ev.Manifest) > 0 {
		m = parseManifest(ev.Manifest)
	}
	err := r.update(ctx, func(txn *badger.Txn) error {
		var rec *ImageRecord
		var err error
		switch ev.Kind {
		case EventPush, EventPull, EventSeen:
			rec, err = applyPushPull(txn, ev, m)
		case EventDelete:
			rec, err = applyDelete(txn, ev)
		case EventArchive:
			rec, err = setStatus(txn, ev.Repository, ev.Digest, ImageArchived, ev.At)
		case EventRestore:
			rec, err = setStatus(txn, ev.Repository, ev.Digest, ImageActive, ev.At)
		default:
			return fmt.Errorf("index: records: unknown event kind %q", ev.Kind)
		}
		if err != nil {
			return err
		}
		if r.opts.InTxn != nil {
			return r.opts.InTxn(txn, ev, rec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: record %s %s@%s: %w", ev.Kind, ev.Repository, ev.Digest, err)
	}
	return nil
}

func loadImage(txn *badger.Txn, d digest.Digest) (*ImageRecord, bool, error) {
	var rec ImageRecord
	err := getJSON(txn, imageKey(d), &rec)
	if errors.Is(err, ErrNotFound) {
		return &ImageRecord{Digest: d, Repos: []RepoImage{}}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return &rec, true, nil
}

// ensureRepo returns rec's entry for repo, creating (or reviving a deleted
// one) with pushedAt at.
func ensureRepo(txn *badger.Txn, rec *ImageRecord, repo string, at time.Time, revive bool) (*RepoImage, error) {
	ri := rec.Repo(repo)
	if ri == nil {
		rec.Repos = append(rec.Repos, RepoImage{Repository: repo, PushedAt: at, Status: ImageActive})
		if err := txn.Set(repoImageKey(repo, rec.Digest), nil); err != nil {
			return nil, fmt.Errorf("index: set repo image: %w", err)
		}
		return &rec.Repos[len(rec.Repos)-1], nil
	}
	if ri.Deleted && revive {
		ri.Deleted, ri.DeletedAt = false, nil
		ri.PushedAt = at
		ri.Status, ri.ArchivedAt = ImageActive, nil
	}
	return ri, nil
}

func applyPushPull(txn *badger.Txn, ev Event, m *parsedManifest) (*ImageRecord, error) {
	if ev.Digest == "" {
		return nil, errors.New("push/pull without digest")
	}
	rec, existed, err := loadImage(txn, ev.Digest)
	if err != nil {
		return nil, err
	}
	if ev.MediaType != "" {
		rec.MediaType = ev.MediaType
	}
	if ev.Size > 0 {
		rec.Size = ev.Size
	}
	ri, err := ensureRepo(txn, rec, ev.Repository, ev.At, ev.Kind == EventPush)
	if err != nil {
		return nil, err
	}
	if ev.Kind == EventPull || ev.Kind == EventSeen {
		if ri.Deleted { // pulled after delete: the registry still serves it
			ri.Deleted, ri.DeletedAt = false, nil
		}
	}
	if ev.Kind == EventPull {
		if ri.LastPulledAt == nil || ri.LastPulledAt.Before(ev.At) {
			t := ev.At
			ri.LastPulledAt = &t
		}
		ri.PullCount++
	}
	if m != nil && (ev.Kind == EventPush || !existed || rec.MediaType == "") {
		if rec.MediaType == "" {
			rec.MediaType = m.MediaType
		}
		rec.Subject = m.subject()
		if n := m.imageSize(); n > 0 {
			rec.ImageSize = n
		}
		if m.isIndex() {
			rec.Index = true
			rec.Children = rec.Children[:0]
			for _, c := range m.Manifests {
				rec.Children = append(rec.Children, ChildImage{Digest: c.Digest, Platform: c.platform()})
				if err := addParent(txn, c, ev, rec.Digest); err != nil {
					return nil, err
				}
			}
		}
		if rec.Subject != "" {
			if err := putReferrer(txn, ev.Repository, rec.Subject, m.referrerDescriptor(rec.Digest, rec.MediaType, rec.Size)); err != nil {
				return nil, err
			}
		}
	}
	if ev.Tag != "" {
		if err := moveTag(txn, rec, ev.Repository, ev.Tag, ev.Kind, ev.At); err != nil {
			return nil, err
		}
	}
	if err := setJSON(txn, imageKey(rec.Digest), rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// addParent records parent on the child manifest c of an index.
func addParent(txn *badger.Txn, c descriptor, ev Event, parent digest.Digest) error {
	if c.Digest == "" || c.Digest == parent {
		return nil
	}
	child, _, err := loadImage(txn, c.Digest)
	if err != nil {
		return err
	}
	if child.MediaType == "" {
		child.MediaType = c.MediaType
	}
	if child.Size == 0 {
		child.Size = c.Size
	}
	if _, err := ensureRepo(txn, child, ev.Repository, ev.At, false); err != nil {
		return err
	}
	if !slices.Contains(child.Parents, parent) {
		child.Parents = append(child.Parents, parent)
	}
	return setJSON(txn, imageKey(child.Digest), child)
}

// moveTag points repo:tag at rec, removing it from the image it named before.
func moveTag(txn *badger.Txn, rec *ImageRecord, repo, tag string, kind EventKind, at time.Time) error {
	var old tagValue
	err := getJSON(txn, tagKey(repo, tag), &old)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	ri := rec.Repo(repo)
	if old.Digest == rec.Digest {
		if ri != nil && !slices.Contains(ri.Tags, tag) {
			ri.Tags = append(ri.Tags, tag)
		}
		return nil
	}
	if old.Digest != "" {
		if err := untag(txn, old.Digest, repo, tag); err != nil {
			return err
		}
	}
	if ri != nil && !slices.Contains(ri.Tags, tag) {
		ri.Tags = append(ri.Tags, tag)
	}
	if err := setJSON(txn, tagKey(repo, tag), tagValue{Digest: rec.Digest, UpdatedAt: at}); err != nil {
		return err
	}
	return setJSON(txn, tagHistKey(repo, tag, at), TagChange{
		Repository: repo, Tag: tag, Digest: rec.Digest, Previous: old.Digest, Kind: kind, At: at,
	})
}

// untag removes tag from the repository entry of image d.
func untag(txn *badger.Txn, d digest.Digest, repo, tag string) error {
	prev, existed, err := loadImage(txn, d)
	if err != nil || !existed {
		return err
	}
	if ri := prev.Repo(repo); ri != nil {
		ri.Tags = slices.DeleteFunc(ri.Tags, func(t string) bool { return t == tag })
	}
	return setJSON(txn, imageKey(d), prev)
}

func applyDelete(txn *badger.Txn, ev Event) (*ImageRecord, error) {
	if ev.Digest == "" || ev.Tag != "" { // tag delete
		if ev.Tag == "" {
			return nil, errors.New("delete without digest or tag")
		}
		var tv tagValue
		err := getJSON(txn, tagKey(ev.Repository, ev.Tag), &tv)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if err := untag(txn, tv.Digest, ev.Repository, ev.Tag); err != nil {
			return nil, err
		}
		if err := txn.Delete(tagKey(ev.Repository, ev.Tag)); err != nil {
			return nil, fmt.Errorf("index: delete tag: %w", err)
		}
		if err := setJSON(txn, tagHistKey(ev.Repository, ev.Tag, ev.At), TagChange{
			Repository: ev.Repository, Tag: ev.Tag, Previous: tv.Digest, Kind: EventDelete, At: ev.At,
		}); err != nil {
			return nil, err
		}
		rec, _, err := loadImage(txn, tv.Digest)
		return rec, err
	}
	rec, existed, err := loadImage(txn, ev.Digest)
	if err != nil {
		return nil, err
	}
	if !existed {
		return nil, nil
	}
	ri := rec.Repo(ev.Repository)
	if ri == nil {
		return rec, nil
	}
	for _, t := range ri.Tags {
		var tv tagValue
		if err := getJSON(txn, tagKey(ev.Repository, t), &tv); err == nil && tv.Digest == rec.Digest {
			if err := txn.Delete(tagKey(ev.Repository, t)); err != nil {
				return nil, fmt.Errorf("index: delete tag: %w", err)
			}
			if err := setJSON(txn, tagHistKey(ev.Repository, t, ev.At), TagChange{
				Repository: ev.Repository, Tag: t, Previous: rec.Digest, Kind: EventDelete, At: ev.At,
			}); err != nil {
				return nil, err
			}
		}
	}
	ri.Tags = nil
	ri.Deleted = true
	t := ev.At
	ri.DeletedAt = &t
	if rec.Subject != "" {
		if err := deleteReferrer(txn, ev.Repository, rec.Subject, rec.Digest); err != nil {
			return nil, err
		}
	}
	return rec, setJSON(txn, imageKey(rec.Digest), rec)
}

func setStatus(txn *badger.Txn, repo string, d digest.Digest, status string, at time.Time) (*ImageRecord, error) {
	rec, existed, err := loadImage(txn, d)
	if err != nil {
		return nil, err
	}
	ri := rec.Repo(repo)
	if !existed || ri == nil || ri.Deleted {
		return nil, fmt.Errorf("%s@%s: %w", repo, d, ErrNotFound)
	}
	ri.Status = status
	if status == ImageArchived {
		t := at
		ri.ArchivedAt = &t
	} else {
		ri.ArchivedAt = nil
	}
	return rec, setJSON(txn, imageKey(d), rec)
}

// SetStatus sets the status (ImageActive or ImageArchived, ECR's
// imageStatus) of image d in repo. Errors: ErrNotFound (wrapped) when the
// image is not (or no longer) in repo; an invalid status.
func (r *Records) SetStatus(ctx context.Context, repo string, d digest.Digest, status string) error {
	kind := EventArchive
	switch status {
	case ImageArchived:
	case ImageActive:
		kind = EventRestore
	default:
		return fmt.Errorf("index: SetStatus: invalid status %q", status)
	}
	return r.Record(ctx, Event{Kind: kind, Repository: repo, Digest: d})
}
