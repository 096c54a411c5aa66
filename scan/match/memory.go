package match

import "context"

// Memory is an in-memory Advisories index, for `tollgate scan` without a
// data directory, tests and benchmarks. The zero value is empty; it is not
// safe for concurrent Add and ForPackage.
type Memory struct {
	byKey map[PackageKey][]Advisory
}

// NewMemory indexes advs by every (ecosystem, name) they affect.
func NewMemory(advs []Advisory) *Memory {
	m := &Memory{}
	for _, a := range advs {
		m.Add(a)
	}
	return m
}

// Add indexes a under each package it affects (once per package), by
// normalised name (NormalizeName).
func (m *Memory) Add(a Advisory) {
	if m.byKey == nil {
		m.byKey = map[PackageKey][]Advisory{}
	}
	seen := map[PackageKey]bool{}
	for _, af := range a.Affected {
		k := NormalizeKey(PackageKey{af.Package.Ecosystem, af.Package.Name})
		if !seen[k] {
			seen[k] = true
			m.byKey[k] = append(m.byKey[k], a)
		}
	}
}

// ForPackage implements Advisories.
func (m *Memory) ForPackage(_ context.Context, ecosystem, name string) ([]Advisory, error) {
	return m.byKey[NormalizeKey(PackageKey{ecosystem, name})], nil
}
