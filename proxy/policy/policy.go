// Package policy is tollgate's pull policy (beyond Amazon Inspector; the gap
// Harbor users describe in goharbor/harbor#13242): per repository wildcard
// filter, "refuse pulls of images with ACTIVE findings at or above SEVERITY",
// evaluated at every manifest GET through the proxy's Gate hook.
//
// An image that has not been scanned yet is scanned synchronously before the
// answer (the first pull through the mirror is scanned before it is served),
// bounded by the rule's scan timeout; when the scan does not finish in time
// or fails, the rule's FailOpen decides (default: refuse, with a message
// saying the scan is in progress). For an image index the policy evaluates
// every child image manifest and refuses when any child violates it.
// See docs/policy.md.
package policy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// Rule is one pull policy rule.
type Rule struct {
	// RepositoryFilter is an ECR-style wildcard: '*' matches any run of
	// characters, '/' included; "" means "*".
	RepositoryFilter string
	// Severity is the threshold: ACTIVE findings at or above it refuse the pull.
	Severity scan.Severity
	// ScanTimeout bounds the synchronous scan of an unscanned image
	// (default 25s, below the proxy's default 30s manifest timeout, which
	// bounds the Gate too).
	ScanTimeout time.Duration
	// FailOpen serves the image when its scan times out or fails; default
	// refuse.
	FailOpen bool
}

// RulesFromConfig converts the configuration's policy list.
func RulesFromConfig(ps []config.PullPolicy) []Rule {
	out := make([]Rule, 0, len(ps))
	for _, p := range ps {
		out = append(out, Rule{RepositoryFilter: p.RepositoryFilter, Severity: scan.Severity(p.Severity),
			ScanTimeout: p.ScanTimeout, FailOpen: p.FailOpen})
	}
	return out
}

// Findings counts an image's ACTIVE findings by severity.
// *index.FindingStore implements it.
type Findings interface {
	Counts(ctx context.Context, image digest.Digest) (map[scan.Severity]int, error)
}

// Coverages tells whether an image was scanned. *index.Coverages implements
// it; errors wrap index.ErrNotFound for an image never seen.
type Coverages interface {
	Get(ctx context.Context, image digest.Digest) (*index.Coverage, error)
}

// Scanner scans one image manifest of repo now and returns when its
// findings are stored (a nil error), or the scan failed.
type Scanner interface {
	ScanNow(ctx context.Context, repo string, image digest.Digest) error
}

// Metrics counts decisions ("allowed", "denied", "error"); proxy/metrics
// implements it.
type Metrics interface {
	PolicyDecision(decision string)
}

// Options configures New. Findings and Coverages are required.
type Options struct {
	Rules     []Rule
	Findings  Findings
	Coverages Coverages
	Scanner   Scanner // nil: unscanned images are handled as a timed-out scan
	Metrics   Metrics
	Logger    zerolog.Logger
	// MaxScan bounds a scan started for a pull that carries on after the
	// pull stopped waiting (default 30m).
	MaxScan time.Duration
	// Hint formats how to see the findings of repo@image in a refusal;
	// default "tollgate findings list --image REPO@DIGEST".
	Hint func(repo string, image digest.Digest) string
}

// Policy evaluates pull policy rules. Safe for concurrent use.
type Policy struct {
	o   Options
	log zerolog.Logger

	mu       sync.Mutex
	inflight map[digest.Digest]*scanCall // at most one scan per image
}

type scanCall struct {
	done chan struct{}
	err  error
}

// New returns a policy over o.
func New(o Options) *Policy {
	if o.MaxScan <= 0 {
		o.MaxScan = 30 * time.Minute
	}
	if o.Hint == nil {
		o.Hint = func(repo string, image digest.Digest) string {
			return "tollgate findings list --image " + repo + "@" + image.String()
		}
	}
	return &Policy{o: o, log: o.Logger.With().Str("op", "policy").Logger(), inflight: map[digest.Digest]*scanCall{}}
}

const defaultScanTimeout = 25 * time.Second

// Rule returns the strictest rule (lowest severity threshold) whose filter
// matches repo, or nil when no rule applies.
func (p *Policy) Rule(repo string) *Rule {
	var best *Rule
	for i := range p.o.Rules {
		r := &p.o.Rules[i]
		f := r.RepositoryFilter
		if f == "" {
			f = "*"
		}
		if !lifecycle.WildcardMatch(f, repo) {
			continue
		}
		if best == nil || r.Severity.Rank() < best.Severity.Rank() {
			best = r
		}
	}
	return best
}

// Decision is the outcome of evaluating one pull.
type Decision struct {
	Allowed bool
	Rule    *Rule // nil when no rule applies
	// Counts are the ACTIVE findings at or above the rule's severity, by
	// severity, summed over the evaluated images.
	Counts map[scan.Severity]int
	// Violating lists the image manifests with such findings.
	Violating []digest.Digest
	// Pending lists the images whose scan did not finish (timeout or error).
	Pending []digest.Digest
	// Message explains a refusal (empty when allowed).
	Message string
}

// Evaluate decides the pull of image (a manifest digest) from repo; children
// are the image manifests of an index (nil for an image manifest), each
// evaluated in its place. Errors are lookups that failed (the caller decides:
// the Gate fails open on them, as the proxy's contract says).
func (p *Policy) Evaluate(ctx context.Context, repo string, image digest.Digest, children []digest.Digest) (Decision, error) {
	rule := p.Rule(repo)
	if rule == nil {
		return Decision{Allowed: true}, nil
	}
	targets := children
	if len(targets) == 0 {
		targets = []digest.Digest{image}
	}
	d := Decision{Rule: rule, Counts: map[scan.Severity]int{}}
	states := p.ensureScanned(ctx, repo, targets, rule)
	for i, t := range targets {
		if err := states[i].err; err != nil {
			d.Pending = append(d.Pending, t)
			p.log.Warn().Err(err).Str("repo", repo).Str("digest", t.String()).Msg("scan before pull did not finish")
			continue
		}
		if !states[i].scanned {
			continue // permanently unscannable (unsupported): nothing to find
		}
		counts, err := p.o.Findings.Counts(ctx, t)
		if err != nil {
			return Decision{}, fmt.Errorf("policy: findings of %s: %w", t, err)
		}
		hit := false
		for sev, n := range counts {
			if n > 0 && sev.Rank() >= rule.Severity.Rank() && sev.Rank() > 0 {
				d.Counts[sev] += n
				hit = true
			}
		}
		if hit {
			d.Violating = append(d.Violating, t)
		}
	}
	switch {
	case len(d.Violating) > 0:
		d.Message = p.violationMessage(repo, image, d)
	case len(d.Pending) > 0 && !rule.FailOpen:
		d.Message = fmt.Sprintf("%s@%s has not finished its vulnerability scan, which the pull policy for %q requires before the image is served; retry in a minute",
			repo, image, filterOf(rule))
	default:
		d.Allowed = true
	}
	return d, nil
}

func filterOf(r *Rule) string {
	if r.RepositoryFilter == "" {
		return "*"
	}
	return r.RepositoryFilter
}

func (p *Policy) violationMessage(repo string, image digest.Digest, d Decision) string {
	sevs := make([]scan.Severity, 0, len(d.Counts))
	total := 0
	for s, n := range d.Counts {
		sevs = append(sevs, s)
		total += n
	}
	sort.Slice(sevs, func(i, j int) bool { return sevs[i].Rank() > sevs[j].Rank() })
	parts := make([]string, 0, len(sevs))
	for _, s := range sevs {
		parts = append(parts, fmt.Sprintf("%d %s", d.Counts[s], s))
	}
	noun := "findings"
	if total == 1 {
		noun = "finding"
	}
	where := ""
	if len(d.Violating) > 1 || d.Violating[0] != image {
		where = fmt.Sprintf(" in %d of its platform images", len(d.Violating))
	}
	hints := make([]string, 0, len(d.Violating))
	for _, v := range d.Violating {
		hints = append(hints, p.o.Hint(repo, v))
	}
	return fmt.Sprintf("pull refused by policy (repository filter %q, severity %s): %s@%s has %d ACTIVE %s at or above %s%s (%s); see them with: %s",
		filterOf(d.Rule), d.Rule.Severity, repo, image, total, noun, d.Rule.Severity, where,
		strings.Join(parts, ", "), strings.Join(hints, " ; "))
}

// scanState is one image's readiness for evaluation: scanned (findings are
// current), not scanned because it cannot be (unsupported: nothing to
// find), or err when its scan did not finish in time or failed.
type scanState struct {
	scanned bool
	err     error
}

// ensureScanned makes sure every image in images has current findings:
// images never scanned are scanned, all at once, and waited for together
// up to the rule's timeout.
func (p *Policy) ensureScanned(ctx context.Context, repo string, images []digest.Digest, rule *Rule) []scanState {
	out := make([]scanState, len(images))
	calls := make(map[int]*scanCall)
	for i, image := range images {
		c, err := p.o.Coverages.Get(ctx, image)
		switch {
		case err != nil && !errors.Is(err, index.ErrNotFound):
			out[i].err = fmt.Errorf("policy: coverage of %s: %w", image, err)
			continue
		case c != nil && isUnsupported(c.Reason) && c.LastScannedAt == nil:
			continue // nothing was matched (an UNSUPPORTED_OS image's language findings are)
		case c != nil && c.LastScannedAt != nil:
			out[i].scanned = true
			continue
		case p.o.Scanner == nil:
			out[i].err = errors.New("policy: image not scanned yet and no scanner configured")
			continue
		}
		calls[i] = p.startScan(ctx, repo, image)
	}
	if len(calls) == 0 {
		return out
	}
	timeout := rule.ScanTimeout
	if timeout <= 0 {
		timeout = defaultScanTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	expired := false
	for i, call := range calls {
		if !expired {
			select {
			case <-call.done:
			case <-t.C:
				expired = true
			case <-ctx.Done():
				expired = true
			}
		}
		select {
		case <-call.done:
			out[i].scanned, out[i].err = call.err == nil, call.err
		default:
			out[i].err = fmt.Errorf("policy: scan of %s still running after %s", images[i], timeout)
		}
	}
	return out
}

func isUnsupported(r scan.Reason) bool {
	switch r {
	case scan.ReasonUnsupportedOS, scan.ReasonUnsupportedMediaType, scan.ReasonUnsupportedConfigFile:
		return true
	}
	return false
}

// startScan joins the running scan of image or starts one that carries on
// (bounded by MaxScan) when the pull stops waiting, so a retried pull finds it
// done.
func (p *Policy) startScan(ctx context.Context, repo string, image digest.Digest) *scanCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.inflight[image]; ok {
		return c
	}
	c := &scanCall{done: make(chan struct{})}
	p.inflight[image] = c
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.o.MaxScan)
	go func() {
		defer cancel()
		start := time.Now()
		c.err = p.o.Scanner.ScanNow(sctx, repo, image)
		if c.err != nil {
			// Logged here: the pull that started it may have stopped waiting.
			p.log.Warn().Err(c.err).Str("repo", repo).Str("digest", image.String()).
				Dur("after", time.Since(start)).Msg("scan before pull failed")
		} else {
			p.log.Debug().Str("repo", repo).Str("digest", image.String()).
				Dur("after", time.Since(start)).Msg("scan before pull done")
		}
		p.mu.Lock()
		delete(p.inflight, image)
		p.mu.Unlock()
		close(c.done)
	}()
	return c
}
