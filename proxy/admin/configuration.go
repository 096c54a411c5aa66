package admin

import (
	"context"
)

// Inspector's GetConfiguration / UpdateConfiguration
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_UpdateConfiguration.html):
// the ECR rescan durations of the scanning configuration.

var (
	rescanDurations         = []string{"LIFETIME", "DAYS_14", "DAYS_30", "DAYS_60", "DAYS_90", "DAYS_180"}
	pullDateRescanDurations = []string{"DAYS_14", "DAYS_30", "DAYS_60", "DAYS_90", "DAYS_180"}
	pullDateRescanModes     = []string{"LAST_PULL_DATE", "LAST_IN_USE_AT"}
)

func (a *API) getConfiguration(ctx context.Context, _ []byte) (any, error) {
	if a.o.Config == nil {
		return nil, unavailable("scanning configuration")
	}
	c, err := a.o.Config.ScanningConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	type state struct {
		RescanDuration         string     `json:"rescanDuration"`
		PullDateRescanDuration string     `json:"pullDateRescanDuration,omitempty"`
		PullDateRescanMode     string     `json:"pullDateRescanMode,omitempty"`
		Status                 string     `json:"status"`
		UpdatedAt              *epochTime `json:"updatedAt,omitempty"`
	}
	type ecrState struct {
		RescanDurationState state `json:"rescanDurationState"`
	}
	return struct {
		EcrConfiguration ecrState `json:"ecrConfiguration"`
	}{ecrState{state{RescanDuration: c.RescanDuration, PullDateRescanDuration: c.PullDateRescanDuration,
		PullDateRescanMode: c.PullDateRescanMode, Status: "SUCCESS", UpdatedAt: epoch(c.UpdatedAt)}}}, nil
}

func (a *API) updateConfiguration(ctx context.Context, body []byte) (any, error) {
	if a.o.Config == nil {
		return nil, unavailable("scanning configuration")
	}
	var in struct {
		EcrConfiguration *struct {
			RescanDuration         string `json:"rescanDuration"`
			PullDateRescanDuration string `json:"pullDateRescanDuration"`
			PullDateRescanMode     string `json:"pullDateRescanMode"`
		} `json:"ecrConfiguration"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	e := in.EcrConfiguration
	if e == nil {
		return nil, errValidation("ecrConfiguration is required")
	}
	if !containsStr(rescanDurations, e.RescanDuration) {
		return nil, errValidation("ecrConfiguration.rescanDuration %q: want one of %v", e.RescanDuration, rescanDurations)
	}
	if e.PullDateRescanDuration != "" && !containsStr(pullDateRescanDurations, e.PullDateRescanDuration) {
		return nil, errValidation("ecrConfiguration.pullDateRescanDuration %q: want one of %v", e.PullDateRescanDuration, pullDateRescanDurations)
	}
	if e.PullDateRescanMode != "" && !containsStr(pullDateRescanModes, e.PullDateRescanMode) {
		return nil, errValidation("ecrConfiguration.pullDateRescanMode %q: want one of %v", e.PullDateRescanMode, pullDateRescanModes)
	}
	c, err := a.o.Config.ScanningConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	c.RescanDuration = e.RescanDuration
	if e.PullDateRescanDuration != "" {
		c.PullDateRescanDuration = e.PullDateRescanDuration
	}
	if e.PullDateRescanMode != "" {
		c.PullDateRescanMode = e.PullDateRescanMode
	}
	c.UpdatedAt = a.o.Now().UTC()
	if err := a.o.Config.SetScanningConfiguration(ctx, c); err != nil {
		return nil, err
	}
	a.log.Info().Str("rescanDuration", c.RescanDuration).Str("pullDateRescanDuration", c.PullDateRescanDuration).Msg("configuration updated")
	return struct{}{}, nil
}
