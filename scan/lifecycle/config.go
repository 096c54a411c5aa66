package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
)

// Scan types, frequencies and rescan settings (ECR and Inspector enums).
const (
	ScanTypeBasic    = "BASIC"
	ScanTypeEnhanced = "ENHANCED"

	FreqScanOnPush  = "SCAN_ON_PUSH"
	FreqContinuous  = "CONTINUOUS_SCAN"
	FreqManual      = "MANUAL"
	FilterWildcard  = "WILDCARD"
	DurationForever = "LIFETIME"

	ModeLastPullDate = "LAST_PULL_DATE"
	ModeLastInUseAt  = "LAST_IN_USE_AT"

	// ScanTypePackage is the coverage scanType of an image (Inspector's ScanType).
	ScanTypePackage = "PACKAGE"
)

var durations = map[string]time.Duration{
	"DAYS_14":  14 * 24 * time.Hour,
	"DAYS_30":  30 * 24 * time.Hour,
	"DAYS_60":  60 * 24 * time.Hour,
	"DAYS_90":  90 * 24 * time.Hour,
	"DAYS_180": 180 * 24 * time.Hour,
}

// RegistryScanningConfiguration is ECR's Put/GetRegistryScanningConfiguration
// scanningConfiguration
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_RegistryScanningConfiguration.html).
type RegistryScanningConfiguration struct {
	ScanType string               `json:"scanType"`
	Rules    []index.ScanningRule `json:"rules"`
}

// EcrConfiguration is the ecrConfiguration of Inspector's UpdateConfiguration
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_EcrConfiguration.html).
// Empty PullDate fields keep their stored values.
type EcrConfiguration struct {
	RescanDuration         string `json:"rescanDuration"`
	PullDateRescanDuration string `json:"pullDateRescanDuration,omitempty"`
	PullDateRescanMode     string `json:"pullDateRescanMode,omitempty"`
}

// EcrConfigurationState is the ecrConfiguration of Inspector's GetConfiguration.
type EcrConfigurationState struct {
	RescanDurationState EcrRescanDurationState `json:"rescanDurationState"`
}

// EcrRescanDurationState is Inspector's EcrRescanDurationState. Status is
// always SUCCESS: tollgate applies updates synchronously (the eligibility
// sweep they start runs in the background).
type EcrRescanDurationState struct {
	RescanDuration         string    `json:"rescanDuration"`
	PullDateRescanDuration string    `json:"pullDateRescanDuration"`
	PullDateRescanMode     string    `json:"pullDateRescanMode"`
	Status                 string    `json:"status"`
	UpdatedAt              time.Time `json:"updatedAt"`
}

// RepositoryScanningConfiguration is ECR's BatchGetRepositoryScanningConfiguration entry.
type RepositoryScanningConfiguration struct {
	RepositoryName     string                   `json:"repositoryName"`
	ScanOnPush         bool                     `json:"scanOnPush"`
	ScanFrequency      string                   `json:"scanFrequency"`
	AppliedScanFilters []index.RepositoryFilter `json:"appliedScanFilters,omitempty"`
}

// ValidationError is an invalid configuration, with ECR's or Inspector's
// message; the admin API answers it as ValidationException (HTTP 400).
type ValidationError struct{ Message string }

func (e *ValidationError) Error() string { return e.Message }

func invalid(f string, a ...any) error { return &ValidationError{Message: fmt.Sprintf(f, a...)} }

// DefaultConfiguration is a fresh install's configuration: ENHANCED, one
// CONTINUOUS_SCAN rule for "*", 14-day windows on push and pull dates.
func DefaultConfiguration() index.ScanningConfiguration {
	return SeedFromConfig(config.Default().Scanning)
}

// SeedFromConfig converts the config file's scanning section.
func SeedFromConfig(c config.Scanning) index.ScanningConfiguration {
	out := index.ScanningConfiguration{
		ScanType:               c.ScanType,
		RescanDuration:         c.RescanDuration,
		PullDateRescanDuration: c.PullDateRescanDuration,
		PullDateRescanMode:     c.PullDateRescanMode,
	}
	for _, r := range c.Rules {
		nr := index.ScanningRule{ScanFrequency: r.ScanFrequency}
		for _, f := range r.RepositoryFilters {
			ft := f.FilterType
			if ft == "" {
				ft = FilterWildcard
			}
			nr.RepositoryFilters = append(nr.RepositoryFilters, index.RepositoryFilter{Filter: f.Filter, FilterType: ft})
		}
		out.Rules = append(out.Rules, nr)
	}
	return out
}

// ECR's ScanningRepositoryFilter.filter pattern.
var filterPattern = regexp.MustCompile(`^[a-z0-9*](?:[._\-/a-z0-9*]?[a-z0-9*]+)*$`)

// ValidateRegistry checks c as ECR's PutRegistryScanningConfiguration does:
// scanType BASIC or ENHANCED; at most 2 rules; BASIC allows SCAN_ON_PUSH and
// MANUAL, ENHANCED allows SCAN_ON_PUSH and CONTINUOUS_SCAN; each rule has 1 to
// 100 WILDCARD filters matching ECR's filter pattern. Errors are *ValidationError.
func ValidateRegistry(c RegistryScanningConfiguration) error {
	switch c.ScanType {
	case ScanTypeBasic, ScanTypeEnhanced:
	default:
		return invalid("1 validation error detected: Value '%s' at 'scanType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, ENHANCED]", c.ScanType)
	}
	if len(c.Rules) > 2 {
		return invalid("1 validation error detected: Value at 'rules' failed to satisfy constraint: Member must have length less than or equal to 2")
	}
	for i, r := range c.Rules {
		switch r.ScanFrequency {
		case FreqScanOnPush, FreqContinuous, FreqManual:
		default:
			return invalid("1 validation error detected: Value '%s' at 'rules.%d.member.scanFrequency' failed to satisfy constraint: Member must satisfy enum value set: [SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL]", r.ScanFrequency, i+1)
		}
		if c.ScanType == ScanTypeBasic && r.ScanFrequency == FreqContinuous {
			return invalid("Invalid parameter at 'scanFrequency' failed to satisfy constraint: 'CONTINUOUS_SCAN scan frequency is not supported for BASIC scan type. Supported scan frequencies are SCAN_ON_PUSH and MANUAL'")
		}
		if c.ScanType == ScanTypeEnhanced && r.ScanFrequency == FreqManual {
			return invalid("Invalid parameter at 'scanFrequency' failed to satisfy constraint: 'MANUAL scan frequency is not supported for ENHANCED scan type. Supported scan frequencies are SCAN_ON_PUSH and CONTINUOUS_SCAN'")
		}
		if n := len(r.RepositoryFilters); n < 1 || n > 100 {
			return invalid("1 validation error detected: Value at 'rules.%d.member.repositoryFilters' failed to satisfy constraint: Member must have length between 1 and 100", i+1)
		}
		for j, f := range r.RepositoryFilters {
			if f.FilterType != FilterWildcard {
				return invalid("1 validation error detected: Value '%s' at 'rules.%d.member.repositoryFilters.%d.member.filterType' failed to satisfy constraint: Member must satisfy enum value set: [WILDCARD]", f.FilterType, i+1, j+1)
			}
			if len(f.Filter) < 1 || len(f.Filter) > 256 || !filterPattern.MatchString(f.Filter) {
				return invalid("1 validation error detected: Value '%s' at 'rules.%d.member.repositoryFilters.%d.member.filter' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", f.Filter, i+1, j+1, filterPattern.String())
			}
		}
	}
	return nil
}

// ValidateEcr checks c as Inspector's UpdateConfiguration does. Empty
// PullDate fields are allowed (they keep the stored values).
func ValidateEcr(c EcrConfiguration) error {
	if _, ok := durations[c.RescanDuration]; !ok && c.RescanDuration != DurationForever {
		return invalid("1 validation error detected: Value '%s' at 'ecrConfiguration.rescanDuration' failed to satisfy constraint: Member must satisfy enum value set: [LIFETIME, DAYS_14, DAYS_30, DAYS_60, DAYS_90, DAYS_180]", c.RescanDuration)
	}
	if _, ok := durations[c.PullDateRescanDuration]; !ok && c.PullDateRescanDuration != "" {
		return invalid("1 validation error detected: Value '%s' at 'ecrConfiguration.pullDateRescanDuration' failed to satisfy constraint: Member must satisfy enum value set: [DAYS_14, DAYS_30, DAYS_60, DAYS_90, DAYS_180]", c.PullDateRescanDuration)
	}
	switch c.PullDateRescanMode {
	case "", ModeLastPullDate, ModeLastInUseAt:
	default:
		return invalid("1 validation error detected: Value '%s' at 'ecrConfiguration.pullDateRescanMode' failed to satisfy constraint: Member must satisfy enum value set: [LAST_PULL_DATE, LAST_IN_USE_AT]", c.PullDateRescanMode)
	}
	return nil
}

// validateStored checks a whole stored configuration (the seed).
func validateStored(c index.ScanningConfiguration) error {
	if err := ValidateRegistry(RegistryScanningConfiguration{ScanType: c.ScanType, Rules: c.Rules}); err != nil {
		return err
	}
	if c.PullDateRescanDuration == "" || c.PullDateRescanMode == "" {
		return invalid("pullDateRescanDuration and pullDateRescanMode must be set")
	}
	return ValidateEcr(EcrConfiguration{RescanDuration: c.RescanDuration, PullDateRescanDuration: c.PullDateRescanDuration, PullDateRescanMode: c.PullDateRescanMode})
}

// Configuration returns the stored scanning configuration, storing the seed
// (Options.Seed, else DefaultConfiguration) on first use.
func (s *Service) Configuration(ctx context.Context) (index.ScanningConfiguration, error) {
	c, err := s.settings.Scanning(ctx)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, index.ErrNotFound) {
		return c, fmt.Errorf("lifecycle: configuration: %w", err)
	}
	seed := DefaultConfiguration()
	if s.o.Seed != nil {
		seed = *s.o.Seed
	}
	if err := validateStored(seed); err != nil {
		return c, fmt.Errorf("lifecycle: seed configuration: %w", err)
	}
	seed.UpdatedAt = s.now()
	c, seeded, err := s.settings.SeedScanning(ctx, seed)
	if err != nil {
		return c, fmt.Errorf("lifecycle: seed configuration: %w", err)
	}
	if seeded {
		s.log.Info().Str("scanType", c.ScanType).Msg("scanning configuration seeded")
	}
	return c, nil
}

// GetRegistryScanningConfiguration is ECR's GetRegistryScanningConfiguration.
func (s *Service) GetRegistryScanningConfiguration(ctx context.Context) (RegistryScanningConfiguration, error) {
	c, err := s.Configuration(ctx)
	return RegistryScanningConfiguration{ScanType: c.ScanType, Rules: c.Rules}, err
}

// PutRegistryScanningConfiguration is ECR's PutRegistryScanningConfiguration:
// it validates (*ValidationError), stores, and starts an eligibility sweep
// (which backfills repositories newly under CONTINUOUS_SCAN).
func (s *Service) PutRegistryScanningConfiguration(ctx context.Context, in RegistryScanningConfiguration) (RegistryScanningConfiguration, error) {
	if in.ScanType == "" {
		in.ScanType = ScanTypeBasic // ECR's default when omitted
	}
	if err := ValidateRegistry(in); err != nil {
		return RegistryScanningConfiguration{}, err
	}
	c, err := s.Configuration(ctx)
	if err != nil {
		return RegistryScanningConfiguration{}, err
	}
	c.ScanType, c.Rules, c.UpdatedAt = in.ScanType, in.Rules, s.now()
	if _, err := s.settings.PutScanning(ctx, c); err != nil {
		return RegistryScanningConfiguration{}, fmt.Errorf("lifecycle: put scanning configuration: %w", err)
	}
	s.requestSweep()
	return in, nil
}

// GetEcrConfiguration is the ecrConfiguration of Inspector's GetConfiguration.
func (s *Service) GetEcrConfiguration(ctx context.Context) (EcrConfigurationState, error) {
	c, err := s.Configuration(ctx)
	return EcrConfigurationState{RescanDurationState: EcrRescanDurationState{
		RescanDuration:         c.RescanDuration,
		PullDateRescanDuration: c.PullDateRescanDuration,
		PullDateRescanMode:     c.PullDateRescanMode,
		Status:                 "SUCCESS",
		UpdatedAt:              c.UpdatedAt,
	}}, err
}

// UpdateEcrConfiguration is Inspector's UpdateConfiguration: it validates
// (*ValidationError), stores, and starts an eligibility sweep. Lengthening a
// window extends images still ACTIVE; INACTIVE ones stay inactive.
func (s *Service) UpdateEcrConfiguration(ctx context.Context, in EcrConfiguration) error {
	if err := ValidateEcr(in); err != nil {
		return err
	}
	c, err := s.Configuration(ctx)
	if err != nil {
		return err
	}
	c.RescanDuration = in.RescanDuration
	if in.PullDateRescanDuration != "" {
		c.PullDateRescanDuration = in.PullDateRescanDuration
	}
	if in.PullDateRescanMode != "" {
		c.PullDateRescanMode = in.PullDateRescanMode
	}
	c.UpdatedAt = s.now()
	if _, err := s.settings.PutScanning(ctx, c); err != nil {
		return fmt.Errorf("lifecycle: update ecr configuration: %w", err)
	}
	s.requestSweep()
	return nil
}

// RepositoryScanning is ECR's BatchGetRepositoryScanningConfiguration for one repository.
func (s *Service) RepositoryScanning(ctx context.Context, repo string) (RepositoryScanningConfiguration, error) {
	c, err := s.Configuration(ctx)
	if err != nil {
		return RepositoryScanningConfiguration{}, err
	}
	freq, rule := frequencyFor(c, repo)
	out := RepositoryScanningConfiguration{RepositoryName: repo, ScanFrequency: freq, ScanOnPush: freq != FreqManual}
	if rule != nil {
		out.AppliedScanFilters = rule.RepositoryFilters
	}
	return out, nil
}

// frequencyFor returns repo's scan frequency: the first rule with a filter
// matching repo wins; no match means MANUAL.
func frequencyFor(c index.ScanningConfiguration, repo string) (string, *index.ScanningRule) {
	for i := range c.Rules {
		for _, f := range c.Rules[i].RepositoryFilters {
			if WildcardMatch(f.Filter, repo) {
				return c.Rules[i].ScanFrequency, &c.Rules[i]
			}
		}
	}
	return FreqManual, nil
}

// WildcardMatch reports whether repository name matches an ECR WILDCARD
// repository filter (ScanningRepositoryFilter, filterType WILDCARD): '*'
// matches any run of characters (including '/'), everything else matches
// itself. The scanning rules, the admin API's filters and the pull policy
// all use it.
func WildcardMatch(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return len(name) >= len(last) && strings.HasSuffix(name, last)
}
