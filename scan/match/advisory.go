// Package match holds tollgate's advisory model (OSV schema 1.6,
// https://ossf.github.io/osv-schema/), parsers for OSV JSON/YAML and the Alpine
// secdb format, per-ecosystem version semantics (osv-scalibr's semantic
// package), and Match, which turns an image inventory into findings.
//
// It meets analysis only through scan.Inventory, and the advisory store only
// through the Advisories interface (index implements it).
package match

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Advisories looks advisories up by affected package. Ecosystem is the full,
// release-qualified OSV ecosystem ("Go", "Debian:12", "Alpine:v3.18").
// Implementations return an empty slice (not an error) when nothing is known.
type Advisories interface {
	ForPackage(ctx context.Context, ecosystem, name string) ([]Advisory, error)
}

// ErrInvalidAdvisory is returned (wrapped) for bytes that are not a usable
// OSV record or secdb document.
var ErrInvalidAdvisory = errors.New("match: invalid advisory")

// Advisory is one OSV record (schema 1.6).
type Advisory struct {
	SchemaVersion    string          `json:"schema_version,omitempty" yaml:"schema_version,omitempty"`
	ID               string          `json:"id" yaml:"id"`
	Modified         time.Time       `json:"modified" yaml:"modified"`
	Published        *time.Time      `json:"published,omitempty" yaml:"published,omitempty"`
	Withdrawn        *time.Time      `json:"withdrawn,omitempty" yaml:"withdrawn,omitempty"`
	Aliases          []string        `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	Related          []string        `json:"related,omitempty" yaml:"related,omitempty"`
	Upstream         []string        `json:"upstream,omitempty" yaml:"upstream,omitempty"`
	Summary          string          `json:"summary,omitempty" yaml:"summary,omitempty"`
	Details          string          `json:"details,omitempty" yaml:"details,omitempty"`
	Severity         []SeverityScore `json:"severity,omitempty" yaml:"severity,omitempty"`
	Affected         []Affected      `json:"affected,omitempty" yaml:"affected,omitempty"`
	References       []Reference     `json:"references,omitempty" yaml:"references,omitempty"`
	DatabaseSpecific RawJSON         `json:"database_specific,omitempty" yaml:"database_specific,omitempty"`
}

// SeverityScore is an OSV severity entry: Type CVSS_V2, CVSS_V3, CVSS_V4 or
// Ubuntu; Score the vector (or Ubuntu priority word).
type SeverityScore struct {
	Type  string `json:"type" yaml:"type"`
	Score string `json:"score" yaml:"score"`
}

// Affected is one affected package with its ranges and explicit versions.
type Affected struct {
	Package           AffectedPackage `json:"package" yaml:"package"`
	Severity          []SeverityScore `json:"severity,omitempty" yaml:"severity,omitempty"`
	Ranges            []Range         `json:"ranges,omitempty" yaml:"ranges,omitempty"`
	Versions          []string        `json:"versions,omitempty" yaml:"versions,omitempty"`
	EcosystemSpecific RawJSON         `json:"ecosystem_specific,omitempty" yaml:"ecosystem_specific,omitempty"`
	DatabaseSpecific  RawJSON         `json:"database_specific,omitempty" yaml:"database_specific,omitempty"`
}

// AffectedPackage names a package in an OSV ecosystem.
type AffectedPackage struct {
	Ecosystem string `json:"ecosystem" yaml:"ecosystem"`
	Name      string `json:"name" yaml:"name"`
	PURL      string `json:"purl,omitempty" yaml:"purl,omitempty"`
}

// Range is an OSV range: Type SEMVER, ECOSYSTEM or GIT.
type Range struct {
	Type             string  `json:"type" yaml:"type"`
	Repo             string  `json:"repo,omitempty" yaml:"repo,omitempty"`
	Events           []Event `json:"events" yaml:"events"`
	DatabaseSpecific RawJSON `json:"database_specific,omitempty" yaml:"database_specific,omitempty"`
}

// Event is one range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty" yaml:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty" yaml:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty" yaml:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty" yaml:"limit,omitempty"`
}

// Reference is an OSV reference (ADVISORY, WEB, FIX, PACKAGE, ...).
type Reference struct {
	Type string `json:"type" yaml:"type"`
	URL  string `json:"url" yaml:"url"`
}

// Range types.
const (
	RangeSemver    = "SEMVER"
	RangeEcosystem = "ECOSYSTEM"
	RangeGit       = "GIT"
)

// RawJSON is an opaque JSON object (ecosystem_specific, database_specific).
// From YAML it is converted to JSON.
type RawJSON json.RawMessage

// MarshalJSON implements json.Marshaler.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = nil
		return nil
	}
	*r = append((*r)[:0], b...)
	return nil
}

// UnmarshalYAML converts a YAML node to JSON.
func (r *RawJSON) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return err
	}
	*r = b
	return nil
}

// jsonable turns yaml.v3's decoded values into values json.Marshal accepts
// (map keys of any type become strings).
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	}
	return v
}

// ParseJSON parses one OSV record in JSON.
// Errors wrap ErrInvalidAdvisory.
func ParseJSON(b []byte) (Advisory, error) {
	var a Advisory
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("%w: json: %v", ErrInvalidAdvisory, err)
	}
	return a, a.Validate()
}

// ParseYAML parses one OSV record in YAML (the PyPI advisory database's
// form). Scalars are kept as written, so `fixed: 1.10` stays "1.10".
// Errors wrap ErrInvalidAdvisory.
func ParseYAML(b []byte) (Advisory, error) {
	var a Advisory
	if err := yaml.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("%w: yaml: %v", ErrInvalidAdvisory, err)
	}
	return a, a.Validate()
}

// Validate checks what tollgate relies on: a non-empty id made of printable
// characters without '/', and non-empty ecosystem and name in every affected
// entry. Errors wrap ErrInvalidAdvisory.
func (a *Advisory) Validate() error {
	if err := checkID(a.ID); err != nil {
		return err
	}
	for i, af := range a.Affected {
		if af.Package.Ecosystem == "" || af.Package.Name == "" {
			return fmt.Errorf("%w: %s: affected[%d] lacks package ecosystem or name", ErrInvalidAdvisory, a.ID, i)
		}
		if !printable(af.Package.Ecosystem) || !printable(af.Package.Name) {
			return fmt.Errorf("%w: %s: affected[%d] package has control characters", ErrInvalidAdvisory, a.ID, i)
		}
	}
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > 256 || strings.ContainsAny(id, "/ ") || !printable(id) {
		return fmt.Errorf("%w: bad id %q", ErrInvalidAdvisory, id)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Hash is a content hash (hex SHA-256 of the canonical JSON encoding), used
// to detect changed advisories whose `modified` did not move.
func (a *Advisory) Hash() string {
	b, _ := json.Marshal(a)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// IsWithdrawn reports whether the advisory carries a `withdrawn` time.
func (a *Advisory) IsWithdrawn() bool { return a.Withdrawn != nil && !a.Withdrawn.IsZero() }

// Source returns the advisory's source name: the base ecosystem (text before
// ':') of its first affected package, e.g. "AlmaLinux" for "AlmaLinux:9".
// Records without affected packages return "".
func (a *Advisory) Source() string {
	if len(a.Affected) == 0 {
		return ""
	}
	return BaseEcosystem(a.Affected[0].Package.Ecosystem)
}

// BaseEcosystem strips the release suffix: "Debian:12" → "Debian".
func BaseEcosystem(eco string) string {
	b, _, _ := strings.Cut(eco, ":")
	return b
}

// Parse recognises the format of one file by name and content: OSV JSON,
// OSV YAML, or an Alpine secdb document (JSON or YAML, with `packages` and
// `distroversion`). It returns every advisory the file holds.
// Errors wrap ErrInvalidAdvisory.
func Parse(name string, b []byte) ([]Advisory, error) {
	t := bytes.TrimSpace(b)
	isJSON := len(t) > 0 && t[0] == '{'
	if looksLikeSecDB(t) {
		return ParseSecDB(b)
	}
	if isJSON {
		a, err := ParseJSON(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return []Advisory{a}, nil
	}
	a, err := ParseYAML(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return []Advisory{a}, nil
}

// looksLikeSecDB is a cheap test on the document head.
func looksLikeSecDB(b []byte) bool {
	head := b
	if len(head) > 4096 {
		head = head[:4096]
	}
	return bytes.Contains(head, []byte("distroversion")) && bytes.Contains(b, []byte("secfixes"))
}
