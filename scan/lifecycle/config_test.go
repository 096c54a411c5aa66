package lifecycle

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
)

func TestFrequencyRulePrecedenceAndWildcards(t *testing.T) {
	c := *cfg(ScanTypeEnhanced,
		rule(FreqScanOnPush, "prod/*", "legacy"),
		rule(FreqContinuous, "*"),
	)
	basic := *cfg(ScanTypeBasic, rule(FreqScanOnPush, "team-*/api"))
	tests := []struct {
		name string
		c    index.ScanningConfiguration
		repo string
		want string
	}{
		{"first rule wins over a later catch-all", c, "prod/web", FreqScanOnPush},
		{"exact filter", c, "legacy", FreqScanOnPush},
		{"exact filter does not match a prefix", c, "legacy2", FreqContinuous},
		{"star crosses slashes", c, "prod/a/b/c", FreqScanOnPush},
		{"catch-all", c, "library/nginx", FreqContinuous},
		{"no rule means MANUAL", basic, "other", FreqManual},
		{"inner wildcard", basic, "team-x/api", FreqScanOnPush},
		{"inner wildcard needs the suffix", basic, "team-x/api2", FreqManual},
		{"no rules at all", *cfg(ScanTypeEnhanced), "anything", FreqManual},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := frequencyFor(tt.c, tt.repo)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true}, {"*", "a/b", true}, {"a*", "a", true}, {"a*", "ba", false},
		{"*a", "ba", true}, {"*a", "ab", false}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXcYb", false},
		{"ab*ba", "aba", false}, {"ab*ba", "abba", true}, {"x", "x", true}, {"x", "xx", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, WildcardMatch(tt.pattern, tt.name), "%q ~ %q", tt.pattern, tt.name)
	}
}

func TestValidateRegistryBasicVsEnhanced(t *testing.T) {
	f := []index.RepositoryFilter{{Filter: "*", FilterType: FilterWildcard}}
	tests := []struct {
		name    string
		in      RegistryScanningConfiguration
		wantErr string // substring; "" means valid
	}{
		{"enhanced continuous", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqContinuous, f)}}, ""},
		{"enhanced scan on push", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqScanOnPush, f)}}, ""},
		{"enhanced manual refused", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqManual, f)}}, "MANUAL scan frequency is not supported for ENHANCED scan type"},
		{"basic scan on push", RegistryScanningConfiguration{ScanTypeBasic, []index.ScanningRule{rr(FreqScanOnPush, f)}}, ""},
		{"basic manual", RegistryScanningConfiguration{ScanTypeBasic, []index.ScanningRule{rr(FreqManual, f)}}, ""},
		{"basic continuous refused", RegistryScanningConfiguration{ScanTypeBasic, []index.ScanningRule{rr(FreqContinuous, f)}}, "CONTINUOUS_SCAN scan frequency is not supported for BASIC scan type"},
		{"bad scan type", RegistryScanningConfiguration{"DEEP", nil}, "Member must satisfy enum value set: [BASIC, ENHANCED]"},
		{"three rules", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqContinuous, f), rr(FreqContinuous, f), rr(FreqContinuous, f)}}, "length less than or equal to 2"},
		{"no filters", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqContinuous, nil)}}, "length between 1 and 100"},
		{"bad filter type", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqContinuous, []index.RepositoryFilter{{Filter: "a", FilterType: "REGEX"}})}}, "[WILDCARD]"},
		{"uppercase filter", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr(FreqContinuous, []index.RepositoryFilter{{Filter: "App", FilterType: FilterWildcard}})}}, "regular expression pattern"},
		{"bad frequency", RegistryScanningConfiguration{ScanTypeEnhanced, []index.ScanningRule{rr("HOURLY", f)}}, "SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRegistry(tt.in)
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "want *ValidationError, got %v", err)
			assert.Contains(t, ve.Message, tt.wantErr)
		})
	}
}

func rr(freq string, f []index.RepositoryFilter) index.ScanningRule {
	return index.ScanningRule{ScanFrequency: freq, RepositoryFilters: f}
}

func TestValidateEcr(t *testing.T) {
	assert.NoError(t, ValidateEcr(EcrConfiguration{RescanDuration: "LIFETIME"}))
	assert.NoError(t, ValidateEcr(EcrConfiguration{RescanDuration: "DAYS_180", PullDateRescanDuration: "DAYS_14", PullDateRescanMode: ModeLastInUseAt}))
	assert.ErrorContains(t, ValidateEcr(EcrConfiguration{RescanDuration: "DAYS_7"}), "ecrConfiguration.rescanDuration")
	assert.ErrorContains(t, ValidateEcr(EcrConfiguration{RescanDuration: "DAYS_14", PullDateRescanDuration: "LIFETIME"}), "pullDateRescanDuration")
	assert.ErrorContains(t, ValidateEcr(EcrConfiguration{RescanDuration: "DAYS_14", PullDateRescanMode: "LAST_PUSH"}), "pullDateRescanMode")
}

func TestConfigurationSeededOnceThenPersisted(t *testing.T) {
	c := config.Default().Scanning
	c.RescanDuration = "DAYS_30"
	seed := SeedFromConfig(c)
	h := newHarness(t, &seed)
	got, err := h.svc.Configuration(h.ctx)
	require.NoError(t, err)
	assert.Equal(t, "DAYS_30", got.RescanDuration)
	assert.Equal(t, ScanTypeEnhanced, got.ScanType)
	assert.Equal(t, FreqContinuous, got.Rules[0].ScanFrequency)

	require.NoError(t, h.svc.UpdateEcrConfiguration(h.ctx, EcrConfiguration{RescanDuration: "DAYS_90", PullDateRescanMode: ModeLastInUseAt}))
	// A second service on the same DB with another seed keeps what is stored.
	other := DefaultConfiguration()
	svc2 := New(Options{DB: h.db, Records: h.records, Scanner: h.scanner, Seed: &other})
	st, err := svc2.GetEcrConfiguration(h.ctx)
	require.NoError(t, err)
	assert.Equal(t, EcrRescanDurationState{RescanDuration: "DAYS_90", PullDateRescanDuration: "DAYS_14",
		PullDateRescanMode: ModeLastInUseAt, Status: "SUCCESS", UpdatedAt: t0}, st.RescanDurationState)

	_, err = h.svc.PutRegistryScanningConfiguration(h.ctx, RegistryScanningConfiguration{ScanType: ScanTypeBasic,
		Rules: []index.ScanningRule{rule(FreqContinuous, "*")}})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	reg, err := svc2.GetRegistryScanningConfiguration(h.ctx)
	require.NoError(t, err)
	assert.Equal(t, ScanTypeEnhanced, reg.ScanType, "a refused update changes nothing")

	rs, err := h.svc.RepositoryScanning(h.ctx, "any/repo")
	require.NoError(t, err)
	assert.Equal(t, RepositoryScanningConfiguration{RepositoryName: "any/repo", ScanOnPush: true, ScanFrequency: FreqContinuous,
		AppliedScanFilters: []index.RepositoryFilter{{Filter: "*", FilterType: FilterWildcard}}}, rs)
}
