package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
	"github.com/tollgate-registry/tollgate/scan/match"
	"github.com/tollgate-registry/tollgate/scan/report"
	"github.com/tollgate-registry/tollgate/scan/sbom"
)

// scanReport is `tollgate scan --format json`: one entry per image (per
// platform for an index).
type scanReport struct {
	Source string        `json:"source"`
	Images []imageReport `json:"images"`
}

type imageReport struct {
	*scan.Inventory
	// ScanStatus is what `tollgate serve` would record as the coverage
	// reason and message (lifecycle.Outcome): SUCCESSFUL, CORRUPT_LAYER,
	// LIMIT_EXCEEDED, ANALYZER_PANIC or UNSUPPORTED_OS.
	ScanStatus scanStatus     `json:"scanStatus"`
	Findings   []scan.Finding `json:"findings"`
	// Suppressed are findings --ignore-file or --vex accepted (scan_report.go).
	Suppressed []report.Suppressed `json:"suppressed,omitempty"`
}

// newScanCmd builds `tollgate scan SOURCE`: analyse an image without a
// server, with the proxy's Walk/Merge/assembly code.
func newScanCmd(g *globals) *cobra.Command {
	var format, platform string
	var rf reportFlags
	var fo failOn // --fail-on (scan_findings.go)
	var progress bool
	cmd := &cobra.Command{
		Use:   "scan SOURCE",
		Short: "Analyse an image without a server",
		Long: `Analyse an image and print its packages (and findings) without a server.

SOURCE is a registry reference (registry.example/repo:tag, …@sha256:…),
oci:PATH[:TAG] (an OCI image layout directory; an index is scanned per
platform, --platform picks one), oci-archive:PATH[:TAG], or
docker-archive:PATH (a docker save / crane pull tarball).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.load(cmd)
			if err != nil {
				return err
			}
			switch format {
			case "table", "json", "cyclonedx", "spdx", "sarif":
			default:
				return fmt.Errorf("--format %q: want table, json, sarif, cyclonedx or spdx", format)
			}
			if err := rf.load(); err != nil {
				return err
			}
			if err := fo.validate(); err != nil {
				return err
			}
			log := g.logger(c)
			ctx := cmd.Context()
			src, err := openSource(ctx, args[0])
			if err != nil {
				return err
			}
			defer src.close()
			l := c.Scan.Limits
			opts := scan.AssemblerOptions{
				Analyzers: analyzer.Default(analyzer.Options{MaxNestingDepth: l.MaxNestingDepth}),
				Limits: scan.Limits{MaxEntryBufferBytes: l.MaxEntryBufferBytes, MaxEntryBytes: l.MaxEntryBytes,
					MaxLayerBytes: l.MaxLayerBytes, MaxEntries: l.MaxEntries, MaxNestingDepth: l.MaxNestingDepth,
					MaxCompressionRatio: l.MaxCompressionRatio},
				Platform: platform,
				Logger:   log,
				// No transfer to leave CPU to: walk layers on every core.
				LayerConcurrency: runtime.GOMAXPROCS(0),
			}
			if f, ok := g.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) && progress {
				opts.Progress = func(d digest.Digest, size int64, i, n int) {
					fmt.Fprintf(g.stderr, "\r\033[K[%d/%d] %s %s", i+1, n, short(d), humanBytes(size))
				}
				defer fmt.Fprint(g.stderr, "\r\033[K")
			}
			invs, err := scan.NewAssembler(opts).Assemble(ctx, src.name, src.fetcher, src.manifest, src.mediaType)
			if err != nil {
				return fmt.Errorf("scan %s: %w", args[0], err)
			}
			if len(invs) == 0 {
				return fmt.Errorf("scan %s: no image matches platform %q", args[0], platform)
			}
			rep := scanReport{Source: args[0]}
			for _, inv := range invs {
				fs, err := findingsFor(ctx, g, inv)
				if err != nil {
					return fmt.Errorf("scan %s: findings: %w", args[0], err)
				}
				fs, sup := rf.filter(fs, digest.FromBytes(src.manifest))
				reason, msg := lifecycle.Outcome(inv)
				rep.Images = append(rep.Images, imageReport{Inventory: inv, ScanStatus: scanStatus{Reason: reason, Message: msg},
					Findings: fs, Suppressed: sup})
			}
			if err := writeScan(g.stdout, g.stderr, format, rep); err != nil {
				return err
			}
			warnScan(g.stderr, rep)
			var all []scan.Finding
			for _, im := range rep.Images {
				all = append(all, im.Findings...)
			}
			return fo.check(all)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&format, "format", "table", "output format: table, json, sarif (2.1.0), cyclonedx (1.6) or spdx (2.3 JSON)")
	rf.register(fl)
	fo.register(fl)
	fl.StringVar(&platform, "platform", "", "scan only this platform of an index, e.g. linux/arm64/v8")
	fl.BoolVar(&progress, "progress", true, "show progress on a terminal")
	return cmd
}

func writeScan(w, errw io.Writer, format string, rep scanReport) error {
	switch format {
	case "sarif":
		return writeSARIF(w, rep)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "cyclonedx", "spdx":
		img := rep.Images[0]
		if len(rep.Images) > 1 {
			for _, im := range rep.Images {
				if im.Platform.String() == "linux/amd64" {
					img = im
				}
			}
			fmt.Fprintf(errw, "tollgate: %d platforms; writing %s (choose with --platform)\n", len(rep.Images), img.Platform)
		}
		opts := sbom.Options{ToolVersion: version, Name: rep.Source}
		if format == "spdx" {
			return sbom.WriteSPDX(w, img.Inventory, opts)
		}
		return sbom.WriteCycloneDXFindings(w, img.Inventory, img.Findings, opts)
	}
	for i, im := range rep.Images {
		if i > 0 {
			fmt.Fprintln(w)
		}
		writeTable(w, rep.Source, im)
	}
	noteSuppressed(errw, rep)
	return nil
}

// writeTable prints one image: a header, packages sorted by ecosystem and
// name, findings by severity, and layer problems.
func writeTable(w io.Writer, source string, im imageReport) {
	inv := im.Inventory
	osName := "unknown OS"
	if inv.OS != nil {
		osName = inv.OS.PrettyName
		if osName == "" {
			osName = inv.OS.ID + " " + inv.OS.VersionID
		}
	}
	fmt.Fprintf(w, "%s  %s  %s\n%s, %d layers, %d packages, %d findings\n\n",
		source, inv.Platform, inv.Image, osName, len(inv.Layers), len(inv.Packages), len(im.Findings))
	pkgs := append([]scan.Package(nil), inv.Packages...)
	sort.SliceStable(pkgs, func(i, j int) bool {
		if pkgs[i].Ecosystem != pkgs[j].Ecosystem {
			return pkgs[i].Ecosystem < pkgs[j].Ecosystem
		}
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Version < pkgs[j].Version
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ECOSYSTEM\tNAME\tVERSION\tSOURCE\tLAYER\tPATH")
	for _, p := range pkgs {
		src := ""
		if p.Kind == scan.KindOS && (p.SourceName != p.Name || p.SourceVersion != p.Version) {
			src = p.SourceName
			if p.SourceVersion != p.Version {
				src += " " + p.SourceVersion
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t/%s\n", p.Ecosystem, p.Name, p.Version, src, short(p.Layer), p.Path)
	}
	tw.Flush()
	if len(im.Findings) > 0 {
		fs := append([]scan.Finding(nil), im.Findings...)
		sort.SliceStable(fs, func(i, j int) bool {
			if fs[i].Severity.Rank() != fs[j].Severity.Rank() {
				return fs[i].Severity.Rank() > fs[j].Severity.Rank()
			}
			return fs[i].VulnerabilityID < fs[j].VulnerabilityID
		})
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tVULNERABILITY\tPACKAGE\tVERSION\tFIXED IN")
		for _, f := range fs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.VulnerabilityID, f.Package.Name, f.Package.Version, strings.Join(f.FixedVersions, ", "))
		}
		tw.Flush()
	}
}

type scanStatus struct {
	Reason  scan.Reason `json:"reason"`
	Message string      `json:"message,omitempty"`
}

// warnScan says on stderr, whatever the format, what a scan could not
// cover: each layer error (the image's packages and findings come from the
// readable part only) and an OS without advisory source. The exit status
// stays that of --fail-on.
func warnScan(w io.Writer, rep scanReport) {
	for _, im := range rep.Images {
		where := ""
		if len(rep.Images) > 1 {
			where = " " + im.Platform.String()
		}
		for _, e := range im.Errors {
			fmt.Fprintf(w, "tollgate: warning:%s %s\n", where, lifecycle.LayerErrors([]scan.LayerError{e}))
		}
		if im.OS != nil && !match.SupportedOS(im.OS) {
			fmt.Fprintf(w, "tollgate: warning:%s %s: no advisory source for OS %s; its OS packages are not checked, only language packages\n",
				where, scan.ReasonUnsupportedOS, strings.TrimSpace("ID="+im.OS.ID+" "+im.OS.VersionID))
		}
	}
}

// short abbreviates a digest to algorithm:12 hex digits.
func short(d digest.Digest) string {
	if err := d.Validate(); err != nil {
		return d.String()
	}
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
