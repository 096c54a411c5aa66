package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestServeListensOnlyWhereConfigured: serve with the embedded registry
// opens the registry and admin listeners and nothing else (an extra,
// unauthenticated registry port let a local user push and delete around the
// proxy); push, pull and /readyz still reach the registry in-process.
func TestServeListensOnlyWhereConfigured(t *testing.T) {
	before := listeningSockets(t)
	r := startServe(t, t.TempDir())
	defer r.stop(t)
	if got := listeningSockets(t) - before; got != 2 {
		t.Fatalf("serve opened %d listening sockets, want 2 (registry and admin)", got)
	}
	resp, err := http.Get("http://" + r.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	img, _ := random.Image(1024, 1)
	ref, _ := name.ParseReference(r.reg+"/only/app:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(ref); err != nil {
		t.Fatal(err)
	}
}

// listeningSockets counts this process's TCP sockets in LISTEN state: the
// socket inodes among /proc/self/fd that /proc/net/tcp{,6} lists as 0A.
func listeningSockets(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(ino, "]")] = true
		}
	}
	n := 0
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" && mine[fs[9]] {
				n++
			}
		}
	}
	return n
}
