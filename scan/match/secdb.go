package match

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// secdbDoc is one Alpine secdb document (https://secdb.alpinelinux.org/,
// one per branch and repository; YAML in the old git repository, JSON on the
// current service, same keys).
type secdbDoc struct {
	DistroVersion string       `json:"distroversion" yaml:"distroversion"`
	RepoName      string       `json:"reponame" yaml:"reponame"`
	URLPrefix     string       `json:"urlprefix" yaml:"urlprefix"`
	Packages      []secdbEntry `json:"packages" yaml:"packages"`
}

type secdbEntry struct {
	Pkg struct {
		Name     string              `json:"name" yaml:"name"`
		Secfixes map[string][]string `json:"secfixes" yaml:"secfixes"`
	} `json:"pkg" yaml:"pkg"`
}

// SecDBIDPrefix starts the id of every advisory converted from secdb
// ("ALPINE-CVE-2019-14904", osv.dev's naming for its Alpine records).
const SecDBIDPrefix = "ALPINE-"

var (
	secdbVuln   = regexp.MustCompile(`^(CVE-\d{4}-\d+|GHSA-[0-9a-z-]+|XSA-\d+|ZBX-\d+|[A-Z]+-\d{4}-\d+)$`)
	alpineMinor = regexp.MustCompile(`^v\d+\.\d+$`)
)

// ParseSecDB converts one Alpine (or Wolfi/Chainguard) secdb document, JSON
// or YAML, into OSV advisories: one per vulnerability id, with one affected
// entry per origin package, ecosystem "Alpine:vX.Y" (from distroversion;
// "Wolfi"/"Chainguard" for those feeds), and an ECOSYSTEM range
// introduced "0" fixed <key>. The key "0" means the branch was never affected
// and yields no affected entry. Entries that are not vulnerability ids (free
// text) are ignored. Errors wrap ErrInvalidAdvisory.
func ParseSecDB(b []byte) ([]Advisory, error) {
	var d secdbDoc
	var err error
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		err = json.Unmarshal(b, &d)
	} else {
		err = yaml.Unmarshal(b, &d)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: secdb: %v", ErrInvalidAdvisory, err)
	}
	eco, err := secdbEcosystem(d)
	if err != nil {
		return nil, err
	}
	byID := map[string]*Advisory{}
	for _, p := range d.Packages {
		name := strings.TrimSpace(p.Pkg.Name)
		if name == "" || !printable(name) {
			continue
		}
		for fixed, ids := range p.Pkg.Secfixes {
			fixed = strings.TrimSpace(fixed)
			if fixed == "0" || fixed == "" {
				continue
			}
			for _, line := range ids {
				for _, tok := range strings.Fields(line) {
					if !secdbVuln.MatchString(tok) {
						continue
					}
					id := SecDBIDPrefix + tok
					a := byID[id]
					if a == nil {
						a = &Advisory{ID: id, Aliases: []string{tok}}
						byID[id] = a
					}
					a.Affected = append(a.Affected, Affected{
						Package: AffectedPackage{Ecosystem: eco, Name: name, PURL: "pkg:apk/alpine/" + name},
						Ranges:  []Range{{Type: RangeEcosystem, Events: []Event{{Introduced: "0"}, {Fixed: fixed}}}},
					})
				}
			}
		}
	}
	out := make([]Advisory, 0, len(byID))
	for _, a := range byID {
		sortAffected(a.Affected)
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func secdbEcosystem(d secdbDoc) (string, error) {
	dv := strings.TrimSpace(d.DistroVersion)
	switch {
	case alpineMinor.MatchString(dv):
		return "Alpine:" + dv, nil
	case strings.Contains(strings.ToLower(d.URLPrefix), "wolfi"):
		return "Wolfi", nil
	case strings.Contains(strings.ToLower(d.URLPrefix), "chainguard"):
		return "Chainguard", nil
	}
	return "", fmt.Errorf("%w: secdb: distroversion %q is not vX.Y", ErrInvalidAdvisory, dv)
}

func sortAffected(af []Affected) {
	sort.SliceStable(af, func(i, j int) bool {
		a, b := af[i].Package, af[j].Package
		if a.Ecosystem != b.Ecosystem {
			return a.Ecosystem < b.Ecosystem
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return fixedOf(af[i]) < fixedOf(af[j])
	})
}

func fixedOf(a Affected) string {
	for _, r := range a.Ranges {
		for _, e := range r.Events {
			if e.Fixed != "" {
				return e.Fixed
			}
		}
	}
	return ""
}

// MergeSecDB merges two advisories with the same secdb-derived id (the same
// CVE in several branches or repositories): affected entries are united,
// duplicates dropped. It reports false when either is not secdb-derived.
func MergeSecDB(dst *Advisory, src Advisory) bool {
	if dst.ID != src.ID || !strings.HasPrefix(dst.ID, SecDBIDPrefix) {
		return false
	}
	seen := map[string]bool{}
	k := func(a Affected) string { return a.Package.Ecosystem + "\x00" + a.Package.Name + "\x00" + fixedOf(a) }
	for _, a := range dst.Affected {
		seen[k(a)] = true
	}
	for _, a := range src.Affected {
		if !seen[k(a)] {
			seen[k(a)] = true
			dst.Affected = append(dst.Affected, a)
		}
	}
	sortAffected(dst.Affected)
	return true
}
