// Package report turns `tollgate scan` findings into outputs for CI and
// code-scanning dashboards, and applies accepted-risk inputs:
//
//   - SARIF 2.1.0 (https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html),
//     built with github.com/owenrumney/go-sarif/v3 and checked against the
//     SARIF 2.1.0 JSON schema it embeds;
//   - Trivy-style ignore files (one vulnerability id per line, '#' comments,
//     optional exp:YYYY-MM-DD);
//   - OpenVEX documents (https://github.com/openvex/spec, v0.2.0 and the
//     earlier v0.0.x shapes): not_affected and fixed statements suppress the
//     findings of matching products.
//
// Everything here is a pure function over []scan.Finding.
package report

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"

	"github.com/tollgate-registry/tollgate/scan"
)

// SARIFOptions describe the run. The zero value works.
type SARIFOptions struct {
	ToolVersion string // tollgate's version; default "dev"
	// Target is what was scanned (the `tollgate scan` SOURCE), recorded in
	// each result's properties.
	Target string
	// InformationURI is the tool's home page; default the project's.
	InformationURI string
	// Suppressed findings (Apply's second result) are reported too, each
	// with an external, accepted SARIF suppression carrying its reason, so
	// dashboards show them as dismissed rather than forgetting them.
	Suppressed []Suppressed
}

// SARIF builds a SARIF 2.1.0 log with one run: one rule per vulnerability id
// (its defaultConfiguration level from the highest severity seen) and one
// result per finding, located at the package's file path with the layer
// digest that introduced it (location properties and a logical location).
// Results are in a stable order (vulnerability, path, package). The log is
// validated against the SARIF 2.1.0 schema; a failure is an error.
func SARIF(findings []scan.Finding, o SARIFOptions) (*sarif.Report, error) {
	if o.ToolVersion == "" {
		o.ToolVersion = "dev"
	}
	if o.InformationURI == "" {
		o.InformationURI = "https://github.com/tollgate-registry/tollgate"
	}
	fs := sortFindings(findings)
	sup := append([]Suppressed(nil), o.Suppressed...)
	sort.SliceStable(sup, func(i, j int) bool { return less(sup[i].Finding, sup[j].Finding) })

	run := sarif.NewRunWithInformationURI("tollgate", o.InformationURI)
	run.Tool.Driver.WithVersion(o.ToolVersion).WithSemanticVersion(o.ToolVersion)
	all := append([]scan.Finding(nil), fs...)
	for _, s := range sup {
		all = append(all, s.Finding)
	}
	all = sortFindings(all)
	worst := map[string]scan.Severity{}
	score := map[string]float64{} // highest CVSS base score per id
	for _, f := range all {
		id := ruleID(f)
		if worst[id] == "" || f.Severity.Rank() > worst[id].Rank() {
			worst[id] = f.Severity
		}
		for _, c := range f.CVSS {
			score[id] = max(score[id], c.BaseScore)
		}
	}
	for _, f := range all {
		id := ruleID(f)
		if run.GetRuleIndex(id) >= 0 {
			continue
		}
		sc, ok := score[id]
		addRule(run, id, f, worst[id], sc, ok)
	}
	for _, f := range fs {
		addResult(run, f, o)
	}
	for _, s := range sup {
		addResult(run, s.Finding, o).AddSuppression(sarif.NewSuppression().WithKind("external").
			WithStatus("accepted").WithJustification(s.Reason))
	}
	rep := sarif.NewReport()
	rep.AddRun(run)
	if err := rep.Validate(); err != nil {
		return nil, fmt.Errorf("report: SARIF does not validate: %w", err)
	}
	return rep, nil
}

// WriteSARIF writes the SARIF log of findings to w as indented JSON.
func WriteSARIF(w io.Writer, findings []scan.Finding, o SARIFOptions) error {
	rep, err := SARIF(findings, o)
	if err != nil {
		return err
	}
	if err := rep.PrettyWrite(w); err != nil {
		return fmt.Errorf("report: write SARIF: %w", err)
	}
	return nil
}

func sortFindings(in []scan.Finding) []scan.Finding {
	fs := append([]scan.Finding(nil), in...)
	sort.SliceStable(fs, func(i, j int) bool { return less(fs[i], fs[j]) })
	return fs
}

// less orders findings by vulnerability, path, package name, image.
func less(a, b scan.Finding) bool {
	if ruleID(a) != ruleID(b) {
		return ruleID(a) < ruleID(b)
	}
	if a.Package.Path != b.Package.Path {
		return a.Package.Path < b.Package.Path
	}
	if a.Package.Name != b.Package.Name {
		return a.Package.Name < b.Package.Name
	}
	return a.Image < b.Image
}

// ruleID is the finding's vulnerability id (the CVE when there is one).
func ruleID(f scan.Finding) string {
	if f.VulnerabilityID != "" {
		return f.VulnerabilityID
	}
	if f.AdvisoryID != "" {
		return f.AdvisoryID
	}
	return "UNKNOWN"
}

// level maps Inspector severities onto SARIF levels.
func level(s scan.Severity) string {
	switch s {
	case scan.SeverityCritical, scan.SeverityHigh:
		return sarif.LevelError
	case scan.SeverityMedium:
		return sarif.LevelWarning
	case scan.SeverityLow, scan.SeverityInformational:
		return sarif.LevelNote
	}
	return sarif.LevelWarning
}

// securitySeverity is the "security-severity" rule property GitHub code
// scanning ranks by: the highest CVSS base score of the id's findings (when
// hasScore), else a score standing for the worst severity.
func securitySeverity(best float64, hasScore bool, worst scan.Severity) string {
	if !hasScore {
		switch worst {
		case scan.SeverityCritical:
			best = 9.5
		case scan.SeverityHigh:
			best = 8.0
		case scan.SeverityMedium:
			best = 5.5
		case scan.SeverityLow:
			best = 2.0
		default:
			best = 0.0
		}
	}
	return strconv.FormatFloat(best, 'f', 1, 64)
}

func helpURI(f scan.Finding) string {
	if f.SourceURL != "" {
		return f.SourceURL
	}
	if len(f.References) > 0 {
		return f.References[0]
	}
	if f.AdvisoryID != "" {
		return "https://osv.dev/vulnerability/" + url.PathEscape(f.AdvisoryID)
	}
	return ""
}

func addRule(run *sarif.Run, id string, f scan.Finding, worst scan.Severity, score float64, hasScore bool) {
	title := f.Title
	if title == "" {
		title = id
	}
	desc := f.Description
	if desc == "" {
		desc = title
	}
	props := sarif.NewPropertyBag().
		Add("security-severity", securitySeverity(score, hasScore, worst)).
		Add("precision", "very-high").
		WithTags([]string{"vulnerability", "security", string(worst)})
	rule := run.AddRule(id).
		WithName(ruleName(id)).
		WithShortDescription(sarif.NewMultiformatMessageString().WithText(title)).
		WithFullDescription(sarif.NewMultiformatMessageString().WithText(desc)).
		WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(level(worst))).
		WithHelp(sarif.NewMultiformatMessageString().
			WithText(fmt.Sprintf("Vulnerability %s\nSeverity: %s\n%s", id, worst, desc)).
			WithMarkdown(fmt.Sprintf("**Vulnerability %s**\n\n| Severity | Advisory |\n| --- | --- |\n| %s | %s |\n\n%s",
				id, worst, f.AdvisoryID, desc))).
		WithProperties(props)
	if u := helpURI(f); u != "" {
		rule.WithHelpURI(u)
	}
}

// ruleName is a PascalCase-ish name from the id ("CVE-2024-1" → "Cve20241").
func ruleName(id string) string {
	var b strings.Builder
	up := true
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			if up {
				b.WriteString(strings.ToUpper(string(r)))
			} else {
				b.WriteString(strings.ToLower(string(r)))
			}
			up = false
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			up = true
		default:
			up = true
		}
	}
	if b.Len() == 0 {
		return "Vulnerability"
	}
	return b.String()
}

func addResult(run *sarif.Run, f scan.Finding, o SARIFOptions) *sarif.Result {
	p := f.Package
	fixed := "no fixed version"
	if len(f.FixedVersions) > 0 {
		fixed = "fixed in " + strings.Join(f.FixedVersions, ", ")
	}
	msg := fmt.Sprintf("Package %s %s (%s) is affected by %s (%s); %s. Found in /%s, layer %s.",
		p.Name, p.Version, p.Ecosystem, ruleID(f), f.Severity, fixed, p.Path, p.Layer)
	path := p.Path
	if path == "" {
		path = "."
	}
	loc := sarif.NewLocationWithPhysicalLocation(sarif.NewPhysicalLocation().
		WithArtifactLocation(sarif.NewSimpleArtifactLocation((&url.URL{Path: path}).EscapedPath())).
		WithRegion(sarif.NewSimpleRegion(1, 1))).
		WithMessage(sarif.NewTextMessage("layer " + p.Layer.String())).
		WithProperties(sarif.NewPropertyBag().Add("layer", p.Layer.String()).Add("image", f.Image.String()))
	if p.Layer != "" {
		loc.AddLogicalLocation(sarif.NewLogicalLocation().
			WithName(p.Layer.String()).
			WithFullyQualifiedName(p.Layer.String() + "/" + p.Path).
			WithKind("module"))
	}
	props := sarif.NewPropertyBag().
		Add("severity", string(f.Severity)).
		Add("packageName", p.Name).
		Add("packageVersion", p.Version).
		Add("ecosystem", p.Ecosystem).
		Add("layer", p.Layer.String()).
		Add("image", f.Image.String())
	if p.PURL != "" {
		props.Add("purl", p.PURL)
	}
	if len(f.FixedVersions) > 0 {
		props.Add("fixedVersions", f.FixedVersions)
	}
	if o.Target != "" {
		props.Add("target", o.Target)
	}
	r := run.CreateResultForRule(ruleID(f)).
		WithLevel(level(f.Severity)).
		WithMessage(sarif.NewTextMessage(msg)).
		AddLocation(loc).
		WithProperties(props)
	if f.ID != "" {
		r.WithPartialFingerprints(map[string]string{"tollgateFindingId/v1": f.ID})
	}
	return r
}
