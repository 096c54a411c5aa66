package admin

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// ImageFindings yields one image's stored findings (*index.FindingStore).
type ImageFindings interface {
	ForImage(ctx context.Context, image digest.Digest) ([]scan.Finding, error)
}

// SuppressedCounts counts an image's ACTIVE findings by severity after the
// SUPPRESS rules, for the pull policy (proxy/policy.Findings): a finding
// counts unless a rule suppresses it in every repository the image lives
// in (the policy's question names no repository, so the strict answer
// wins). Without rules it equals index.FindingStore.Counts.
type SuppressedCounts struct {
	API      *API
	Findings ImageFindings
}

// Counts returns the ACTIVE, unsuppressed findings of image by severity.
func (s SuppressedCounts) Counts(ctx context.Context, image digest.Digest) (map[scan.Severity]int, error) {
	fs, err := s.Findings.ForImage(ctx, image)
	if err != nil {
		return nil, err
	}
	sup, err := s.API.suppressors(ctx)
	if err != nil {
		return nil, err
	}
	out := map[scan.Severity]int{}
	var facts *imageFacts
	for i := range fs {
		f := &fs[i]
		if f.Status != scan.FindingActive {
			continue
		}
		if len(sup) == 0 {
			out[f.Severity]++
			continue
		}
		if facts == nil {
			if facts, err = s.API.newFactCache().get(ctx, image); err != nil {
				return nil, err
			}
		}
		if !s.suppressedEverywhere(f, facts, sup) {
			out[f.Severity]++
		}
	}
	return out, nil
}

func (s SuppressedCounts) suppressedEverywhere(f *scan.Finding, facts *imageFacts, sup []criteria[*findingView]) bool {
	if facts.rec == nil {
		return false
	}
	repos := 0
	for i := range facts.rec.Repos {
		ri := &facts.rec.Repos[i]
		if ri.Deleted {
			continue
		}
		repos++
		v := &findingView{f: f, status: scan.FindingActive, repo: ri.Repository, ri: ri, arch: facts.arch,
			platform: facts.platform, inUse: facts.inUse, lastUse: facts.lastUse,
			account: s.API.o.AccountID, region: s.API.o.Region}
		v.arn = findingARN(v.region, v.account, ri.Repository, f.ID)
		hit := false
		for _, c := range sup {
			if c.match(v) {
				hit = true
				break
			}
		}
		if !hit {
			return false
		}
	}
	return repos > 0
}
