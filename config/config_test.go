package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestDefaultIsValid(t *testing.T) {
	require.NoError(t, Default().Validate())
}

func TestLoadStrictYAMLAndEnv(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("upstream:\n  url: https://registry.example\nserver:\n  listen: \":6000\"\n"), 0o600))
	c, err := Load(good, []string{"TOLLGATE_DATA_DIR=/var/lib/tg", "TOLLGATE_ADMIN_ACCESS_KEY_ID=AKID", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY=s3cret"})
	require.NoError(t, err)
	assert.Equal(t, "https://registry.example", c.Upstream.URL)
	assert.Equal(t, ":6000", c.Server.Listen)
	assert.Equal(t, "/var/lib/tg", c.DataDir)
	assert.Equal(t, []AccessKey{{AccessKeyID: "AKID", SecretAccessKey: "s3cret"}}, c.Admin.AccessKeys)
	require.NoError(t, c.Validate())

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("upstream:\n  ulr: https://typo.example\n"), 0o600))
	_, err = Load(bad, []string{})
	require.Error(t, err, "unknown keys must be errors")
	assert.Contains(t, err.Error(), "ulr")
}

func TestValidateRejects(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"bad upstream":    func(c *Config) { c.Upstream.URL = "ftp://x" },
		"no mirror cache": func(c *Config) { c.Upstream.MirrorCacheBytes = 0 },
		"huge tee buffer": func(c *Config) { c.Scan.TeeBufferBytes = 2 << 30 },
		"scan wait past upstream timeout": func(c *Config) {
			c.Policy = []PullPolicy{{Severity: "HIGH", ScanTimeout: 40 * time.Second}}
		},
		"negative scan wait":    func(c *Config) { c.Policy = []PullPolicy{{Severity: "HIGH", ScanTimeout: -time.Second}} },
		"continuous with basic": func(c *Config) { c.Scanning.ScanType = "BASIC" },
		"bad rescan duration":   func(c *Config) { c.Scanning.RescanDuration = "DAYS_7" },
		"lifetime pull window":  func(c *Config) { c.Scanning.PullDateRescanDuration = "LIFETIME" },
		"half access key":       func(c *Config) { c.Admin.AccessKeys = []AccessKey{{AccessKeyID: "x"}} },
		"bad log format":        func(c *Config) { c.Log.Format = "xml" },
		"bad policy severity":   func(c *Config) { c.Policy = []PullPolicy{{Severity: "SEVERE"}} },
		"no analysis timeout":   func(c *Config) { c.Scan.AnalysisTimeout = 0 },
		"bad analysisYields":    func(c *Config) { c.Scan.AnalysisYields = "sometimes" },
		"empty analysisYields":  func(c *Config) { c.Scan.AnalysisYields = "" },
	} {
		t.Run(name, func(t *testing.T) {
			c := Default()
			mutate(&c)
			assert.Error(t, c.Validate())
		})
	}
}

func TestYieldsToTransfers(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		procs int
		want  bool
	}{
		{YieldAuto, 1, true}, {YieldAuto, 2, true}, {YieldAuto, 4, false},
		{YieldAlways, 64, true}, {YieldNever, 1, false},
	} {
		assert.Equal(t, tc.want, Scan{AnalysisYields: tc.mode}.YieldsToTransfers(tc.procs), "%s on %d cores", tc.mode, tc.procs)
	}
}

// TestReferenceConfigIsTheDefault keeps the README's configuration
// reference honest: testdata/config/reference.yaml is the README's block
// verbatim, it loads under the strict decoder, and it says exactly what
// Default() does.
func TestReferenceConfigIsTheDefault(t *testing.T) {
	ref := filepath.Join("..", "testdata", "config", "reference.yaml")
	want, err := os.ReadFile(ref)
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	assert.Contains(t, string(readme), "```yaml\n"+string(want)+"```",
		"README's configuration reference and testdata/config/reference.yaml differ")

	c, err := Load(ref, []string{})
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	assert.Equal(t, normalise(Default()), normalise(c))
}

// normalise maps empty slices and maps to nil so that `[]` in YAML and an
// unset default compare equal.
func normalise(c Config) Config {
	if len(c.DB.Ecosystems) == 0 {
		c.DB.Ecosystems = nil
	}
	if len(c.Upstream.Registries) == 0 {
		c.Upstream.Registries = nil
	}
	if len(c.Admin.AccessKeys) == 0 {
		c.Admin.AccessKeys = nil
	}
	if len(c.Admin.Webhooks) == 0 {
		c.Admin.Webhooks = nil
	}
	if len(c.Policy) == 0 {
		c.Policy = nil
	}
	return c
}

func TestUnknownEnv(t *testing.T) {
	env := []string{"TOLLGATE_LOG_LEVEL=debug", "TOLLGATE_LOGLEVEL=debug", "TOLLGATE_ADMIN_URL=x", "TOLLGATE_SHARED=/s",
		"TOLLGATE_BENCH_ROUNDS=3", "TOLLGATE_LISTN=:1", "HOME=/root", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY=s"}
	got := UnknownEnv(env)
	if len(got) != 2 || got[0] != "TOLLGATE_LISTN" || got[1] != "TOLLGATE_LOGLEVEL" {
		t.Fatalf("UnknownEnv = %v, want the two misspelt ones", got)
	}
}

// Unknown keys are reported by their YAML section, not the Go type that
// decodes it, and the error still unwraps to yaml.v3's.
func TestUnknownKeysNamedBySection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yml := "server:\n  listn: \":1\"\npolicy:\n  - repositoryFilter: x\n    severty: HIGH\nbogus: 1\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, []string{})
	var te *yaml.TypeError
	if err == nil || !errors.As(err, &te) {
		t.Fatalf("Load: %v, want a yaml.TypeError inside", err)
	}
	for _, want := range []string{`line 2: field listn not found in section "server"`, `line 5: field severty not found in section "policy[]"`,
		"line 6: field bogus not found at the top level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
