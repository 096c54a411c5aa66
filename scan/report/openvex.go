package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/package-url/packageurl-go"

	"github.com/tollgate-registry/tollgate/scan"
)

// OpenVEX statuses (https://github.com/openvex/spec/blob/main/OPENVEX-SPEC.md#status-labels).
const (
	VEXNotAffected        = "not_affected"
	VEXAffected           = "affected"
	VEXFixed              = "fixed"
	VEXUnderInvestigation = "under_investigation"
)

// MaxVEXBytes bounds an OpenVEX document ParseOpenVEX accepts.
const MaxVEXBytes = 32 << 20

// VEX is one or more parsed OpenVEX documents' statements.
type VEX struct {
	Statements []VEXStatement
}

// VEXStatement is one OpenVEX statement, normalised across spec versions.
type VEXStatement struct {
	DocID         string // the document's @id
	Vulnerability string // name (or @id when unnamed)
	Aliases       []string
	Products      []VEXProduct
	Status        string
	Justification string
	Timestamp     time.Time // statement timestamp, else the document's
	order         int       // position across documents, breaking timestamp ties
}

// VEXProduct is a product (or subcomponent) identifier: its @id, purl and
// hashes; Subcomponents narrow the statement to those components of it.
type VEXProduct struct {
	ID            string
	PURL          string
	Hashes        map[string]string
	Subcomponents []VEXProduct
}

// Wire shapes: v0.2.0 uses objects, v0.0.x strings; both are accepted.
type vexDoc struct {
	Context    string            `json:"@context"`
	ID         string            `json:"@id"`
	Timestamp  *time.Time        `json:"timestamp"`
	Statements []json.RawMessage `json:"statements"`
}

type vexStatementWire struct {
	Vulnerability   json.RawMessage   `json:"vulnerability"`
	Products        []json.RawMessage `json:"products"`
	Subcomponents   []json.RawMessage `json:"subcomponents"` // v0.0.x
	Status          string            `json:"status"`
	Justification   string            `json:"justification"`
	ImpactStatement string            `json:"impact_statement"`
	Timestamp       *time.Time        `json:"timestamp"`
}

type vexVulnWire struct {
	ID      string   `json:"@id"`
	Name    string   `json:"name"`
	Aliases []string `json:"aliases"`
}

type vexProductWire struct {
	ID          string            `json:"@id"`
	Identifiers map[string]string `json:"identifiers"`
	Hashes      map[string]string `json:"hashes"`
	Subs        []json.RawMessage `json:"subcomponents"`
}

// ParseOpenVEX parses one OpenVEX JSON document (at most MaxVEXBytes).
// It requires an OpenVEX @context (https://openvex.dev/ns…), a vulnerability
// and at least one product per statement, and a known status; the order of
// statements is kept so that, among statements of equal timestamp, the
// later one wins (as the spec's "latest statement" rule).
func ParseOpenVEX(b []byte) (*VEX, error) {
	if len(b) > MaxVEXBytes {
		return nil, fmt.Errorf("report: OpenVEX document over %d bytes", MaxVEXBytes)
	}
	var d vexDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("report: OpenVEX: %w", err)
	}
	if !strings.HasPrefix(d.Context, "https://openvex.dev/ns") {
		return nil, fmt.Errorf("report: OpenVEX: @context %q is not an OpenVEX context (https://openvex.dev/ns/…)", d.Context)
	}
	v := &VEX{}
	for i, raw := range d.Statements {
		s, err := parseStatement(raw)
		if err != nil {
			return nil, fmt.Errorf("report: OpenVEX statement %d: %w", i, err)
		}
		s.DocID = d.ID
		if s.Timestamp.IsZero() && d.Timestamp != nil {
			s.Timestamp = *d.Timestamp
		}
		v.Statements = append(v.Statements, s)
	}
	v.renumber()
	return v, nil
}

func parseStatement(raw json.RawMessage) (VEXStatement, error) {
	var w vexStatementWire
	if err := json.Unmarshal(raw, &w); err != nil {
		return VEXStatement{}, err
	}
	s := VEXStatement{Status: w.Status, Justification: w.Justification}
	if s.Justification == "" {
		s.Justification = w.ImpactStatement
	}
	if w.Timestamp != nil {
		s.Timestamp = *w.Timestamp
	}
	switch s.Status {
	case VEXNotAffected, VEXAffected, VEXFixed, VEXUnderInvestigation:
	default:
		return s, fmt.Errorf("status %q: want not_affected, affected, fixed or under_investigation", s.Status)
	}
	var name string
	if err := json.Unmarshal(w.Vulnerability, &name); err == nil {
		s.Vulnerability = name
	} else {
		var vw vexVulnWire
		if err := json.Unmarshal(w.Vulnerability, &vw); err != nil {
			return s, errors.New("vulnerability: want a name or an object")
		}
		s.Vulnerability, s.Aliases = vw.Name, vw.Aliases
		if s.Vulnerability == "" {
			s.Vulnerability = vw.ID
		}
	}
	if s.Vulnerability == "" {
		return s, errors.New("vulnerability has no name")
	}
	subs, err := parseProducts(w.Subcomponents)
	if err != nil {
		return s, fmt.Errorf("subcomponents: %w", err)
	}
	s.Products, err = parseProducts(w.Products)
	if err != nil {
		return s, fmt.Errorf("products: %w", err)
	}
	if len(s.Products) == 0 {
		return s, errors.New("no products")
	}
	if len(subs) > 0 { // v0.0.x: statement-level subcomponents apply to every product
		for i := range s.Products {
			s.Products[i].Subcomponents = append(s.Products[i].Subcomponents, subs...)
		}
	}
	return s, nil
}

func parseProducts(raws []json.RawMessage) ([]VEXProduct, error) {
	var out []VEXProduct
	for _, raw := range raws {
		var id string
		if err := json.Unmarshal(raw, &id); err == nil {
			p := VEXProduct{ID: id}
			if strings.HasPrefix(id, "pkg:") {
				p.PURL = id
			}
			out = append(out, p)
			continue
		}
		var w vexProductWire
		if err := json.Unmarshal(raw, &w); err != nil {
			return nil, errors.New("want a string or an object")
		}
		p := VEXProduct{ID: w.ID, PURL: w.Identifiers["purl"], Hashes: w.Hashes}
		if p.PURL == "" && strings.HasPrefix(w.ID, "pkg:") {
			p.PURL = w.ID
		}
		if p.ID == "" && p.PURL == "" && len(p.Hashes) == 0 {
			return nil, errors.New("a product without @id, purl or hashes")
		}
		subs, err := parseProducts(w.Subs)
		if err != nil {
			return nil, err
		}
		p.Subcomponents = subs
		out = append(out, p)
	}
	return out, nil
}

// Merge returns the statements of vs together (for several --vex files),
// later documents' statements winning timestamp ties.
func Merge(vs ...*VEX) *VEX {
	out := &VEX{}
	for _, v := range vs {
		if v != nil {
			out.Statements = append(out.Statements, v.Statements...)
		}
	}
	out.renumber()
	return out
}

func (v *VEX) renumber() {
	for i := range v.Statements {
		v.Statements[i].order = i
	}
}

// Match returns the statement that decides f — the latest (by timestamp,
// then document order) statement naming f's vulnerability (its name or an
// alias equal to f's vulnerability, advisory or a related id) for a product
// that is f's package (purl), or f's image (a pkg:oci purl, a sha256 digest
// in its @id, or its sha-256 hash) when the product has no subcomponents or
// one of them is f's package — or nil when none does. images are further
// digests that count as f's image (the index scanned per platform).
func (v *VEX) Match(f scan.Finding, images ...digest.Digest) *VEXStatement {
	if v == nil {
		return nil
	}
	var cands []*VEXStatement
	for i := range v.Statements {
		s := &v.Statements[i]
		if !s.namesVuln(f) {
			continue
		}
		for _, p := range s.Products {
			if p.applies(f, images) {
				cands = append(cands, s)
				break
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if !cands[i].Timestamp.Equal(cands[j].Timestamp) {
			return cands[i].Timestamp.Before(cands[j].Timestamp)
		}
		return cands[i].order < cands[j].order
	})
	return cands[len(cands)-1]
}

// Suppresses reports whether the statement suppresses findings
// (not_affected or fixed).
func (s *VEXStatement) Suppresses() bool {
	return s != nil && (s.Status == VEXNotAffected || s.Status == VEXFixed)
}

func (s *VEXStatement) namesVuln(f scan.Finding) bool {
	if findingHasID(f, s.Vulnerability) {
		return true
	}
	for _, a := range s.Aliases {
		if findingHasID(f, a) {
			return true
		}
	}
	return false
}

func (p VEXProduct) applies(f scan.Finding, images []digest.Digest) bool {
	if p.isPackage(f) {
		return true // a statement about the package itself
	}
	if !p.isImage(f, images) {
		return false
	}
	if len(p.Subcomponents) == 0 {
		return true // the whole image
	}
	for _, s := range p.Subcomponents {
		if s.isPackage(f) {
			return true
		}
	}
	return false
}

var sha256Ref = regexp.MustCompile(`sha256:[a-f0-9]{64}`)

// imageDigests returns the image digests p names: a pkg:oci purl's version,
// a sha256:… in its @id (bare or in a reference), its sha-256 hash.
func (p VEXProduct) imageDigests() []digest.Digest {
	var out []digest.Digest
	for _, s := range []string{p.PURL, p.ID} {
		if !strings.HasPrefix(s, "pkg:") {
			if m := sha256Ref.FindString(s); m != "" {
				out = append(out, digest.Digest(m))
			}
			continue
		}
		pu, err := packageurl.FromString(s)
		if err == nil && (pu.Type == "oci" || pu.Type == "docker") {
			if m := sha256Ref.FindString(pu.Version); m != "" {
				out = append(out, digest.Digest(m))
			}
		}
	}
	if h := p.Hashes["sha-256"]; h != "" {
		out = append(out, digest.Digest("sha256:"+strings.ToLower(h)))
	}
	return out
}

func (p VEXProduct) isImage(f scan.Finding, images []digest.Digest) bool {
	for _, d := range p.imageDigests() {
		if d == f.Image {
			return true
		}
		for _, i := range images {
			if d == i {
				return true
			}
		}
	}
	return false
}

// isPackage compares p's purl with the finding package's: same type,
// namespace and name (case-insensitively); p's version, when given, equal;
// p's qualifiers, when given, present with equal values.
func (p VEXProduct) isPackage(f scan.Finding) bool {
	if p.PURL == "" || f.Package.PURL == "" {
		return false
	}
	want, err := packageurl.FromString(p.PURL)
	if err != nil {
		return false
	}
	have, err := packageurl.FromString(f.Package.PURL)
	if err != nil {
		return false
	}
	if !strings.EqualFold(want.Type, have.Type) || !strings.EqualFold(want.Namespace, have.Namespace) ||
		!strings.EqualFold(want.Name, have.Name) {
		return false
	}
	if want.Version != "" && want.Version != have.Version {
		return false
	}
	hq := have.Qualifiers.Map()
	for k, v := range want.Qualifiers.Map() {
		if hq[k] != v {
			return false
		}
	}
	return true
}
