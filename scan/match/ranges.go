package match

import (
	"sort"
)

// Verdict is the outcome of checking one installed version against one
// affected entry.
type Verdict struct {
	Affected bool
	// Fixed lists the versions that fix the installed one (the first `fixed`
	// event above it in each range that contains it), in range order.
	Fixed []string
	// Unfixed is true when some range containing the version has no fix
	// above it (open-ended, or bounded by last_affected only).
	Unfixed bool
	// Ignored lists why some ranges were not evaluated (GIT ranges, versions
	// that do not parse).
	Ignored []string
}

// Evaluate checks version (as installed) against af under OSV semantics
// (https://ossf.github.io/osv-schema/#evaluation): explicit `versions`, then
// each SEMVER/ECOSYSTEM range with events sorted by version
// (`introduced` "0" first) — introduced sets, fixed (>=) and last_affected (>)
// clear — bounded by `limit` events. GIT ranges are ignored (tollgate has
// commit hashes for no package) and reported in Verdict.Ignored.
// ecosystem is the package's (release-qualified) ecosystem.
func (af *Affected) Evaluate(ecosystem, version string) Verdict {
	return af.evaluate(newVersionCache(ecosystem), version)
}

// versionCache memoises parsed versions of one ecosystem: the same event
// versions recur across a package's advisories (stdlib's "1.21.0-0").
type versionCache struct {
	ecosystem string
	eco       map[string]ecoParse
	semver    map[string]Version
}

type ecoParse struct {
	v   Version
	err error
}

func newVersionCache(ecosystem string) *versionCache {
	return &versionCache{ecosystem: ecosystem, eco: map[string]ecoParse{}, semver: map[string]Version{}}
}

func (c *versionCache) parse(s string) (Version, error) {
	if p, ok := c.eco[s]; ok {
		return p.v, p.err
	}
	v, err := ParseVersion(c.ecosystem, s)
	c.eco[s] = ecoParse{v, err}
	return v, err
}

func (c *versionCache) parseSemver(s string) Version {
	if v, ok := c.semver[s]; ok {
		return v
	}
	v := parseSemver(s)
	c.semver[s] = v
	return v
}

func (af *Affected) evaluate(vc *versionCache, version string) Verdict {
	ecosystem := vc.ecosystem
	var vd Verdict
	iv, err := vc.parse(version)
	haveIV := err == nil
	if !haveIV {
		vd.Ignored = append(vd.Ignored, "installed version: "+err.Error())
	}
	for _, v := range af.Versions {
		if v == version || (haveIV && sameVersion(vc, iv, v)) {
			vd.Affected = true
			break
		}
	}
	inRange := false
	for i := range af.Ranges {
		r := &af.Ranges[i]
		var parse func(string) (Version, error)
		var cur Version
		switch r.Type {
		case RangeSemver:
			parse = func(s string) (Version, error) { return vc.parseSemver(s), nil }
			cur = vc.parseSemver(version)
		case RangeEcosystem:
			if !haveIV {
				continue
			}
			parse = vc.parse
			cur = iv
		case RangeGit:
			vd.Ignored = append(vd.Ignored, "GIT range ignored: package versions are not commits")
			continue
		default:
			vd.Ignored = append(vd.Ignored, "unknown range type "+r.Type)
			continue
		}
		hit, fix, ok := evalRange(r, cur, parse)
		if !ok {
			vd.Ignored = append(vd.Ignored, "range with unparseable events")
		}
		if !hit {
			continue
		}
		inRange = true
		if fix != "" {
			vd.Fixed = appendUniq(vd.Fixed, fix)
		} else {
			vd.Unfixed = true
		}
	}
	if inRange {
		vd.Affected = true
	} else if vd.Affected {
		// Listed explicitly: a fix is whatever fixed event lies above.
		fixes := fixesAbove(af, ecosystem, iv, haveIV)
		vd.Fixed = fixes
		vd.Unfixed = len(fixes) == 0
	}
	return vd
}

type ev struct {
	kind string // introduced, fixed, last_affected
	v    Version
	zero bool
	raw  string
}

// evalRange applies the OSV algorithm to one range. It returns whether cur
// is affected, the fix above it ("" if none) and whether every event parsed.
func evalRange(r *Range, cur Version, parse func(string) (Version, error)) (hit bool, fix string, ok bool) {
	ok = true
	var evs []ev
	var limits []Version
	for _, e := range r.Events {
		var kind, raw string
		switch {
		case e.Introduced != "":
			kind, raw = "introduced", e.Introduced
		case e.Fixed != "":
			kind, raw = "fixed", e.Fixed
		case e.LastAffected != "":
			kind, raw = "last_affected", e.LastAffected
		case e.Limit != "":
			if e.Limit == "*" {
				continue
			}
			lv, err := parse(e.Limit)
			if err != nil {
				ok = false
				continue
			}
			limits = append(limits, lv)
			continue
		default:
			continue
		}
		if kind == "introduced" && raw == "0" {
			evs = append(evs, ev{kind: kind, zero: true, raw: raw})
			continue
		}
		v, err := parse(raw)
		if err != nil {
			ok = false
			continue
		}
		evs = append(evs, ev{kind: kind, v: v, raw: raw})
	}
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if a.zero || b.zero {
			return a.zero && !b.zero
		}
		c, err := a.v.Compare(b.v)
		if err != nil {
			return false
		}
		if c == 0 {
			return a.kind == "introduced" && b.kind != "introduced"
		}
		return c < 0
	})
	for _, e := range evs {
		switch e.kind {
		case "introduced":
			if e.zero || cmp(cur, e.v) >= 0 {
				hit = true
			}
		case "fixed":
			if cmp(cur, e.v) >= 0 {
				hit = false
			}
		case "last_affected":
			if cmp(cur, e.v) > 0 {
				hit = false
			}
		}
	}
	if hit && len(limits) > 0 {
		below := false
		for _, l := range limits {
			if cmp(cur, l) < 0 {
				below = true
			}
		}
		hit = below
	}
	if !hit {
		return false, "", ok
	}
	for _, e := range evs {
		if e.kind == "fixed" && cmp(cur, e.v) < 0 {
			return true, e.raw, ok
		}
	}
	return true, "", ok
}

func cmp(a, b Version) int {
	c, err := a.Compare(b)
	if err != nil {
		return 0
	}
	return c
}

func sameVersion(vc *versionCache, iv Version, s string) bool {
	v, err := vc.parse(s)
	if err != nil {
		return false
	}
	c, err := iv.Compare(v)
	return err == nil && c == 0
}

func fixesAbove(af *Affected, ecosystem string, iv Version, haveIV bool) []string {
	if !haveIV {
		return nil
	}
	var out []string
	for _, r := range af.Ranges {
		if r.Type == RangeGit {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed == "" {
				continue
			}
			var fv Version
			if r.Type == RangeSemver {
				fv = parseSemver(e.Fixed)
				if cmp(parseSemver(iv.raw), fv) < 0 {
					out = appendUniq(out, e.Fixed)
				}
				continue
			}
			fv, err := ParseVersion(ecosystem, e.Fixed)
			if err == nil && cmp(iv, fv) < 0 {
				out = appendUniq(out, e.Fixed)
			}
		}
	}
	return out
}

func appendUniq(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
