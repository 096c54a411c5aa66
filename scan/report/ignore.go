package report

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate-registry/tollgate/scan"
)

// maxIgnoreLine bounds one ignore-file line (bytes).
const maxIgnoreLine = 64 << 10

// IgnoreEntry is one line of an ignore file.
type IgnoreEntry struct {
	ID      string
	Expires *time.Time // the entry stops applying at this instant (UTC midnight of exp:DATE)
	Line    int
}

// IgnoreList is a parsed ignore file.
type IgnoreList struct {
	Entries []IgnoreEntry
}

// ParseIgnore reads a Trivy-style ignore file (.trivyignore): one
// vulnerability id per line (CVE, GHSA, OSV or vendor id, matched
// case-insensitively against a finding's vulnerability id, advisory id and
// related ids), blank lines and '#' comments (whole-line or trailing)
// ignored, and an optional "exp:YYYY-MM-DD" field after the id after which
// the entry no longer applies. Errors name the line: a malformed exp date,
// an unexpected extra field, or a line over 64 KiB.
func ParseIgnore(r io.Reader) (*IgnoreList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxIgnoreLine)
	l := &IgnoreList{}
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		e := IgnoreEntry{ID: fields[0], Line: n}
		for _, f := range fields[1:] {
			v, ok := strings.CutPrefix(f, "exp:")
			if !ok {
				return nil, fmt.Errorf("report: ignore file line %d: unexpected %q (want ID [exp:YYYY-MM-DD])", n, f)
			}
			t, err := time.Parse(time.DateOnly, v)
			if err != nil {
				return nil, fmt.Errorf("report: ignore file line %d: exp %q: want YYYY-MM-DD", n, v)
			}
			e.Expires = &t
		}
		l.Entries = append(l.Entries, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("report: ignore file line %d: longer than %d bytes: %w", n+1, maxIgnoreLine, err)
		}
		return nil, fmt.Errorf("report: ignore file: %w", err)
	}
	return l, nil
}

// Match returns the entry that ignores f at now, or nil.
func (l *IgnoreList) Match(f scan.Finding, now time.Time) *IgnoreEntry {
	if l == nil {
		return nil
	}
	for i := range l.Entries {
		e := &l.Entries[i]
		if e.Expires != nil && !now.Before(*e.Expires) {
			continue
		}
		if findingHasID(f, e.ID) {
			return e
		}
	}
	return nil
}

// findingHasID reports whether id names f's vulnerability (its id, advisory
// id or a related id), case-insensitively.
func findingHasID(f scan.Finding, id string) bool {
	if id == "" {
		return false
	}
	if strings.EqualFold(f.VulnerabilityID, id) || strings.EqualFold(f.AdvisoryID, id) {
		return true
	}
	for _, r := range f.RelatedIDs {
		if strings.EqualFold(r, id) {
			return true
		}
	}
	return false
}
