package match

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// PackageKey is the (ecosystem, name) pair advisories are filed under.
// Ecosystem is release-qualified for OS packages ("Debian:12").
type PackageKey struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
}

func (k PackageKey) String() string { return k.Ecosystem + "/" + k.Name }

// NormalizeName returns the form in which name is compared and keyed in
// ecosystem (release-qualified or not): PyPI names PEP 503-normalised
// (lowercase, each run of '-', '_', '.' one '-': "Jinja2" → "jinja2",
// "Zope.Interface" → "zope-interface"), NuGet and Packagist names lowercased
// (both registries treat names case-insensitively). Every other ecosystem's
// names are case-sensitive and returned as they are. Advisory keys, lookup
// keys and package-index keys all use it; a package's displayed name and its
// finding id keep the name as found.
func NormalizeName(ecosystem, name string) string {
	switch BaseEcosystem(ecosystem) {
	case "PyPI":
		return pep503Normalize(name)
	case "NuGet", "Packagist":
		return strings.ToLower(name)
	}
	return name
}

func pep503Normalize(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	sep := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_' || c == '.':
			sep = true
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		b.WriteByte(c)
	}
	if sep {
		b.WriteByte('-')
	}
	return b.String()
}

// NormalizeKey returns k with its name normalised (NormalizeName).
func NormalizeKey(k PackageKey) PackageKey {
	k.Name = NormalizeName(k.Ecosystem, k.Name)
	return k
}

// sourceKeyed are the OS ecosystems whose feeds file advisories under the
// source package (Debian/Ubuntu `Source:`, apk origin). Red Hat-family feeds
// (AlmaLinux, Rocky, Red Hat, SUSE) name binary RPMs and are matched by the
// package's own name.
func sourceKeyed(base string) bool {
	switch base {
	case "Debian", "Ubuntu", "Alpine", "Wolfi", "Chainguard", "Alpaquita", "BellSoft Hardened Containers", "MinimOS":
		return true
	}
	return false
}

// LookupKey returns the key the advisories for p are filed under, and the
// version to compare: for source-keyed OS ecosystems (Debian, Ubuntu,
// Alpine, Wolfi) the source package name and version (SourceName falling
// back to Name, SourceVersion to Version); for every other package its own
// name and version. The key's name is normalised (NormalizeName: PyPI names
// per PEP 503, NuGet and Packagist lowercased). ok is false when p is not
// matched at all: a language
// package whose files an OS package owns (OSManaged: the distribution
// backports fixes without changing the upstream version, so it is matched
// only through the OS package's advisories), or a package without ecosystem.
func LookupKey(p *scan.Package) (key PackageKey, version string, ok bool) {
	if p.Ecosystem == "" || p.Name == "" || p.Version == "" {
		return key, "", false
	}
	if p.OSManaged && p.Kind != scan.KindOS {
		return key, "", false
	}
	key = PackageKey{Ecosystem: p.Ecosystem, Name: p.Name}
	version = p.Version
	if p.Kind == scan.KindOS && sourceKeyed(BaseEcosystem(p.Ecosystem)) {
		if p.SourceName != "" {
			key.Name = p.SourceName
		}
		if p.SourceVersion != "" {
			version = p.SourceVersion
		}
	}
	key.Name = NormalizeName(key.Ecosystem, key.Name)
	return key, version, true
}

// Keys returns the distinct lookup keys of inv's matched packages, sorted.
func Keys(inv *scan.Inventory) []PackageKey {
	seen := map[PackageKey]bool{}
	var out []PackageKey
	for i := range inv.Packages {
		k, _, ok := LookupKey(&inv.Packages[i])
		if ok && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// SupportedOS reports whether the image's OS has an advisory source
// (Debian, Ubuntu, Alpine, AlmaLinux, Rocky, RHEL, Wolfi, Chainguard, SUSE,
// openSUSE, Mageia, openEuler). An image without os-release (nil: static
// binaries, distroless) is supported: its language packages are matched.
// OSes scan resolves but no feed covers (Amazon Linux, CentOS, Fedora,
// Photon, Mariner/Azure Linux) are not.
// When it returns false the caller records scan status UNSUPPORTED_OS.
func SupportedOS(os *scan.OSRelease) bool {
	if os == nil || os.ID == "" {
		return true
	}
	switch strings.ToLower(os.ID) {
	case "debian", "ubuntu", "alpine", "almalinux", "rocky", "rhel", "wolfi", "chainguard",
		"sles", "sled", "sle-micro", "sles_sap", "opensuse-leap", "opensuse-tumbleweed", "opensuse", "mageia", "openeuler":
		return true
	}
	return false
}

// FindingID is the stable finding id: hex SHA-256 (first 128 bits) of the
// image manifest digest, the package's ecosystem, name, version and path,
// and the vulnerability id. Rescans of the same image give the same id.
func FindingID(image digest.Digest, p *scan.Package, vulnID string) string {
	h := sha256.New()
	for _, s := range []string{image.String(), p.Ecosystem, p.Name, p.Version, p.Path, vulnID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Match matches every package of inv against adv and returns the findings,
// highest severity first, one per (package, vulnerability id). Withdrawn
// advisories are skipped. The vulnerability id is the advisory's CVE id when
// it has one (its own id or an alias); the other ids go to RelatedIDs; two
// advisories naming the same CVE for the same package give one finding.
// Status is ACTIVE; observation times are left zero for the caller (the
// findings store) to set. Errors are ctx's or adv's, wrapped.
func Match(ctx context.Context, inv *scan.Inventory, adv Advisories) ([]scan.Finding, error) {
	cache := map[PackageKey]*Matcher{}
	var out []scan.Finding
	byID := map[string]int{}
	for i := range inv.Packages {
		p := &inv.Packages[i]
		key, version, ok := LookupKey(p)
		if !ok {
			continue
		}
		m, seen := cache[key]
		if !seen {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			advs, err := adv.ForPackage(ctx, key.Ecosystem, key.Name)
			if err != nil {
				return nil, fmt.Errorf("match: advisories for %s: %w", key, err)
			}
			m = NewMatcher(key, advs)
			cache[key] = m
		}
		for _, f := range m.Match(inv.Image, p, version) {
			if j, dup := byID[f.ID]; dup {
				mergeFinding(&out[j], f)
				continue
			}
			byID[f.ID] = len(out)
			out = append(out, f)
		}
	}
	SortFindings(out)
	return out, nil
}

// MergeDuplicates folds findings with the same ID (one package, two
// advisories naming the same CVE) into the first, keeping order.
func MergeDuplicates(fs []scan.Finding) []scan.Finding {
	byID := map[string]int{}
	out := fs[:0]
	for _, f := range fs {
		if j, dup := byID[f.ID]; dup {
			mergeFinding(&out[j], f)
			continue
		}
		byID[f.ID] = len(out)
		out = append(out, f)
	}
	return out
}

// MatchPackage matches one package (looked up under key, compared at
// version; see LookupKey) against advs, the advisories filed under key.
func MatchPackage(image digest.Digest, p *scan.Package, key PackageKey, version string, advs []Advisory) []scan.Finding {
	return NewMatcher(key, advs).Match(image, p, version)
}

// Matcher matches many packages filed under one key against that key's
// advisories, memoising parsed versions and per-version results: a delta
// re-match evaluates the same (package, version) in thousands of images.
// Not safe for concurrent use.
type Matcher struct {
	key   PackageKey
	advs  []Advisory
	vc    *versionCache
	byVer map[string][]scan.Finding // templates: no image, package or id
}

// NewMatcher returns a Matcher for key's advisories advs (key's name is
// normalised: NormalizeName).
func NewMatcher(key PackageKey, advs []Advisory) *Matcher {
	key = NormalizeKey(key)
	return &Matcher{key: key, advs: advs, vc: newVersionCache(key.Ecosystem), byVer: map[string][]scan.Finding{}}
}

// Match returns p's findings in image (p compared at version).
func (m *Matcher) Match(image digest.Digest, p *scan.Package, version string) []scan.Finding {
	tmpl, ok := m.byVer[version]
	if !ok {
		tmpl = m.evaluate(version)
		m.byVer[version] = tmpl
	}
	if len(tmpl) == 0 {
		return nil
	}
	out := make([]scan.Finding, len(tmpl))
	for i, f := range tmpl {
		f.Image, f.Package = image, *p
		f.ID = FindingID(image, p, f.VulnerabilityID)
		f.RelatedIDs = slices.Clone(f.RelatedIDs)
		f.FixedVersions = slices.Clone(f.FixedVersions)
		out[i] = f
	}
	return out
}

func (m *Matcher) evaluate(version string) []scan.Finding {
	var out []scan.Finding
	for ai := range m.advs {
		a := &m.advs[ai]
		if a.IsWithdrawn() {
			continue
		}
		var hit *Affected
		var fixed []string
		unfixed := false
		for fi := range a.Affected {
			af := &a.Affected[fi]
			if af.Package.Ecosystem != m.key.Ecosystem || NormalizeName(af.Package.Ecosystem, af.Package.Name) != m.key.Name {
				continue
			}
			vd := af.evaluate(m.vc, version)
			if !vd.Affected {
				continue
			}
			if hit == nil {
				hit = af
			}
			for _, f := range vd.Fixed {
				fixed = appendUniq(fixed, f)
			}
			unfixed = unfixed || vd.Unfixed
		}
		if hit == nil {
			continue
		}
		out = append(out, newFinding(a, hit, fixed, unfixed))
	}
	return out
}

// newFinding builds a finding template: the caller sets Image, Package and ID.
func newFinding(a *Advisory, af *Affected, fixed []string, unfixed bool) scan.Finding {
	vulnID, related := VulnerabilityID(a)
	cvss := CVSSScores(append(append([]SeverityScore{}, af.Severity...), a.Severity...))
	vendor := VendorSeverity(a, af)
	fix := "NO"
	switch {
	case len(fixed) > 0 && !unfixed:
		fix = "YES"
	case len(fixed) > 0:
		fix = "PARTIAL"
	}
	title := a.Summary
	if title == "" {
		title = vulnID + " - " + af.Package.Name
	}
	var refs []string
	src := ""
	for _, r := range a.References {
		if r.Type == "ADVISORY" && src == "" {
			src = r.URL
		}
		if len(refs) < 20 {
			refs = append(refs, r.URL)
		}
	}
	if src == "" {
		src = "https://osv.dev/vulnerability/" + a.ID
	}
	return scan.Finding{
		VulnerabilityID: vulnID,
		AdvisoryID:      a.ID,
		RelatedIDs:      related,
		Title:           title,
		Description:     a.Details,
		Severity:        severityOf(cvss, vendor),
		VendorSeverity:  vendor,
		CVSS:            cvss,
		FixedVersions:   fixed,
		FixAvailable:    fix,
		SourceURL:       src,
		References:      refs,
		Status:          scan.FindingActive,
	}
}

// VulnerabilityID returns the id a finding reports for a: the CVE id when a
// is one or has one as alias, else a's own id; related holds the other ids
// (a's id and aliases), sorted.
func VulnerabilityID(a *Advisory) (id string, related []string) {
	id = a.ID
	if !strings.HasPrefix(id, "CVE-") {
		for _, al := range a.Aliases {
			if strings.HasPrefix(al, "CVE-") {
				id = al
				break
			}
		}
	}
	for _, x := range append([]string{a.ID}, a.Aliases...) {
		if x != id {
			related = appendUniq(related, x)
		}
	}
	sort.Strings(related)
	return id, related
}

func mergeFinding(dst *scan.Finding, src scan.Finding) {
	for _, r := range append([]string{src.AdvisoryID}, src.RelatedIDs...) {
		if r != dst.VulnerabilityID && r != dst.AdvisoryID {
			dst.RelatedIDs = appendUniq(dst.RelatedIDs, r)
		}
	}
	sort.Strings(dst.RelatedIDs)
	for _, f := range src.FixedVersions {
		dst.FixedVersions = appendUniq(dst.FixedVersions, f)
	}
	if src.Severity.Rank() > dst.Severity.Rank() {
		dst.Severity = src.Severity
	}
	dst.CVSS = append(dst.CVSS, src.CVSS...)
	if dst.VendorSeverity == "" {
		dst.VendorSeverity = src.VendorSeverity
	}
}

// SortFindings orders findings by severity (highest first), then
// vulnerability id, package name and version.
func SortFindings(fs []scan.Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if ra, rb := a.Severity.Rank(), b.Severity.Rank(); ra != rb {
			return ra > rb
		}
		if a.VulnerabilityID != b.VulnerabilityID {
			return a.VulnerabilityID < b.VulnerabilityID
		}
		if a.Package.Name != b.Package.Name {
			return a.Package.Name < b.Package.Name
		}
		return a.Package.Version < b.Package.Version
	})
}
