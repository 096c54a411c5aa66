package scan

import (
	"path"
	"strings"
)

// CleanPath normalises a tar entry name: no leading "/" or "./", no "//",
// "." or ".." elements (".." never climbs above the root). It returns ""
// for the root itself. The result names a file inside the image and is never
// used to write to the local filesystem.
func CleanPath(name string) string {
	if name == "" {
		return ""
	}
	p := path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))
	return strings.TrimPrefix(p, "/")
}

// under reports whether p equals dir or lies below it.
func under(p, dir string) bool {
	if dir == "" {
		return true
	}
	return p == dir || (len(p) > len(dir) && p[len(dir)] == '/' && strings.HasPrefix(p, dir))
}

// osDatabaseDirs are the directories holding OS package databases and their
// ancestors.
var osDatabaseDirs = map[string]bool{
	"etc": true, "lib": true, "usr": true, "var": true, "usr/lib": true, "usr/share": true, "var/lib": true,
	"var/lib/dpkg": true, "var/lib/dpkg/status.d": true, "var/lib/dpkg/info": true, "lib/apk": true, "lib/apk/db": true,
	"var/lib/rpm": true, "usr/lib/sysimage": true, "usr/lib/sysimage/rpm": true, "usr/share/rpm": true,
}

// mayHoldPackages reports whether a regular file at p sits where lower
// layers usually have a directory holding packages: a node_modules folder or
// a package inside one (node_modules/x, node_modules/@s, node_modules/@s/x),
// a Python site or metadata directory, RubyGems specifications, a vendor
// directory, or an OS package database directory. Walk records such files in
// LayerInventory.NonDirs; recording every regular file would bloat cached
// inventories for a case that almost never happens elsewhere.
func mayHoldPackages(p string) bool {
	if osDatabaseDirs[p] {
		return true
	}
	base := path.Base(p)
	switch {
	case base == "node_modules", base == "site-packages", base == "dist-packages", base == "specifications",
		base == "vendor", strings.HasSuffix(base, ".dist-info"), strings.HasSuffix(base, ".egg-info"):
		return true
	}
	dir := path.Dir(p)
	parent := path.Base(dir)
	return parent == "node_modules" || strings.HasPrefix(parent, "@") && path.Base(path.Dir(dir)) == "node_modules"
}
