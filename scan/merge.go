package scan

import (
	"path"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Merge builds an image inventory from its layers' inventories, bottom
// (layers[0]) to top, as overlayfs would (go-containerregistry's
// mutate.Extract): for each layer, packages found earlier are removed before
// the layer's own packages are added when the layer rewrites their file
// (LayerInventory.Paths: a file, a link or a directory at that path), whites
// it out (".wh.<name>", the path or anything above it), hides it under an
// opaque directory, or puts a non-directory where one of its parent
// directories was (LayerInventory.NonDirs: a symlink or a file at
// node_modules/x). A package found again unchanged in a rewritten database
// keeps the layer that first introduced it. Language packages whose files an
// OS package owns are marked OSManaged; the OS is the topmost layer's
// os-release and OS packages get its OSV ecosystem (Inventory.ResolveOS). Nil
// layers are skipped. Merge is pure: it does not modify its input; Image and
// Platform are left for the caller.
func Merge(layers []*LayerInventory) *Inventory {
	inv := &Inventory{CreatedAt: time.Now().UTC()}
	var pkgs []Package
	owned := map[string]bool{}
	for _, l := range layers {
		if l == nil {
			continue
		}
		inv.Layers = append(inv.Layers, l.Digest)
		if inv.AnalyzersVersion == "" {
			inv.AnalyzersVersion = l.AnalyzersVersion
		}
		rewritten := make(map[string]bool, len(l.Paths))
		for _, p := range l.Paths {
			rewritten[p] = true
		}
		gone := newRemoval(l)
		// Earlier packages that this layer's rewritten files found again keep their layer.
		introduced := map[pkgKey]digest.Digest{}
		kept := pkgs[:0:0]
		for _, p := range pkgs {
			switch {
			case rewritten[p.Path]:
				introduced[keyOf(p)] = p.Layer
				continue
			case gone.removed(p.Path):
				continue
			}
			kept = append(kept, p)
		}
		for _, p := range l.Packages {
			if d, ok := introduced[keyOf(p)]; ok {
				p.Layer = d
			}
			kept = append(kept, p)
		}
		pkgs = kept
		for o := range owned {
			if gone.removed(o) {
				delete(owned, o)
			}
		}
		for _, o := range l.OSOwned {
			owned[o] = true
		}
		if l.OS != nil {
			os := *l.OS
			inv.OS = &os
		} else if inv.OS != nil && gone.removed(inv.OS.Path) {
			inv.OS = nil
		}
		for _, e := range l.Errors {
			if e.Layer == "" {
				e.Layer = l.Digest
			}
			inv.Errors = append(inv.Errors, e)
		}
	}
	pkgs = dropLockfileDuplicates(pkgs)
	for i := range pkgs {
		if pkgs[i].Kind == KindLang && isOwned(pkgs[i].Path, owned) {
			pkgs[i].OSManaged = true
		}
	}
	sort.SliceStable(pkgs, func(i, j int) bool {
		a, b := pkgs[i], pkgs[j]
		if a.Kind != b.Kind {
			return a.Kind == KindOS
		}
		if a.Ecosystem != b.Ecosystem {
			return a.Ecosystem < b.Ecosystem
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Path < b.Path
	})
	inv.Packages = pkgs
	inv.ResolveOS()
	return inv
}

type pkgKey struct{ analyzer, name, version, arch, path string }

func keyOf(p Package) pkgKey { return pkgKey{p.Analyzer, p.Name, p.Version, p.Arch, p.Path} }

// removal is what one layer deletes from the layers below it.
type removal struct {
	l       *LayerInventory
	nonDirs map[string]bool
}

func newRemoval(l *LayerInventory) removal {
	r := removal{l: l}
	if len(l.NonDirs) > 0 {
		r.nonDirs = make(map[string]bool, len(l.NonDirs))
		for _, p := range l.NonDirs {
			r.nonDirs[p] = true
		}
	}
	return r
}

// removed reports whether the layer deletes p: a whiteout at p or above it,
// an opaque directory above it, or a non-directory entry (a symlink, a
// file) where p has a parent directory, which overlayfs shows instead of
// that directory.
func (r removal) removed(p string) bool {
	if p == "" {
		return false
	}
	for _, w := range r.l.Whiteouts {
		if under(p, w) {
			return true
		}
	}
	for _, d := range r.l.OpaqueDirs {
		if d == "" || (len(p) > len(d) && under(p, d)) {
			return true
		}
	}
	if r.nonDirs != nil {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if r.nonDirs[d] {
				return true
			}
		}
	}
	return false
}

// isOwned reports whether p or its directory (a dist-info, egg-info or
// node_modules/<name> folder) is owned; higher directories such as
// dist-packages itself do not make every package below them OS-managed.
func isOwned(p string, owned map[string]bool) bool {
	return owned[p] || owned[path.Dir(p)]
}

// dropLockfileDuplicates removes packages read from lockfiles (Metadata
// lockfile=true) when the same ecosystem, name and version is installed
// (PyPI names compared PEP 503-normalised: a lockfile's "jinja2" is the
// installed "Jinja2").
func dropLockfileDuplicates(pkgs []Package) []Package {
	type nv struct{ eco, name, version string }
	key := func(p Package) nv {
		if p.Ecosystem == "PyPI" {
			return nv{p.Ecosystem, pep503(p.Name), p.Version}
		}
		return nv{p.Ecosystem, p.Name, p.Version}
	}
	installed := map[nv]bool{}
	for _, p := range pkgs {
		if p.Metadata["lockfile"] != "true" {
			installed[key(p)] = true
		}
	}
	out := pkgs[:0]
	for _, p := range pkgs {
		if p.Metadata["lockfile"] == "true" && installed[key(p)] {
			continue
		}
		out = append(out, p)
	}
	return out
}

// pep503 normalises a Python distribution name: lower case, runs of "-",
// "_" and "." as one "-".
func pep503(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r == '-' || r == '_' || r == '.' {
			dash = true
			continue
		}
		if dash && b.Len() > 0 {
			b.WriteByte('-')
		}
		dash = false
		b.WriteRune(r)
	}
	return b.String()
}
