package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/pflag"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/report"
)

// reportFlags are `tollgate scan`'s accepted-risk inputs: --ignore-file
// (Trivy-style) and --vex (OpenVEX, repeatable). Suppressed findings leave
// the findings list (and so --fail-on) and are reported separately: in the
// JSON output's "suppressed", as accepted suppressions in SARIF, and as a
// count on stderr for the table.
type reportFlags struct {
	ignoreFile string
	vexFiles   []string
	ign        *report.IgnoreList
	vex        *report.VEX
}

func (r *reportFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&r.ignoreFile, "ignore-file", "", "file of vulnerability ids to ignore, one per line, '#' comments, optional exp:YYYY-MM-DD (Trivy's .trivyignore format)")
	fl.StringArrayVar(&r.vexFiles, "vex", nil, "OpenVEX document; not_affected and fixed statements suppress matching findings (repeatable)")
}

// load reads and parses the files named by the flags.
func (r *reportFlags) load() error {
	if r.ignoreFile != "" {
		f, err := os.Open(r.ignoreFile)
		if err != nil {
			return fmt.Errorf("--ignore-file: %w", err)
		}
		defer f.Close()
		if r.ign, err = report.ParseIgnore(f); err != nil {
			return fmt.Errorf("--ignore-file %s: %w", r.ignoreFile, err)
		}
	}
	var docs []*report.VEX
	for _, name := range r.vexFiles {
		b, err := readCapped(name, report.MaxVEXBytes)
		if err != nil {
			return fmt.Errorf("--vex: %w", err)
		}
		v, err := report.ParseOpenVEX(b)
		if err != nil {
			return fmt.Errorf("--vex %s: %w", name, err)
		}
		docs = append(docs, v)
	}
	if len(docs) > 0 {
		r.vex = report.Merge(docs...)
	}
	return nil
}

// filter applies the ignore file and VEX documents to one image's findings;
// top is the scanned SOURCE's top manifest digest (an index, for a
// multi-platform image), which VEX products may name instead of the
// platform image.
func (r *reportFlags) filter(fs []scan.Finding, top digest.Digest) ([]scan.Finding, []report.Suppressed) {
	if r.ign == nil && r.vex == nil {
		return fs, nil
	}
	return report.Apply(fs, r.ign, r.vex, time.Now(), top)
}

func readCapped(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return b, nil
}

// writeSARIF writes `tollgate scan --format sarif`: one SARIF 2.1.0 run over
// every image's findings (each result names its image digest and layer).
func writeSARIF(w io.Writer, rep scanReport) error {
	var fs []scan.Finding
	var sup []report.Suppressed
	for _, im := range rep.Images {
		fs = append(fs, im.Findings...)
		sup = append(sup, im.Suppressed...)
	}
	return report.WriteSARIF(w, fs, report.SARIFOptions{ToolVersion: version, Target: rep.Source, Suppressed: sup})
}

// noteSuppressed tells people reading the table how many findings the
// ignore file and VEX documents accepted.
func noteSuppressed(errw io.Writer, rep scanReport) {
	n := 0
	for _, im := range rep.Images {
		n += len(im.Suppressed)
	}
	if n > 0 {
		fmt.Fprintf(errw, "tollgate: %d findings suppressed by --ignore-file/--vex (listed in -format json and sarif)\n", n)
	}
}
