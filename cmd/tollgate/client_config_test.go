package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate-registry/tollgate/proxy/admin"
)

// unsetEnv removes the variables for the test (restored afterwards).
func unsetEnv(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		t.Setenv(n, "")
		os.Unsetenv(n)
	}
}

// The admin commands take the admin URL and credentials from the global
// --config file (server.adminListen, admin.token, dataDir's admin-token),
// with env and flags over it, as every other subcommand does.
func TestClientCommandsUseConfig(t *testing.T) {
	unsetEnv(t, "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_ADMIN_URL", "TOLLGATE_ADMIN_LISTEN", "TOLLGATE_DATA_DIR",
		"TOLLGATE_ADMIN_ACCESS_KEY_ID", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/coverage/list" {
			_, _ = w.Write([]byte(`{"coveredResources":[]}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	lastAuth := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(auths) == 0 {
			return ""
		}
		a := auths[0]
		auths = nil
		return a
	}

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, admin.TokenFileName), []byte("filetok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := filepath.Join(dir, "token.yaml")
	// ":PORT" listens on every address: the CLI dials 127.0.0.1.
	if err := os.WriteFile(withToken, []byte("dataDir: "+dataDir+"\nserver:\n  adminListen: \":"+port+"\"\nadmin:\n  token: cfgtok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withDir := filepath.Join(dir, "dir.yaml")
	if err := os.WriteFile(withDir, []byte("dataDir: "+dataDir+"\nserver:\n  adminListen: 0.0.0.0:"+port+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"config admin.token and adminListen", nil, []string{"--config", withToken, "coverage", "list"}, "POST /coverage/list Bearer cfgtok"},
		{"config dataDir's token file", nil, []string{"--config", withDir, "coverage", "list"}, "POST /coverage/list Bearer filetok"},
		{"env token over the config", map[string]string{"TOLLGATE_ADMIN_TOKEN": "envtok"}, []string{"--config", withToken, "findings", "list"}, "POST /findings/list Bearer envtok"},
		{"flag over env and config", map[string]string{"TOLLGATE_ADMIN_TOKEN": "envtok"}, []string{"--config", withToken, "config", "get", "--token", "flagtok"}, "POST / Bearer flagtok"},
		{"env admin URL over the config", map[string]string{"TOLLGATE_ADMIN_URL": srv.URL}, []string{"--config", withToken, "archive", "web:v1"}, "POST / Bearer cfgtok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, _ = runClient(t, tc.args...)
			if got := lastAuth(); got != tc.want {
				t.Fatalf("tollgate %v: first request %q, want %q", tc.args, got, tc.want)
			}
		})
	}

	// An admin URL on the command line beats server.adminListen.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("dataDir: "+dataDir+"\nserver:\n  adminListen: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runClient(t, "--config", bad, "coverage", "list", "--admin-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	if got := lastAuth(); got != "POST /coverage/list Bearer filetok" {
		t.Fatalf("--admin-url: %q", got)
	}
	// The admin API disabled in the config and no URL given: said so.
	off := filepath.Join(dir, "off.yaml")
	if err := os.WriteFile(off, []byte("dataDir: "+dataDir+"\nserver:\n  adminListen: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runClient(t, "--config", off, "coverage", "list"); err == nil || !strings.Contains(err.Error(), "server.adminListen is empty") {
		t.Fatalf("adminListen empty: %v", err)
	}
}
