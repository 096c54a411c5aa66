package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// wireAdminAuth runs first among the components: when neither admin.token
// nor access keys are configured it generates a token into
// <dataDir>/admin-token (mode 0600, kept across restarts) and uses it, so
// the admin API is never open. Later components (metrics) see the token in
// s.cfg.
func wireAdminAuth(ctx context.Context, s *server) error {
	if s.cfg.Admin.Token != "" || len(s.cfg.Admin.AccessKeys) > 0 || s.cfg.Server.AdminListen == "" {
		return nil
	}
	tok, path, created, err := admin.EnsureTokenFile(s.cfg.DataDir)
	if err != nil {
		return err
	}
	s.cfg.Admin.Token = tok
	ev := s.log.Info().Str("op", "admin").Str("path", path)
	if created {
		ev.Msg("no admin credentials configured: generated an admin token (the CLI reads it with --data-dir)")
	} else {
		ev.Msg("no admin credentials configured: using the stored admin token")
	}
	return nil
}

// wireAdminAPI mounts the Inspector/ECR API, POST /v1/inuse and GET
// /v1/sbom on the admin listener, behind the admin credentials, and puts
// /v1/images behind them too; the API's export workers (RunExports) run as
// a background task. It runs after the lifecycle component:
// s.lifecycle (when set) answers configuration, manual scans, archiving
// and in-use questions.
func wireAdminAPI(ctx context.Context, s *server) error {
	keys := map[string]string{}
	for _, k := range s.cfg.Admin.AccessKeys {
		keys[k.AccessKeyID] = k.SecretAccessKey
	}
	auth, err := admin.NewAuth(admin.AuthOptions{Token: s.cfg.Admin.Token, AccessKeys: keys, Logger: s.log})
	if errors.Is(err, admin.ErrNoCredentials) {
		s.log.Warn().Str("op", "admin").Msg("admin API not served: no admin listener or credentials")
		return nil
	}
	if err != nil {
		return err
	}
	sbomDir, reportDir := s.cfg.Admin.SbomDir, s.cfg.Admin.ReportDir
	if sbomDir == "" {
		sbomDir = filepath.Join(s.cfg.DataDir, "sbom")
	}
	if reportDir == "" {
		reportDir = filepath.Join(s.cfg.DataDir, "reports")
	}
	o := admin.APIOptions{
		Findings:  index.NewFindingStore(s.db),
		Images:    s.records,
		Coverage:  admin.Coverages{Store: index.NewCoverages(s.db)},
		Filters:   index.NewFilters(s.db),
		SBOM:      admin.SBOMs{Inventories: index.NewInventories(s.db), Findings: index.NewFindingStore(s.db), ToolVersion: version},
		Deleter:   admin.ProxyDeleter{Handler: s.proxy},
		Region:    s.cfg.Admin.Region,
		SBOMDir:   sbomDir,
		ReportDir: reportDir,
		Logger:    s.log,
	}
	var inuse http.Handler
	if s.lifecycle != nil {
		lc := admin.Lifecycle{Service: s.lifecycle}
		o.Config, o.Scanner, o.Archiver, o.InUse = admin.LifecycleConfig{Service: s.lifecycle}, lc, lc, lc
		inuse = admin.InUseHandler(lc, s.log)
	} else {
		s.log.Warn().Str("op", "admin").Msg("no lifecycle wired: the admin API archives through the records and stores the scanning configuration without a sweep; manual scans and in-use reports are unavailable")
		o.Config = admin.SettingsConfig{Settings: index.NewSettings(s.db), Seed: lifecycle.SeedFromConfig(s.cfg.Scanning)}
		o.Archiver = admin.RecordsArchiver{Records: s.records}
	}
	api := admin.NewAPI(o)
	// CreateSbomExport / CreateFindingsReport run in the background, bounded
	// by the server's lifetime: interrupted exports end FAILED at shutdown.
	s.background = append(s.background, api.RunExports)
	s.admin.Handle("POST /", auth.Wrap(api))
	s.admin.Handle("GET /v1/sbom", auth.Wrap(api.SBOMHandler()))
	if inuse != nil {
		s.admin.Handle("POST /v1/inuse", auth.Wrap(inuse))
	}
	s.admin.Protect(auth)
	return nil
}
