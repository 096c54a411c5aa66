//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestAWSCLI drives a real tollgate serve's admin API with Debian's stock
// AWS CLI (bench/awscli-check.sh: ECR scanning configuration, describe and
// list images, archive/restore, Inspector findings and coverage, a forged
// SigV4 secret refused), signing with a configured access key pair.
func TestAWSCLI(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("!!! SKIPPING: no aws CLI on PATH (apt-get install awscli; .ci/run installs it) !!!")
	}
	for _, tool := range []string{"curl", "jq", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("bench/awscli-check.sh needs %s", tool)
		}
	}
	keys := []string{"TOLLGATE_ADMIN_ACCESS_KEY_ID=AKIDE2ETOLLGATE", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY=e2e-secret-key-0123456789"}
	s := startServerEnv(t, t.TempDir(), keys, "--config", writeConfig(t, ""))
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "bench", "awscli-check.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(append(os.Environ(), keys...), "TOLLGATE_ADMIN_URL=http://"+s.Admin, "TOLLGATE_REGISTRY=http://"+s.Registry)
	out, err := cmd.CombinedOutput()
	t.Logf("bench/awscli-check.sh:\n%s", out)
	if err != nil {
		t.Fatalf("bench/awscli-check.sh: %v", err)
	}
}
