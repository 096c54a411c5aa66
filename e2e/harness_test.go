//go:build e2e

// Package e2e drives the real tollgate binary against ../shared: it pushes
// every shared image through the proxy, pulls it back, and checks records,
// inventories, findings and coverage through the admin API.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binPath is the tollgate binary built once for the suite.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binPath = filepath.Join(dir, "tollgate")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/tollgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building tollgate:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sharedDir returns ../shared (or $TOLLGATE_SHARED); it skips loudly when
// absent, and fails under CI=true.
func sharedDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("TOLLGATE_SHARED")
	if d == "" {
		_, file, _, _ := runtime.Caller(0)
		d = filepath.Join(filepath.Dir(file), "..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(d, "images", "INDEX.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared material missing at %s (CI=true): %v", d, err)
		}
		t.Skipf("!!! SKIPPING: shared material not found at %s (set TOLLGATE_SHARED) !!!", d)
	}
	return d
}

// freeAddr returns a free loopback address.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is one running `tollgate serve` process.
type server struct {
	cmd      *exec.Cmd
	Registry string // host:port of the registry API
	Admin    string // host:port of the admin API
	DataDir  string
	Token    string
	logs     *os.File
}

// startServer runs `tollgate serve` with the given extra args and waits for /readyz.
func startServer(t testing.TB, dataDir string, extra ...string) *server {
	t.Helper()
	return startServerEnv(t, dataDir, nil, extra...)
}

// startServerEnv is startServer with extra environment variables.
func startServerEnv(t testing.TB, dataDir string, env []string, extra ...string) *server {
	t.Helper()
	s := &server{Registry: freeAddr(t), Admin: freeAddr(t), DataDir: dataDir, Token: "e2e-token"}
	args := append([]string{"serve", "--data-dir", dataDir, "--listen", s.Registry, "--admin-listen", s.Admin}, extra...)
	s.cmd = exec.Command(binPath, args...)
	s.cmd.Env = append(append(os.Environ(), "TOLLGATE_ADMIN_TOKEN="+s.Token), env...)
	logs, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	s.logs = logs
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.Admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.dumpLogs(t)
	t.Fatalf("tollgate serve not ready on %s", s.Admin)
	return nil
}

// stop sends SIGTERM and waits.
func (s *server) stop(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		t.Errorf("tollgate serve did not stop within 40s of SIGTERM")
	}
	if t.Failed() {
		s.dumpLogs(t)
	}
}

// kill sends SIGKILL (crash tests).
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
}

func (s *server) dumpLogs(t testing.TB) {
	t.Helper()
	if s.logs == nil {
		return
	}
	_, _ = s.logs.Seek(0, io.SeekStart)
	sc := bufio.NewScanner(s.logs)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	t.Logf("tollgate serve log (last %d lines):\n%s", len(lines), strings.Join(lines, "\n"))
}

// run runs the tollgate CLI with args and returns stdout.
func run(t testing.TB, ctx context.Context, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("tollgate %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}
