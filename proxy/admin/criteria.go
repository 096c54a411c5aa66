package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file is the filter-criteria engine shared by ListFindings
// (FilterCriteria), suppression rules (Filter.criteria), findings reports,
// ListCoverage / ListCoverageStatistics (CoverageFilterCriteria) and
// CreateSbomExport (ResourceFilterCriteria). A schema names, per criteria
// shape, the fields and how to read them from a view; compile turns the
// request's JSON into one predicate per field.
//
// Semantics, as Amazon Inspector documents them
// (https://docs.aws.amazon.com/inspector/v2/user/findings-managing-filtering.html):
// fields are AND'ed; within a field the EQUALS and PREFIX values are OR'ed
// and the NOT_EQUALS values are AND'ed with them ("severity is HIGH or
// CRITICAL, and vulnerabilityId is not X and not Y"). A field holds 1 to 10
// values. A value that is absent from the resource (a date never recorded, a
// number unknown) matches no range. Multi-valued fields (ecrImageTags)
// match EQUALS/PREFIX when any value does, NOT_EQUALS when none equals.

// maxFilterValues is Inspector's limit of values per criteria field.
const maxFilterValues = 10

// epochTime is a restJson1/awsJson1_1 timestamp: a JSON number of seconds
// since the Unix epoch, with a fractional part for sub-second precision.
type epochTime struct{ time.Time }

func (e *epochTime) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
		return fmt.Errorf("timestamp %s: want epoch seconds", b)
	}
	sec, frac := math.Modf(f)
	e.Time = time.Unix(int64(sec), int64(math.Round(frac*1e3))*1e6).UTC()
	return nil
}

func (e epochTime) MarshalJSON() ([]byte, error) { return epochJSON(e.Time), nil }

// epochJSON encodes t as epoch seconds with millisecond precision.
func epochJSON(t time.Time) []byte {
	ms := t.UnixMilli()
	if ms%1000 == 0 {
		return strconv.AppendInt(nil, ms/1000, 10)
	}
	return strconv.AppendFloat(nil, float64(ms)/1000, 'f', -1, 64)
}

// epoch wraps t for JSON output; nil for the zero time.
func epoch(t time.Time) *epochTime {
	if t.IsZero() {
		return nil
	}
	return &epochTime{t}
}

func epochPtr(t *time.Time) *epochTime {
	if t == nil {
		return nil
	}
	return epoch(*t)
}

// jsonFloat is a restJson1 double: a number, or "NaN", "Infinity", "-Infinity".
type jsonFloat float64

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		switch s {
		case "NaN":
			*f = jsonFloat(math.NaN())
		case "Infinity":
			*f = jsonFloat(math.Inf(1))
		case "-Infinity":
			*f = jsonFloat(math.Inf(-1))
		default:
			return fmt.Errorf("number %q", s)
		}
		return nil
	}
	v, err := strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
	if err != nil {
		return fmt.Errorf("number %s", b)
	}
	*f = jsonFloat(v)
	return nil
}

// StringFilter is Inspector's StringFilter (also CoverageStringFilter,
// ResourceStringFilter): comparison EQUALS, PREFIX or NOT_EQUALS.
type StringFilter struct {
	Comparison string `json:"comparison"`
	Value      string `json:"value"`
}

// DateFilter is an inclusive range of epoch-second timestamps; a missing
// bound is open.
type DateFilter struct {
	StartInclusive *epochTime `json:"startInclusive,omitempty"`
	EndInclusive   *epochTime `json:"endInclusive,omitempty"`
}

// NumberFilter is an inclusive numeric range; a missing bound is open.
type NumberFilter struct {
	LowerInclusive *jsonFloat `json:"lowerInclusive,omitempty"`
	UpperInclusive *jsonFloat `json:"upperInclusive,omitempty"`
}

// MapFilter matches a key/value pair (resourceTags); comparison EQUALS.
type MapFilter struct {
	Comparison string `json:"comparison"`
	Key        string `json:"key"`
	Value      string `json:"value,omitempty"`
}

// PackageFilter matches one vulnerable package; its fields are AND'ed.
type PackageFilter struct {
	Architecture         *StringFilter `json:"architecture,omitempty"`
	Epoch                *NumberFilter `json:"epoch,omitempty"`
	FilePath             *StringFilter `json:"filePath,omitempty"`
	Name                 *StringFilter `json:"name,omitempty"`
	Release              *StringFilter `json:"release,omitempty"`
	SourceLambdaLayerArn *StringFilter `json:"sourceLambdaLayerArn,omitempty"`
	SourceLayerHash      *StringFilter `json:"sourceLayerHash,omitempty"`
	Version              *StringFilter `json:"version,omitempty"`
}

// pkgFacts is what a PackageFilter reads from one package.
type pkgFacts struct {
	Arch, FilePath, Name, Release, SourceLayerHash, Version string
	Epoch                                                   float64
}

// fieldKind is the JSON shape of a criteria field.
type fieldKind int

const (
	kString fieldKind = iota
	kDate
	kNumber
	kMap
	kPackage
	kPortRange
)

// schema describes one criteria shape over views of type T. Fields listed
// in absent are valid in the API but never present on container images
// (Lambda, EC2, code repositories): ranges and EQUALS on them match
// nothing, NOT_EQUALS matches everything.
type schema[T any] struct {
	name        string // "filterCriteria", for error messages
	comparisons []string
	strs        map[string]func(T) []string
	dates       map[string]func(T) *time.Time
	nums        map[string]func(T) (float64, bool)
	maps        map[string]func(T) map[string]string
	pkgs        map[string]func(T) []pkgFacts
	absent      map[string]fieldKind
}

// criteria is a compiled filter: every predicate must hold.
type criteria[T any] []func(T) bool

// match reports whether v passes every field's predicate.
func (c criteria[T]) match(v T) bool {
	for _, p := range c {
		if !p(v) {
			return false
		}
	}
	return true
}

// compile parses raw (a criteria object; empty or null means "everything")
// into predicates. Errors are ValidationExceptions naming the field.
func (s *schema[T]) compile(raw []byte) (criteria[T], error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, errValidation("%s: %v", s.name, err)
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic error messages
	var out criteria[T]
	for _, name := range names {
		p, err := s.field(name, fields[name])
		if err != nil {
			return nil, err
		}
		if p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *schema[T]) kind(name string) (fieldKind, bool) {
	if _, ok := s.strs[name]; ok {
		return kString, true
	}
	if _, ok := s.dates[name]; ok {
		return kDate, true
	}
	if _, ok := s.nums[name]; ok {
		return kNumber, true
	}
	if _, ok := s.maps[name]; ok {
		return kMap, true
	}
	if _, ok := s.pkgs[name]; ok {
		return kPackage, true
	}
	k, ok := s.absent[name]
	return k, ok
}

// listOf decodes a JSON array of up to maxFilterValues elements.
func listOf[E any](s, name string, raw json.RawMessage) ([]E, error) {
	var l []E
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, errValidation("%s.%s: %v", s, name, err)
	}
	if len(l) > maxFilterValues {
		return nil, errValidation("%s.%s: %d values, at most %d are allowed", s, name, len(l), maxFilterValues)
	}
	return l, nil
}

func (s *schema[T]) field(name string, raw json.RawMessage) (func(T) bool, error) {
	k, ok := s.kind(name)
	if !ok {
		return nil, errValidation("%s: unknown field %q", s.name, name)
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	switch k {
	case kString:
		l, err := listOf[StringFilter](s.name, name, raw)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		m, err := s.stringMatcher(name, l)
		if err != nil {
			return nil, err
		}
		get := s.strs[name]
		if get == nil {
			return func(T) bool { return m(nil) }, nil
		}
		return func(v T) bool { return m(get(v)) }, nil
	case kDate:
		l, err := listOf[DateFilter](s.name, name, raw)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		get := s.dates[name]
		return func(v T) bool {
			if get == nil {
				return false
			}
			t := get(v)
			if t == nil || t.IsZero() {
				return false
			}
			for _, f := range l {
				if (f.StartInclusive == nil || !t.Before(f.StartInclusive.Time)) && (f.EndInclusive == nil || !t.After(f.EndInclusive.Time)) {
					return true
				}
			}
			return false
		}, nil
	case kNumber:
		l, err := listOf[NumberFilter](s.name, name, raw)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		get := s.nums[name]
		return func(v T) bool {
			if get == nil {
				return false
			}
			x, ok := get(v)
			if !ok {
				return false
			}
			for _, f := range l {
				if inRange(x, f) {
					return true
				}
			}
			return false
		}, nil
	case kMap:
		l, err := listOf[MapFilter](s.name, name, raw)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		for _, f := range l {
			if f.Comparison != "EQUALS" && f.Comparison != "NOT_EQUALS" {
				return nil, errValidation("%s.%s: comparison %q: want EQUALS", s.name, name, f.Comparison)
			}
		}
		get := s.maps[name]
		return func(v T) bool {
			var m map[string]string
			if get != nil {
				m = get(v)
			}
			pos, anyPos := false, false
			for _, f := range l {
				val, ok := m[f.Key]
				eq := ok && (f.Value == "" || val == f.Value)
				if f.Comparison == "NOT_EQUALS" {
					if eq {
						return false
					}
					continue
				}
				anyPos = true
				pos = pos || eq
			}
			return !anyPos || pos
		}, nil
	case kPackage:
		l, err := listOf[PackageFilter](s.name, name, raw)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		ms := make([]func(pkgFacts) bool, 0, len(l))
		for _, f := range l {
			m, err := s.packageMatcher(name, f)
			if err != nil {
				return nil, err
			}
			ms = append(ms, m)
		}
		get := s.pkgs[name]
		return func(v T) bool {
			if get == nil {
				return false
			}
			for _, p := range get(v) {
				for _, m := range ms {
					if m(p) {
						return true
					}
				}
			}
			return false
		}, nil
	case kPortRange:
		var l []json.RawMessage
		if _, err := listOf[json.RawMessage](s.name, name, raw); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &l); err != nil || len(l) == 0 {
			return nil, nil
		}
		return func(T) bool { return false }, nil // no network findings on images
	}
	return nil, errValidation("%s: field %q", s.name, name)
}

func inRange(x float64, f NumberFilter) bool {
	if f.LowerInclusive != nil && x < float64(*f.LowerInclusive) {
		return false
	}
	if f.UpperInclusive != nil && x > float64(*f.UpperInclusive) {
		return false
	}
	return true
}

// stringMatcher compiles one field's string filters over a multi-valued field.
func (s *schema[T]) stringMatcher(name string, l []StringFilter) (func([]string) bool, error) {
	for _, f := range l {
		if !containsStr(s.comparisons, f.Comparison) {
			return nil, errValidation("%s.%s: comparison %q: want one of %s", s.name, name, f.Comparison, strings.Join(s.comparisons, ", "))
		}
		if len(f.Value) > 1024 {
			return nil, errValidation("%s.%s: value longer than 1024 characters", s.name, name)
		}
	}
	return func(vals []string) bool {
		anyPos, pos := false, false
		for _, f := range l {
			switch f.Comparison {
			case "NOT_EQUALS":
				if containsStr(vals, f.Value) {
					return false
				}
			case "EQUALS":
				anyPos = true
				pos = pos || containsStr(vals, f.Value)
			case "PREFIX":
				anyPos = true
				for _, v := range vals {
					if strings.HasPrefix(v, f.Value) {
						pos = true
						break
					}
				}
			}
		}
		return !anyPos || pos
	}, nil
}

// packageMatcher compiles one PackageFilter (its fields AND'ed).
func (s *schema[T]) packageMatcher(name string, f PackageFilter) (func(pkgFacts) bool, error) {
	var ms []func(pkgFacts) bool
	add := func(sub string, sf *StringFilter, get func(pkgFacts) string) error {
		if sf == nil {
			return nil
		}
		m, err := s.stringMatcher(name+"."+sub, []StringFilter{*sf})
		if err != nil {
			return err
		}
		ms = append(ms, func(p pkgFacts) bool { return m([]string{get(p)}) })
		return nil
	}
	for _, e := range []struct {
		sub string
		sf  *StringFilter
		get func(pkgFacts) string
	}{
		{"architecture", f.Architecture, func(p pkgFacts) string { return p.Arch }},
		{"filePath", f.FilePath, func(p pkgFacts) string { return p.FilePath }},
		{"name", f.Name, func(p pkgFacts) string { return p.Name }},
		{"release", f.Release, func(p pkgFacts) string { return p.Release }},
		{"sourceLambdaLayerArn", f.SourceLambdaLayerArn, func(pkgFacts) string { return "" }},
		{"sourceLayerHash", f.SourceLayerHash, func(p pkgFacts) string { return p.SourceLayerHash }},
		{"version", f.Version, func(p pkgFacts) string { return p.Version }},
	} {
		if err := add(e.sub, e.sf, e.get); err != nil {
			return nil, err
		}
	}
	if f.Epoch != nil {
		nf := *f.Epoch
		ms = append(ms, func(p pkgFacts) bool { return inRange(p.Epoch, nf) })
	}
	return func(p pkgFacts) bool {
		for _, m := range ms {
			if !m(p) {
				return false
			}
		}
		return true
	}, nil
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
