package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// BlobFetcher reads blobs of a repository by digest (from the registry the
// proxy fronts, an OCI layout, an archive). The caller closes the reader.
type BlobFetcher interface {
	Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error)
}

// ManifestFetcher is optionally implemented by a BlobFetcher whose store
// serves manifests apart from blobs (a registry's /manifests/ endpoint); the
// Assembler uses it for the children of an image index. Without it, child
// manifests are read with Fetch (OCI layouts keep them as blobs).
type ManifestFetcher interface {
	FetchManifest(ctx context.Context, repo string, d digest.Digest) (body []byte, mediaType string, err error)
}

// LayerCache stores layer inventories by (layer digest, analyzers version);
// index.Inventories implements it. GetLayer's error means "not cached".
type LayerCache interface {
	GetLayer(ctx context.Context, layer digest.Digest, analyzersVersion string) (*LayerInventory, error)
	PutLayer(ctx context.Context, inv *LayerInventory) error
}

// ReasonError is an assembly failure with its scan status reason
// (UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_CONFIG_FILE).
type ReasonError struct {
	Reason Reason
	Err    error
}

func (e *ReasonError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *ReasonError) Unwrap() error { return e.Err }

// AssemblerOptions configures an Assembler. The zero value works (no
// analyzers find nothing; pass analyzer.Default).
type AssemblerOptions struct {
	Analyzers []Analyzer
	Limits    Limits
	// Cache holds layer inventories; nil analyses every layer each time.
	Cache LayerCache
	// Platform keeps only this index child ("linux/arm64/v8", "linux/amd64");
	// empty keeps every platform. Children for "unknown/unknown"
	// (attestations) are always skipped.
	Platform string
	// Progress, if set, is called before each layer is fetched and walked
	// (never concurrently, but out of order when LayerConcurrency > 1).
	Progress func(layer digest.Digest, size int64, i, n int)
	// LayerConcurrency is how many layers of one image are fetched and
	// walked at once; 0 or 1 walks them one after the other (the server,
	// whose analysis must leave CPU to the transfers, keeps 1; `tollgate
	// scan` uses every core).
	LayerConcurrency int
	Logger           zerolog.Logger
}

// Assembler builds image inventories from manifests: it reads the config,
// gets each layer's inventory from the cache or by fetching and walking the
// blob (a blob is analysed once per digest, whatever repository brings it),
// and merges them. Safe for concurrent use.
type Assembler struct {
	opts AssemblerOptions
	av   string
	mu   sync.Mutex
	busy map[digest.Digest]*flight
}

type flight struct {
	done chan struct{}
	inv  *LayerInventory
	err  error
}

// NewAssembler returns an Assembler.
func NewAssembler(opts AssemblerOptions) *Assembler {
	opts.Limits = opts.Limits.WithDefaults()
	return &Assembler{opts: opts, av: AnalyzersVersion(opts.Analyzers), busy: map[digest.Digest]*flight{}}
}

// AnalyzersVersion is the cache key part of this assembler's analyzer set.
func (a *Assembler) AnalyzersVersion() string { return a.av }

// Media types of image layers tollgate analyses.
var layerMediaTypes = map[types.MediaType]string{
	types.DockerLayer:                    CompressionGzip,
	types.DockerForeignLayer:             CompressionGzip,
	types.DockerUncompressedLayer:        CompressionNone,
	types.OCILayer:                       CompressionGzip,
	types.OCILayerZStd:                   CompressionZstd,
	types.OCIUncompressedLayer:           CompressionNone,
	types.OCIRestrictedLayer:             CompressionGzip,
	types.OCIUncompressedRestrictedLayer: CompressionNone,
}

// IsLayerMediaType reports whether mt is an image layer media type.
func IsLayerMediaType(mt string) bool {
	_, ok := layerMediaTypes[types.MediaType(mt)]
	return ok
}

// Assemble returns the inventories of the image that manifest (of
// mediaType; "" means read it from the body) describes: one for an image
// manifest, one per platform for an image index. Each Inventory has Image set
// to the manifest digest and Platform from the config (or index entry).
// Unknown manifest or config media types give a *ReasonError
// UNSUPPORTED_MEDIA_TYPE, an unreadable config UNSUPPORTED_CONFIG_FILE;
// fetch errors are returned wrapped (retry later). Per-layer problems
// (corrupt, limits) stay in Inventory.Errors.
func (a *Assembler) Assemble(ctx context.Context, repo string, f BlobFetcher, manifest []byte, mediaType string) ([]*Inventory, error) {
	return a.assemble(ctx, repo, f, manifest, mediaType, nil, 0)
}

func (a *Assembler) assemble(ctx context.Context, repo string, f BlobFetcher, manifest []byte, mediaType string, plat *v1.Platform, depth int) ([]*Inventory, error) {
	if mediaType == "" {
		var probe struct {
			MediaType string `json:"mediaType"`
			Manifests []any  `json:"manifests"`
		}
		_ = jsonUnmarshal(manifest, &probe)
		mediaType = probe.MediaType
		if mediaType == "" {
			mediaType = string(types.OCIManifestSchema1)
			if probe.Manifests != nil {
				mediaType = string(types.OCIImageIndex)
			}
		}
	}
	mt := types.MediaType(mediaType)
	switch {
	case mt.IsIndex():
		if depth > 2 {
			return nil, &ReasonError{ReasonUnsupportedMediaType, errors.New("nested image indexes")}
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(manifest))
		if err != nil {
			return nil, &ReasonError{ReasonUnsupportedMediaType, fmt.Errorf("image index: %w", err)}
		}
		var out []*Inventory
		for _, m := range idx.Manifests {
			if m.Platform != nil && (m.Platform.OS == "unknown" || m.Platform.Architecture == "unknown") {
				continue
			}
			if a.opts.Platform != "" && m.Platform != nil && !platformMatches(a.opts.Platform, m.Platform) {
				continue
			}
			if !m.MediaType.IsImage() && !m.MediaType.IsIndex() {
				continue
			}
			body, cmt, err := a.fetchManifest(ctx, repo, f, digest.Digest(m.Digest.String()))
			if err != nil {
				return out, fmt.Errorf("scan: fetch manifest %s: %w", m.Digest, err)
			}
			if cmt == "" {
				cmt = string(m.MediaType)
			}
			invs, err := a.assemble(ctx, repo, f, body, cmt, m.Platform, depth+1)
			if err != nil {
				return out, err
			}
			out = append(out, invs...)
		}
		return out, nil
	case mt.IsImage():
		inv, err := a.image(ctx, repo, f, manifest, plat)
		if err != nil {
			return nil, err
		}
		return []*Inventory{inv}, nil
	}
	return nil, &ReasonError{ReasonUnsupportedMediaType, fmt.Errorf("manifest media type %q", mediaType)}
}

func platformMatches(want string, p *v1.Platform) bool {
	wp, err := v1.ParsePlatform(want)
	if err != nil {
		return false
	}
	return p.Satisfies(*wp)
}

func (a *Assembler) fetchManifest(ctx context.Context, repo string, f BlobFetcher, d digest.Digest) ([]byte, string, error) {
	if mf, ok := f.(ManifestFetcher); ok {
		return mf.FetchManifest(ctx, repo, d)
	}
	rc, err := f.Fetch(ctx, repo, d)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	return b, "", err
}

var imageConfigTypes = map[types.MediaType]bool{
	types.OCIConfigJSON: true, types.DockerConfigJSON: true,
}

// image assembles one image manifest.
func (a *Assembler) image(ctx context.Context, repo string, f BlobFetcher, manifest []byte, plat *v1.Platform) (*Inventory, error) {
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, &ReasonError{ReasonUnsupportedMediaType, fmt.Errorf("image manifest: %w", err)}
	}
	if !imageConfigTypes[m.Config.MediaType] {
		return nil, &ReasonError{ReasonUnsupportedMediaType, fmt.Errorf("config media type %q is not an image config", m.Config.MediaType)}
	}
	cfg, err := a.config(ctx, repo, f, digest.Digest(m.Config.Digest.String()))
	if err != nil {
		return nil, err
	}
	lis, errs, cause := a.layers(ctx, repo, f, m.Layers)
	layers := make([]*LayerInventory, 0, len(m.Layers))
	var extra []LayerError
	known := 0
	for i, l := range m.Layers {
		want, ok := layerMediaTypes[l.MediaType]
		if !ok {
			continue // artifacts, attestations: skipped without a fetch
		}
		known++
		d := digest.Digest(l.Digest.String())
		li, err := lis[i], errs[i]
		if err != nil {
			if l.MediaType == types.DockerForeignLayer {
				extra = append(extra, LayerError{Layer: d, Path: d.String(), Reason: ReasonInternalError, Message: "foreign layer not fetchable: " + err.Error()})
				continue
			}
			if cause != nil {
				err = cause // not the cancellation of the layers walked beside it
			}
			return nil, err
		}
		if li.Compression != want && !(li.Compression == CompressionNone && want == CompressionNone) {
			extra = append(extra, LayerError{Layer: d, Path: d.String(), Reason: ReasonUnsupportedMediaType,
				Message: fmt.Sprintf("media type %s says %s, the bytes are %s", l.MediaType, want, li.Compression)})
		}
		if cfg != nil && li.DiffID != "" && i < len(cfg.RootFS.DiffIDs) && cfg.RootFS.DiffIDs[i].String() != li.DiffID.String() {
			extra = append(extra, LayerError{Layer: d, Path: d.String(), Reason: ReasonCorruptLayer,
				Message: fmt.Sprintf("diffID %s, config says %s", li.DiffID, cfg.RootFS.DiffIDs[i])})
		}
		layers = append(layers, li)
	}
	if known == 0 && len(m.Layers) > 0 {
		return nil, &ReasonError{ReasonUnsupportedMediaType, errors.New("no image layers (an artifact)")}
	}
	inv := Merge(layers)
	inv.Image = digest.FromBytes(manifest)
	inv.AnalyzersVersion = a.av
	inv.Errors = append(inv.Errors, extra...)
	if cfg != nil {
		inv.Platform = Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	}
	if inv.Platform.OS == "" && plat != nil {
		inv.Platform = Platform{OS: plat.OS, Architecture: plat.Architecture, Variant: plat.Variant}
	}
	return inv, nil
}

// layers gets the inventory of every image layer of ls (by index; other
// media types are left nil), LayerConcurrency at a time. Once a layer fails
// with an error that fails the image (anything but a foreign layer), layers
// not yet started are skipped and those in flight cancelled; cause is that
// first error.
func (a *Assembler) layers(ctx context.Context, repo string, f BlobFetcher, ls []v1.Descriptor) (lis []*LayerInventory, errs []error, cause error) {
	lis, errs = make([]*LayerInventory, len(ls)), make([]error, len(ls))
	n := max(a.opts.LayerConcurrency, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex // serialises Progress and cause
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, l := range ls {
		if _, ok := layerMediaTypes[l.MediaType]; !ok {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d := digest.Digest(l.Digest.String())
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return
			}
			if a.opts.Progress != nil {
				mu.Lock()
				a.opts.Progress(d, l.Size, i, len(ls))
				mu.Unlock()
			}
			lis[i], errs[i] = a.Layer(ctx, repo, f, d)
			if errs[i] != nil && l.MediaType != types.DockerForeignLayer {
				mu.Lock()
				if cause == nil && ctx.Err() == nil {
					cause = errs[i]
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return lis, errs, cause
}

// config fetches and parses the image config; an unreadable one is UNSUPPORTED_CONFIG_FILE.
func (a *Assembler) config(ctx context.Context, repo string, f BlobFetcher, d digest.Digest) (*v1.ConfigFile, error) {
	rc, err := f.Fetch(ctx, repo, d)
	if err != nil {
		return nil, fmt.Errorf("scan: fetch config %s: %w", d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("scan: read config %s: %w", d, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(b))
	if err != nil {
		return nil, &ReasonError{ReasonUnsupportedConfigFile, fmt.Errorf("config %s: %w", d, err)}
	}
	return cfg, nil
}

// Layer returns the inventory of layer d, from the cache or by fetching and
// walking the blob (then cached). Concurrent calls for one digest share one walk.
func (a *Assembler) Layer(ctx context.Context, repo string, f BlobFetcher, d digest.Digest) (*LayerInventory, error) {
	if a.opts.Cache != nil {
		if li, err := a.opts.Cache.GetLayer(ctx, d, a.av); err == nil && li != nil {
			return li, nil
		}
	}
	a.mu.Lock()
	if fl, ok := a.busy[d]; ok {
		a.mu.Unlock()
		select {
		case <-fl.done:
			return fl.inv, fl.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	fl := &flight{done: make(chan struct{})}
	a.busy[d] = fl
	a.mu.Unlock()
	fl.inv, fl.err = a.walk(ctx, repo, f, d)
	a.mu.Lock()
	delete(a.busy, d)
	a.mu.Unlock()
	close(fl.done)
	return fl.inv, fl.err
}

func (a *Assembler) walk(ctx context.Context, repo string, f BlobFetcher, d digest.Digest) (*LayerInventory, error) {
	log := a.opts.Logger.With().Str("repo", repo).Str("layer", d.String()).Str("op", "walk").Logger()
	rc, err := f.Fetch(ctx, repo, d)
	if err != nil {
		return nil, fmt.Errorf("scan: fetch layer %s: %w", d, err)
	}
	defer rc.Close()
	li, err := Walk(ctx, d, rc, a.opts.Analyzers, a.opts.Limits)
	var le *LimitError
	if err != nil && !errors.As(err, &le) {
		return nil, err
	}
	log.Debug().Int("packages", len(li.Packages)).Int64("entries", li.Entries).Int("errors", len(li.Errors)).Msg("layer analysed")
	if a.opts.Cache != nil {
		if err := a.opts.Cache.PutLayer(ctx, li); err != nil {
			log.Warn().Err(err).Msg("layer inventory not cached")
		}
	}
	return li, nil
}
