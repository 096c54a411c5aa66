package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
)

// Report is one running container seen by an agent (see docs/lifecycle.md
// for the JSON payload). ImageDigest or ImageReference must be given; a
// reference with "@sha256:…" needs no lookup, one with only a tag is resolved
// through the records (with "library/" tried for single-name Docker Hub
// references).
type Report struct {
	Cluster        string    `json:"cluster"`
	Namespace      string    `json:"namespace,omitempty"`
	Workload       string    `json:"workload"`
	ContainerID    string    `json:"containerId"`
	ImageDigest    string    `json:"imageDigest,omitempty"`
	ImageReference string    `json:"imageReference,omitempty"`
	ObservedAt     time.Time `json:"observedAt,omitzero"`
}

// InUsePayload is the body agents POST.
type InUsePayload struct {
	Reports []Report `json:"reports"`
}

// MaxReports bounds one payload.
const MaxReports = 10000

// maxField bounds every string field of a report, in bytes.
const maxField = 512

// ParseInUsePayload decodes an agent's JSON payload strictly (unknown fields
// are errors) and checks every report: cluster, workload and containerId
// present, an image digest or reference, fields at most 512 bytes, at most
// MaxReports reports. Errors wrap ErrInvalidReport.
func ParseInUsePayload(b []byte) ([]Report, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p InUsePayload
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidReport, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the payload", ErrInvalidReport)
	}
	if len(p.Reports) > MaxReports {
		return nil, fmt.Errorf("%w: %d reports, at most %d", ErrInvalidReport, len(p.Reports), MaxReports)
	}
	for i := range p.Reports {
		if err := checkReport(&p.Reports[i]); err != nil {
			return nil, fmt.Errorf("%w: reports[%d]: %v", ErrInvalidReport, i, err)
		}
	}
	return p.Reports, nil
}

func checkReport(r *Report) error {
	for name, v := range map[string]string{"cluster": r.Cluster, "namespace": r.Namespace, "workload": r.Workload,
		"containerId": r.ContainerID, "imageDigest": r.ImageDigest, "imageReference": r.ImageReference} {
		if len(v) > maxField {
			return fmt.Errorf("%s longer than %d bytes", name, maxField)
		}
	}
	switch {
	case r.Cluster == "":
		return errors.New("cluster is required")
	case r.Workload == "":
		return errors.New("workload is required")
	case r.ContainerID == "":
		return errors.New("containerId is required")
	case r.ImageDigest == "" && r.ImageReference == "":
		return errors.New("imageDigest or imageReference is required")
	}
	if r.ImageDigest != "" {
		if _, err := digest.Parse(r.ImageDigest); err != nil {
			return fmt.Errorf("imageDigest: %v", err)
		}
	}
	if r.ImageReference != "" {
		if _, _, _, err := ParseReference(r.ImageReference); err != nil {
			return err
		}
	}
	return nil
}

// ParseReference splits an image reference as agents report it
// ([host[:port]/]path[:tag][@digest]) into the repository path (host
// removed), tag and digest. The host is the first component when it holds
// '.' or ':' or is "localhost" (the Docker reference grammar's rule).
func ParseReference(ref string) (repo, tag string, dgst digest.Digest, err error) {
	if ref == "" || len(ref) > maxField || strings.ContainsAny(ref, " \t\r\n") {
		return "", "", "", fmt.Errorf("imageReference %q: not a reference", ref)
	}
	rest := ref
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		d, perr := digest.Parse(rest[i+1:])
		if perr != nil {
			return "", "", "", fmt.Errorf("imageReference %q: %v", ref, perr)
		}
		dgst, rest = d, rest[:i]
	}
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		rest = after
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i:], "/") {
		rest, tag = rest[:i], rest[i+1:]
		if tag == "" {
			return "", "", "", fmt.Errorf("imageReference %q: empty tag", ref)
		}
	}
	if rest == "" || strings.HasPrefix(rest, "/") || strings.HasSuffix(rest, "/") || strings.Contains(rest, "//") {
		return "", "", "", fmt.Errorf("imageReference %q: bad repository", ref)
	}
	if tag == "" && dgst == "" {
		tag = "latest"
	}
	return rest, tag, dgst, nil
}

// resolve returns the manifest digest a report names; "" when unknown.
func (s *Service) resolve(ctx context.Context, r *Report) (digest.Digest, error) {
	if r.ImageDigest != "" {
		return digest.Digest(r.ImageDigest), nil
	}
	repo, tag, d, err := ParseReference(r.ImageReference)
	if err != nil || d != "" {
		return d, err
	}
	if s.o.Tags == nil {
		return "", nil
	}
	for _, name := range []string{repo, "library/" + repo} {
		if name != repo && strings.Contains(repo, "/") {
			break
		}
		d, err := s.o.Tags.Resolve(ctx, name, tag)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, index.ErrNotFound) {
			return "", fmt.Errorf("lifecycle: resolve %s:%s: %w", name, tag, err)
		}
	}
	return "", nil
}

// ReportInUse stores agents' reports of running containers (the admin API's
// in-use endpoint calls it with ParseInUsePayload's result). Reports without
// observedAt are taken as seen now; ones naming unknown tags are skipped.
// In LAST_IN_USE_AT mode a report revives an expired CONTINUOUS_SCAN image,
// as a pull does. Invalid reports wrap ErrInvalidReport.
func (s *Service) ReportInUse(ctx context.Context, reports []Report) error {
	now := s.now()
	out := make([]index.InUseReport, 0, len(reports))
	for i := range reports {
		r := reports[i]
		if err := checkReport(&r); err != nil {
			return fmt.Errorf("%w: reports[%d]: %v", ErrInvalidReport, i, err)
		}
		d, err := s.resolve(ctx, &r)
		if err != nil {
			return err
		}
		if d == "" {
			s.log.Debug().Str("reference", r.ImageReference).Msg("in-use report for unknown image skipped")
			continue
		}
		at := r.ObservedAt.UTC()
		if at.IsZero() || at.After(now) {
			at = now // agents' clocks run ahead; never record the future
		}
		out = append(out, index.InUseReport{Cluster: r.Cluster, Namespace: r.Namespace, Workload: r.Workload,
			ContainerID: r.ContainerID, Image: d, Reference: r.ImageReference, ObservedAt: at})
	}
	if err := s.inuse.Put(ctx, out); err != nil {
		return fmt.Errorf("lifecycle: store in-use reports: %w", err)
	}
	c, err := s.Configuration(ctx)
	if err != nil || c.PullDateRescanMode != ModeLastInUseAt {
		return err
	}
	done := map[digest.Digest]bool{}
	var errs []error
	for _, r := range out {
		if done[r.Image] {
			continue
		}
		done[r.Image] = true
		rec, err := s.o.Records.Image(ctx, r.Image)
		if err != nil {
			continue
		}
		for _, st := range s.targets(ctx, c, rec, false) {
			if err := s.onActivity(ctx, st, "inuse"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ClustersForImage is what Inspector's GetClustersForImage needs: the
// clusters that ran image d, with their workloads and last-seen times.
func (s *Service) ClustersForImage(ctx context.Context, d digest.Digest) ([]index.ClusterUse, error) {
	return s.inuse.Clusters(ctx, d, s.now())
}

// InUse returns image d's inUseCount and lastInUseAt.
func (s *Service) InUse(ctx context.Context, d digest.Digest) (index.InUseStats, error) {
	return s.inuse.Stats(ctx, d, s.now())
}
