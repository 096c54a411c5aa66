package match

import (
	"testing"
)

// Parsers of untrusted bytes (feeds, imported files) must never panic, and
// what they accept must be valid and re-encodable.

func checkParsed(t *testing.T, advs []Advisory) {
	for i := range advs {
		if err := advs[i].Validate(); err != nil {
			t.Fatalf("accepted invalid advisory: %v", err)
		}
		_ = advs[i].Hash()
		for _, af := range advs[i].Affected {
			_ = af.Evaluate(af.Package.Ecosystem, "1.0.0")
		}
	}
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"id":"GO-1","affected":[{"package":{"ecosystem":"Go","name":"m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.0"}]}]}]}`))
	f.Add([]byte(`{"id":"X","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"1:2-3"},{"last_affected":"~"},{"limit":"*"}]}],"versions":["1"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseJSON(b)
		if err == nil {
			checkParsed(t, []Advisory{a})
		}
	})
}

func FuzzParseYAML(f *testing.F) {
	f.Add([]byte("id: PYSEC-1\naffected:\n- package: {name: a, ecosystem: PyPI}\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: 1.10\n    - fixed: 2.0\n  versions: [1.10]\n"))
	f.Add([]byte("id: X\ndatabase_specific: {1: [a, {2: b}]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseYAML(b)
		if err == nil {
			checkParsed(t, []Advisory{a})
		}
	})
}

func FuzzParseSecDB(f *testing.F) {
	f.Add([]byte("distroversion: v3.11\npackages:\n  - pkg:\n      name: openssl\n      secfixes:\n        1.1.1g-r0:\n          - CVE-2020-1967\n        0:\n          - CVE-2000-1\n"))
	f.Add([]byte(`{"distroversion":"v3.20","packages":[{"pkg":{"name":"z","secfixes":{"1-r0":["CVE-2018-1 CVE-2018-2"]}}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		advs, err := ParseSecDB(b)
		if err == nil {
			checkParsed(t, advs)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range [][2]string{{"Debian", "1:2.3~rc1-4+b1"}, {"Alpine", "1.2.3_p4-r5"}, {"AlmaLinux", "2:1.0^git-1.el9"}, {"PyPI", "1!2.0rc1.post2.dev3"}, {"Go", "go1.21rc2"}, {"Maven", "1.0-SNAPSHOT"}} {
		f.Add(s[0], s[1], "1.0")
	}
	f.Fuzz(func(t *testing.T, eco, a, b string) {
		va, err1 := ParseVersion(eco, a)
		vb, err2 := ParseVersion(eco, b)
		if err1 != nil || err2 != nil {
			return
		}
		c1, e1 := va.Compare(vb)
		c2, e2 := vb.Compare(va)
		if e1 == nil && e2 == nil && c1 != -c2 {
			t.Fatalf("%s: compare(%q,%q)=%d but reverse %d", eco, a, b, c1, c2)
		}
	})
}
