package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// getManifest serves GET/HEAD /v2/<name>/manifests/<reference>. On a 200
// it refuses archived images (404 MANIFEST_UNKNOWN), and for GET consults
// the Gate, records the pull and tells Observers before sending the body.
func (p *Proxy) getManifest(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout())
	defer cancel()
	resp := p.exchange(ctx, w, r, rt, up, nil, 0)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.relay(w, r, up, resp, nil)
		return
	}
	repo := up.recordRepo()
	d := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
	if rd, ok := rt.refDigest(); ok && d == "" {
		d = rd
	}
	if r.Method == http.MethodHead {
		if d != "" && p.archived(ctx, repo, d) {
			WriteError(w, r, archivedError(repo, d))
			return
		}
		p.relay(w, r, up, resp, nil)
		return
	}
	body, err := readLimited(resp.Body, p.maxManifest())
	if errors.Is(err, errTooLarge) {
		// Larger than we analyse: pass it on untouched, unrecorded.
		p.Logger.Warn().Str("repo", repo).Str("op", "manifest").Msg("manifest larger than maxManifestBytes served unrecorded")
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		p.relay(w, r, up, resp, nil)
		return
	}
	if err != nil {
		if r.Context().Err() == nil {
			WriteError(w, r, upstreamError(up.name, err))
		}
		return
	}
	if rd, ok := rt.refDigest(); ok && rd.Validate() == nil {
		if rd.Algorithm().FromBytes(body) != rd {
			WriteError(w, r, errorf(http.StatusBadGateway, CodeUnavailable,
				"upstream registry %s served a manifest that does not match digest %s", up.name, rd))
			return
		}
		d = rd
	}
	if d == "" || d.Validate() != nil {
		d = digest.FromBytes(body)
	}
	if p.archived(ctx, repo, d) {
		WriteError(w, r, archivedError(repo, d))
		return
	}
	mt := mediaTypeOf(resp.Header.Get("Content-Type"), body)
	if p.Gate != nil {
		info := ManifestInfo{Reference: rt.ref, Digest: d, MediaType: mt, Size: int64(len(body)), Manifest: body, Mirror: up.mirror}
		// A mirror's image tollgate does not know in repo yet is recorded
		// (seen, not pulled) before the Gate evaluates it, so the suppression
		// rules for repo apply to it and, if it is refused, its findings and
		// coverage are shown under repo and its scan is recorded.
		seen := index.Event{Kind: index.EventSeen, Repository: repo, Digest: d, Tag: rt.tag(),
			MediaType: mt, Size: int64(len(body)), Manifest: body, Mirror: true, At: p.now()}
		recorded := up.mirror && p.recordSeen(ctx, seen)
		if err := p.Gate.Admit(ctx, repo, info); err != nil {
			var de *DeniedError
			var oe *Error
			if errors.As(err, &de) || errors.As(err, &oe) {
				if recorded {
					// Not served, so no pull event: the observers (the
					// lifecycle's scan and coverage) are told of the seen one.
					p.observe(r.Context(), seen)
				}
				WriteError(w, r, err)
				return
			}
			p.Logger.Error().Err(err).Str("repo", repo).Str("digest", d.String()).Str("op", "gate").Msg("gate failed; serving (fail-open)")
		}
	}
	p.recordOrKeep(r.Context(), index.Event{
		Kind: index.EventPull, Repository: repo, Digest: d, Tag: rt.tag(),
		MediaType: mt, Size: int64(len(body)), Manifest: body, Mirror: up.mirror, At: p.now(),
	})
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	if resp.Header.Get("Docker-Content-Digest") == "" {
		resp.Header.Set("Docker-Content-Digest", d.String())
	}
	resp.Body = readCloser{bytes.NewReader(body), resp.Body}
	resp.ContentLength = int64(len(body))
	p.relay(w, r, up, resp, nil)
}

// putManifest serves PUT /v2/<name>/manifests/<reference>: the body
// (bounded by MaxManifestBytes) is checked, sent upstream, and on 201 the
// push is recorded (with its referrer entry when it has a subject) before
// the client gets the answer, which carries OCI-Subject for such manifests.
func (p *Proxy) putManifest(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	body, err := readLimited(r.Body, p.maxManifest())
	if errors.Is(err, errTooLarge) {
		WriteError(w, r, errorf(http.StatusRequestEntityTooLarge, CodeManifestInvalid,
			"manifest is larger than %d bytes", p.maxManifest()))
		return
	}
	if err != nil {
		WriteError(w, r, errorf(http.StatusBadRequest, CodeManifestInvalid, "reading manifest: %v", err))
		return
	}
	m, oerr := checkManifest(body, r.Header.Get("Content-Type"), rt)
	if oerr != nil {
		WriteError(w, r, oerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout())
	defer cancel()
	resp := p.exchange(ctx, w, r, rt, up, bytes.NewReader(body), int64(len(body)))
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		d := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
		if d.Validate() != nil {
			if rd, ok := rt.refDigest(); ok {
				d = rd
			} else {
				d = digest.FromBytes(body)
			}
		}
		ev := index.Event{
			Kind: index.EventPush, Repository: up.recordRepo(), Digest: d, Tag: rt.tag(),
			MediaType: mediaTypeOf(r.Header.Get("Content-Type"), body), Size: int64(len(body)),
			Manifest: body, At: p.now(),
		}
		if err := p.record(r.Context(), ev); err != nil {
			// Never acknowledge a push that is not recorded: fail as a
			// registry does on a storage error. The registry holds the
			// manifest, and a client that retries may find it there and
			// not PUT again (crane, ggcr), so the record is kept and
			// written (and observed) once a write succeeds again.
			p.keep(ev, true)
			WriteError(w, r, &Error{Status: http.StatusInternalServerError, Code: CodeUnknown,
				Message: "the manifest push could not be recorded (tollgate index storage error); retry the push", Err: err})
			return
		}
		if m.Subject != nil && m.Subject.Digest != "" && resp.Header.Get("OCI-Subject") == "" {
			resp.Header.Set("OCI-Subject", m.Subject.Digest.String())
		}
	}
	p.relay(w, r, up, resp, nil)
}

// deleteManifest serves DELETE /v2/<name>/manifests/<reference> (digest:
// the manifest; tag: the tag) and records it on 202.
func (p *Proxy) deleteManifest(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout())
	defer cancel()
	resp := p.exchange(ctx, w, r, rt, up, nil, 0)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		d, _ := rt.refDigest()
		p.recordOrKeep(r.Context(), index.Event{Kind: index.EventDelete, Repository: up.recordRepo(), Digest: d, Tag: rt.tag(), At: p.now()})
	}
	p.relay(w, r, up, resp, nil)
}

// record writes any records kept from earlier failures, then ev, then
// tells the observers. It returns ev's write error (logged and counted);
// observers are told only of a written record.
func (p *Proxy) record(ctx context.Context, ev index.Event) error {
	ctx = context.WithoutCancel(ctx)
	if p.Records != nil {
		p.flushPending(ctx)
		if err := p.Records.Record(ctx, ev); err != nil {
			p.recordFailures.Add(1)
			p.Logger.Error().Err(err).Str("op", "record").Str("repo", ev.Repository).
				Str("digest", ev.Digest.String()).Str("kind", string(ev.Kind)).Msg("record failed")
			return err
		}
	}
	for _, o := range p.Observers {
		o.Observe(ctx, ev)
	}
	return nil
}

// recordSeen writes ev (index.EventSeen) when repo does not hold the image
// yet, without telling the observers, and reports whether it did. A
// failure is logged and counted; the pull goes on.
func (p *Proxy) recordSeen(ctx context.Context, ev index.Event) bool {
	if p.Records == nil {
		return false
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := p.Records.Status(ctx, ev.Repository, ev.Digest); !errors.Is(err, index.ErrNotFound) {
		return false // known (or the lookup failed, which archived logged)
	}
	if err := p.Records.Record(ctx, ev); err != nil {
		p.recordFailures.Add(1)
		p.Logger.Error().Err(err).Str("op", "record").Str("repo", ev.Repository).
			Str("digest", ev.Digest.String()).Str("kind", string(ev.Kind)).Msg("record failed")
		return false
	}
	return true
}

// observe tells the observers of a recorded event.
func (p *Proxy) observe(ctx context.Context, ev index.Event) {
	ctx = context.WithoutCancel(ctx)
	for _, o := range p.Observers {
		o.Observe(ctx, ev)
	}
}

// recordOrKeep records a pull or delete, whose answer never depends on
// the record (the registry already served or deleted): a write that
// fails (a full disk) keeps ev in memory, bounded, and the next record
// that can be written writes it first. Observers are told either way.
func (p *Proxy) recordOrKeep(ctx context.Context, ev index.Event) {
	if err := p.record(ctx, ev); err == nil || p.Records == nil {
		return
	}
	p.keep(ev, false)
	for _, o := range p.Observers {
		o.Observe(context.WithoutCancel(ctx), ev)
	}
}

// keep queues ev for a later write; observe says the observers are told
// once it is written.
func (p *Proxy) keep(ev index.Event, observe bool) {
	if !p.pending.add(pendingRecord{ev: ev, observe: observe, attempts: 1}) {
		p.Logger.Error().Str("op", "record").Str("repo", ev.Repository).Str("digest", ev.Digest.String()).
			Str("kind", string(ev.Kind)).Int("pending", maxPendingRecords).Msg("record dropped: too many records pending")
	}
}

// flushPending writes the kept records, telling the observers of those
// that wait for it.
func (p *Proxy) flushPending(ctx context.Context) {
	for _, ev := range p.pending.flush(ctx, p.Records, p.Logger) {
		for _, o := range p.Observers {
			o.Observe(ctx, ev)
		}
	}
}

// maxPendingRecords bounds the records kept in memory while writes fail;
// maxRecordAttempts drops one that still fails after that many writes (a
// record the store refuses for good must not stay forever).
const (
	maxPendingRecords = 10000
	maxRecordAttempts = 1000
)

// pendingRecords are records whose write failed, oldest first.
type pendingRecords struct {
	mu  sync.Mutex
	evs []pendingRecord
}

type pendingRecord struct {
	ev       index.Event
	observe  bool // observers wait for the write
	attempts int
}

func (q *pendingRecords) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.evs)
}

// add keeps pr; false when the queue is full (pr is dropped). A push
// already kept (a client retrying it) is kept once.
func (q *pendingRecords) add(pr pendingRecord) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if pr.ev.Kind == index.EventPush && slices.ContainsFunc(q.evs, func(o pendingRecord) bool {
		return o.ev.Kind == pr.ev.Kind && o.ev.Repository == pr.ev.Repository && o.ev.Digest == pr.ev.Digest && o.ev.Tag == pr.ev.Tag
	}) {
		return true
	}
	if len(q.evs) >= maxPendingRecords {
		return false
	}
	q.evs = append(q.evs, pr)
	return true
}

// flush writes the kept records in order and stops at the first failure
// (that record and the later ones stay, unless it ran out of attempts). It
// returns the written records whose observers wait for them.
func (q *pendingRecords) flush(ctx context.Context, r Recorder, log zerolog.Logger) []index.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	var observe []index.Event
	for len(q.evs) > 0 {
		pr := &q.evs[0]
		if err := r.Record(ctx, pr.ev); err != nil {
			if pr.attempts++; pr.attempts < maxRecordAttempts {
				return observe
			}
			log.Error().Err(err).Str("op", "record").Str("repo", pr.ev.Repository).Str("digest", pr.ev.Digest.String()).
				Str("kind", string(pr.ev.Kind)).Int("attempts", pr.attempts).Msg("pending record dropped: it keeps failing")
		} else if pr.observe {
			observe = append(observe, pr.ev)
		}
		q.evs[0] = pendingRecord{}
		q.evs = q.evs[1:]
	}
	q.evs = nil
	return observe
}

// archived reports whether image d is archived in repo (a lookup failure
// other than not-found is logged and treated as not archived).
func (p *Proxy) archived(ctx context.Context, repo string, d digest.Digest) bool {
	if p.Records == nil {
		return false
	}
	st, err := p.Records.Status(ctx, repo, d)
	if err != nil {
		if !errors.Is(err, index.ErrNotFound) {
			p.Logger.Warn().Err(err).Str("op", "status").Str("repo", repo).Str("digest", d.String()).Msg("status lookup failed")
		}
		return false
	}
	return st == index.ImageArchived
}

func archivedError(repo string, d digest.Digest) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeManifestUnknown,
		Message: "manifest " + d.String() + " in " + repo + " is archived; restore it to pull",
		Detail:  map[string]string{"imageStatus": index.ImageArchived}}
}

// manifestHead is what the proxy checks in a pushed manifest.
type manifestHead struct {
	SchemaVersion *int             `json:"schemaVersion"`
	MediaType     string           `json:"mediaType"`
	Config        *descriptorHead  `json:"config"`
	Layers        []descriptorHead `json:"layers"`
	Manifests     []descriptorHead `json:"manifests"`
	Subject       *descriptorHead  `json:"subject"`
}

type descriptorHead struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

// checkManifest validates a pushed manifest before it goes upstream: a
// JSON object with schemaVersion, a mediaType agreeing with Content-Type,
// well-formed descriptor digests, and, when pushed by digest, content that
// matches it. Errors: MANIFEST_INVALID or DIGEST_INVALID (400). Media
// types are judged by the registry.
func checkManifest(body []byte, contentType string, rt route) (*manifestHead, *Error) {
	var m manifestHead
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, errorf(http.StatusBadRequest, CodeManifestInvalid, "manifest is not a JSON object: %v", err)
	}
	if m.SchemaVersion == nil {
		return nil, errorf(http.StatusBadRequest, CodeManifestInvalid, "manifest has no schemaVersion")
	}
	if ct, _, err := mime.ParseMediaType(contentType); err == nil && m.MediaType != "" && ct != m.MediaType {
		return nil, errorf(http.StatusBadRequest, CodeManifestInvalid,
			"manifest mediaType %q does not match Content-Type %q", m.MediaType, ct)
	}
	descs := append(append([]descriptorHead{}, m.Layers...), m.Manifests...)
	if m.Config != nil {
		descs = append(descs, *m.Config)
	}
	if m.Subject != nil {
		descs = append(descs, *m.Subject)
	}
	for _, d := range descs {
		if err := d.Digest.Validate(); err != nil {
			return nil, errorf(http.StatusBadRequest, CodeDigestInvalid, "descriptor digest %q: %v", d.Digest, err)
		}
		if d.Size < 0 {
			return nil, errorf(http.StatusBadRequest, CodeManifestInvalid, "descriptor %s has a negative size", d.Digest)
		}
	}
	if rd, ok := rt.refDigest(); ok {
		if err := rd.Validate(); err != nil {
			return nil, errorf(http.StatusBadRequest, CodeDigestInvalid, "reference %q: %v", rt.ref, err)
		}
		if got := rd.Algorithm().FromBytes(body); got != rd {
			return nil, errorf(http.StatusBadRequest, CodeDigestInvalid, "manifest digest is %s, not %s", got, rd)
		}
	} else if !tagRe.MatchString(rt.ref) {
		return nil, errorf(http.StatusBadRequest, CodeManifestInvalid, "invalid tag %q", rt.ref)
	}
	return &m, nil
}

// mediaTypeOf is the manifest's media type: Content-Type, else its
// mediaType field.
func mediaTypeOf(contentType string, body []byte) string {
	if ct, _, err := mime.ParseMediaType(contentType); err == nil && ct != "" && ct != "application/octet-stream" {
		return ct
	}
	var m struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(body, &m)
	return m.MediaType
}

var errTooLarge = errors.New("too large")

// readLimited reads r to EOF if it holds at most max bytes; otherwise it
// returns what it read and errTooLarge.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > max {
		return b, errTooLarge
	}
	return b, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
