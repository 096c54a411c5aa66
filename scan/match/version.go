package match

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/osv-scalibr/semantic"
)

// ErrUnsupportedEcosystem is returned (wrapped) for an ecosystem whose
// version order tollgate does not know.
var ErrUnsupportedEcosystem = errors.New("match: unsupported ecosystem")

// Version is a parsed version in one ecosystem's order.
type Version struct {
	v   semantic.Version
	raw string
}

// String returns the version as written.
func (v Version) String() string { return v.raw }

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than w.
// Both must come from the same ecosystem.
func (v Version) Compare(w Version) (int, error) {
	c, err := v.v.Compare(w.v)
	if err != nil {
		return 0, fmt.Errorf("match: compare %q with %q: %w", v.raw, w.raw, err)
	}
	return c, nil
}

// ParseVersion parses s in ecosystem's version order, exactly as the
// ecosystem's tooling sorts: dpkg for Debian/Ubuntu (epochs, '~', binNMU
// "+bN"), apk for Alpine/Wolfi/Chainguard ("-rN", "_p", "_rc"), rpmvercmp for
// Red Hat/AlmaLinux/Rocky/SUSE ("epoch:version-release", '~', '^'), SemVer 2
// for Go (leading "v", "+incompatible", pseudo-versions; the stdlib's "go1.21.0"
// toolchain form is accepted), npm and crates.io, PEP 440 for PyPI, Maven's
// ComparableVersion, RubyGems, NuGet and Packagist (Composer). Ecosystem may be
// release-qualified ("Debian:12"). The implementation is
// github.com/google/osv-scalibr/semantic, the one osv-scanner uses.
// Errors wrap ErrUnsupportedEcosystem or semantic.ErrInvalidVersion.
func ParseVersion(ecosystem, s string) (Version, error) {
	base := BaseEcosystem(ecosystem)
	if base == "Go" {
		s = goVersion(s)
	}
	v, err := semantic.Parse(s, base)
	if err != nil {
		if errors.Is(err, semantic.ErrUnsupportedEcosystem) {
			return Version{}, fmt.Errorf("%w: %s", ErrUnsupportedEcosystem, ecosystem)
		}
		return Version{}, fmt.Errorf("match: %s version %q: %w", ecosystem, s, err)
	}
	return Version{v: v, raw: s}, nil
}

// parseSemver parses s as SemVer 2 (OSV SEMVER ranges), whatever the ecosystem.
func parseSemver(s string) Version {
	s = goVersion(s)
	return Version{v: semantic.ParseSemverVersion(s), raw: s}
}

// goVersion normalises Go versions: "go1.21.0" (toolchain, stdlib) → "1.21.0",
// "go1.21" → "1.21.0", "go1.21rc2" → "1.21.0-rc.2" (as the Go vulndb writes
// them), "v1.2.3" → "1.2.3".
func goVersion(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "go1") || strings.HasPrefix(s, "go2") {
		s = strings.TrimPrefix(s, "go")
		pre := ""
		for _, tag := range []string{"rc", "beta"} {
			if i := strings.Index(s, tag); i > 0 {
				pre = "-" + tag + "." + s[i+len(tag):]
				s = s[:i]
				break
			}
		}
		if strings.Count(s, ".") == 1 {
			s += ".0"
		}
		return s + pre
	}
	return strings.TrimPrefix(s, "v")
}

// Supported reports whether ecosystem (possibly release-qualified) has a
// known version order.
func Supported(ecosystem string) bool {
	_, err := ParseVersion(ecosystem, "0")
	return !errors.Is(err, ErrUnsupportedEcosystem)
}
