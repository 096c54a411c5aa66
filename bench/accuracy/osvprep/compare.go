package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/tollgate-registry/tollgate/scan/match"
)

// recordID is an advisory record id of the shared data (not a CVE or GHSA
// alias): what both scanners report as a vulnerability's own id.
var recordID = regexp.MustCompile(`^(GO|PYSEC|ALPINE|ALSA|ALBA|ALEA)-`)

// finding is one (package, advisory record) pair, normalised for comparison.
type finding struct{ eco, name, version, id string }

func (f finding) String() string {
	return fmt.Sprintf("%-8s %-40s %-22s %s", f.eco, f.name, f.version, f.id)
}

// norm makes the two scanners' spellings of one package equal: base
// ecosystem, PyPI names lower-cased with '_'/'.' as '-' (PEP 503), Go
// versions without "v"/"go".
func norm(eco, name, version, id string) finding {
	eco = match.BaseEcosystem(eco)
	switch eco {
	case "PyPI":
		name = strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
	case "Go":
		version = strings.TrimPrefix(strings.TrimPrefix(version, "go"), "v")
	}
	return finding{eco, name, version, id}
}

// tollgateFindings reads `tollgate scan --format json`: every finding's
// advisory id, plus the record ids among its relatedIds (advisories naming
// the same CVE for the same package are one tollgate finding), and every
// package (id "").
func tollgateFindings(r io.Reader) (map[finding]bool, error) {
	var doc struct {
		Images []struct {
			Packages []struct{ Name, Version, Ecosystem string } `json:"packages"`
			Findings []struct {
				AdvisoryID string   `json:"advisoryId"`
				RelatedIDs []string `json:"relatedIds"`
				Package    struct{ Name, Version, Ecosystem string }
			} `json:"findings"`
		} `json:"images"`
	}
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("osvprep: tollgate json: %w", err)
	}
	out := map[finding]bool{}
	for _, im := range doc.Images {
		for _, p := range im.Packages {
			out[norm(p.Ecosystem, p.Name, p.Version, "")] = true
		}
		for _, f := range im.Findings {
			p := f.Package
			out[norm(p.Ecosystem, p.Name, p.Version, f.AdvisoryID)] = true
			for _, id := range f.RelatedIDs {
				if recordID.MatchString(id) {
					out[norm(p.Ecosystem, p.Name, p.Version, id)] = true
				}
			}
		}
	}
	return out, nil
}

// osvFindings reads `osv-scanner scan image --format json` (with
// --all-packages, every package, id ""). OS packages are named by their
// binary name (os_package_name; osv-scanner's name is the source package's).
func osvFindings(r io.Reader) (map[finding]bool, error) {
	var doc struct {
		Results []struct {
			Packages []struct {
				Package struct {
					Name, Version, Ecosystem string
					OSPackageName            string `json:"os_package_name"`
				} `json:"package"`
				Vulnerabilities []struct {
					ID string `json:"id"`
				} `json:"vulnerabilities"`
			} `json:"packages"`
		} `json:"results"`
	}
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("osvprep: osv-scanner json: %w", err)
	}
	out := map[finding]bool{}
	for _, res := range doc.Results {
		for _, p := range res.Packages {
			name := p.Package.Name
			if p.Package.OSPackageName != "" {
				name = p.Package.OSPackageName
			}
			out[norm(p.Package.Ecosystem, name, p.Package.Version, "")] = true
			for _, v := range p.Vulnerabilities {
				out[norm(p.Package.Ecosystem, name, p.Package.Version, v.ID)] = true
			}
		}
	}
	return out, nil
}

// compare prints the (package, advisory) pairs found by both, by tollgate
// only and by osv-scanner only, then the counts.
func compare(_ context.Context, w io.Writer, tgPath, osvPath string) error {
	open := func(p string, read func(io.Reader) (map[finding]bool, error)) (map[finding]bool, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("osvprep: %w", err)
		}
		defer f.Close()
		return read(f)
	}
	tg, err := open(tgPath, tollgateFindings)
	if err != nil {
		return err
	}
	osv, err := open(osvPath, osvFindings)
	if err != nil {
		return err
	}
	for _, pass := range []struct {
		what     string
		packages bool
	}{{"packages", true}, {"(package, advisory) pairs", false}} {
		var both, onlyTG, onlyOSV []finding
		for f := range tg {
			if (f.id == "") != pass.packages {
				continue
			}
			if osv[f] {
				both = append(both, f)
			} else {
				onlyTG = append(onlyTG, f)
			}
		}
		for f := range osv {
			if (f.id == "") == pass.packages && !tg[f] {
				onlyOSV = append(onlyOSV, f)
			}
		}
		for _, l := range []struct {
			label string
			fs    []finding
		}{{"tollgate-only", onlyTG}, {"osv-scanner-only", onlyOSV}} {
			sort.Slice(l.fs, func(i, j int) bool { return l.fs[i].String() < l.fs[j].String() })
			for _, f := range l.fs {
				fmt.Fprintf(w, "  %-16s %s\n", l.label, f)
			}
		}
		fmt.Fprintf(w, "  %s: tollgate %d, osv-scanner %d, both %d, tollgate only %d, osv-scanner only %d\n",
			pass.what, len(both)+len(onlyTG), len(both)+len(onlyOSV), len(both), len(onlyTG), len(onlyOSV))
	}
	return nil
}
