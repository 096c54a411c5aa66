// Command osvprep prepares inputs for comparing tollgate with osv-scanner v2
// (bench/accuracy/osv-scanner.sh):
//
//	osvprep db OUT PATH...      advisories read exactly as `tollgate db import PATH...`
//	                            reads them (OSV JSON, OSV YAML, Alpine secdb), written
//	                            as osv-scanner's offline cache:
//	                            OUT/osv-scalibr/<base ecosystem>/all.zip of <id>.json;
//	                            a PATH "+Eco" writes an empty zip for Eco when no
//	                            advisory names it (osv-scanner fails a whole scan
//	                            when one ecosystem's zip is missing; tollgate finds
//	                            nothing for a package without advisories)
//	osvprep image SRC OUT.tar   oci:DIR:REF (an image, or linux/amd64 of an index) or
//	                            docker-archive:FILE as a docker archive
//	                            (`osv-scanner scan image --archive` reads only those)
//	osvprep compare TG.json OSV.json   (package, advisory id) pairs reported by
//	                            `tollgate scan --format json` and by `osv-scanner
//	                            scan image --format json`: both, either only
//
// osv-scanner's local matcher (osv-scalibr enricher/vulnmatch/osvlocal) loads
// only *.json members, so the PyPI YAML records and the Alpine secdb (which
// tollgate converts to OSV on import) reach it as tollgate's parsed records,
// re-encoded as OSV JSON: both scanners see the same advisories.
package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan/match"
)

func main() {
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error().Err(err).Msg("osvprep")
		os.Exit(1)
	}
}

func run(ctx context.Context, log zerolog.Logger, args []string) error {
	if len(args) >= 3 && args[0] == "db" {
		return writeDB(ctx, log, args[1], args[2:])
	}
	if len(args) == 3 && args[0] == "image" {
		return writeImage(ctx, args[1], args[2])
	}
	if len(args) == 3 && args[0] == "compare" {
		return compare(ctx, os.Stdout, args[1], args[2])
	}
	return errors.New("usage: osvprep db OUT PATH... | osvprep image oci:DIR:REF|docker-archive:FILE OUT.tar | osvprep compare TOLLGATE.json OSV.json")
}

// writeDB writes one all.zip per base ecosystem named in any affected
// entry; an advisory naming several (AlmaLinux:8 and :9 are one) goes into
// each.
func writeDB(ctx context.Context, log zerolog.Logger, out string, paths []string) error {
	byEco := map[string]map[string]match.Advisory{}
	skipped := 0
	for _, p := range paths {
		if eco, ok := strings.CutPrefix(p, "+"); ok {
			if byEco[eco] == nil {
				byEco[eco] = map[string]match.Advisory{}
			}
			continue
		}
		ld, err := match.LoadPath(ctx, p)
		if err != nil {
			return fmt.Errorf("osvprep: load %s: %w", p, err)
		}
		skipped += len(ld.Skipped)
		for _, advs := range ld.Sources {
			for _, a := range advs {
				for _, af := range a.Affected {
					eco := match.BaseEcosystem(af.Package.Ecosystem)
					if byEco[eco] == nil {
						byEco[eco] = map[string]match.Advisory{}
					}
					byEco[eco][a.ID] = a
				}
			}
		}
	}
	for eco, advs := range byEco {
		n, err := writeZip(filepath.Join(out, "osv-scalibr", eco, "all.zip"), advs)
		if err != nil {
			return err
		}
		log.Info().Str("ecosystem", eco).Int("advisories", n).Msg("wrote all.zip")
	}
	log.Info().Int("skipped", skipped).Msg("files not advisories (skipped as by tollgate db import)")
	return nil
}

func writeZip(path string, advs map[string]match.Advisory) (n int, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, fmt.Errorf("osvprep: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("osvprep: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("osvprep: %w", cerr)
		}
	}()
	zw := zip.NewWriter(f)
	ids := make([]string, 0, len(advs))
	for id := range advs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b, err := json.Marshal(advs[id])
		if err != nil {
			return n, fmt.Errorf("osvprep: encode %s: %w", id, err)
		}
		w, err := zw.Create(id + ".json")
		if err != nil {
			return n, fmt.Errorf("osvprep: %w", err)
		}
		if _, err := w.Write(b); err != nil {
			return n, fmt.Errorf("osvprep: %w", err)
		}
		n++
	}
	if err := zw.Close(); err != nil {
		return n, fmt.Errorf("osvprep: %w", err)
	}
	return n, nil
}

// writeImage writes src as a docker archive tagged localhost/<ref>:latest.
func writeImage(_ context.Context, src, out string) error {
	var img v1.Image
	tag := "localhost/image:latest"
	switch {
	case strings.HasPrefix(src, "oci:"):
		dir, ref, _ := strings.Cut(strings.TrimPrefix(src, "oci:"), ":")
		var err error
		img, err = ociImage(dir, ref)
		if err != nil {
			return err
		}
		if ref != "" {
			tag = "localhost/" + ref + ":latest"
		}
	case strings.HasPrefix(src, "docker-archive:"):
		var err error
		img, err = tarball.ImageFromPath(strings.TrimPrefix(src, "docker-archive:"), nil)
		if err != nil {
			return fmt.Errorf("osvprep: %w", err)
		}
	default:
		return fmt.Errorf("osvprep: unknown source %q (oci:DIR:REF or docker-archive:FILE)", src)
	}
	t, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("osvprep: %w", err)
	}
	if err := tarball.WriteToFile(out, t, img); err != nil {
		return fmt.Errorf("osvprep: write %s: %w", out, err)
	}
	return nil
}

// ociImage finds ref (org.opencontainers.image.ref.name) in the layout's
// index; an image index yields its linux/amd64 image.
func ociImage(dir, ref string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("osvprep: %w", err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("osvprep: %w", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("osvprep: %w", err)
	}
	for _, d := range im.Manifests {
		if ref != "" && d.Annotations["org.opencontainers.image.ref.name"] != ref {
			continue
		}
		if d.MediaType.IsIndex() {
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("osvprep: %w", err)
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return nil, fmt.Errorf("osvprep: %w", err)
			}
			for _, c := range cm.Manifests {
				if c.Platform != nil && c.Platform.OS == "linux" && c.Platform.Architecture == "amd64" {
					return child.Image(c.Digest)
				}
			}
			return nil, fmt.Errorf("osvprep: %s: no linux/amd64 image in the index", ref)
		}
		return ii.Image(d.Digest)
	}
	return nil, fmt.Errorf("osvprep: %s: no image named %q", dir, ref)
}
