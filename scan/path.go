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
