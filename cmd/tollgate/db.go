package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
)

// advisoryUpdater wires the advisory store, package index, findings store
// and re-matcher on db from the configuration. `tollgate serve` runs
// `go u.Run(ctx)` (refresh every db.refreshInterval, default 6 h; skip when
// it is 0) and calls rm.Image(ctx, inv) when an image's scan completes.
func advisoryUpdater(c config.Config, db *index.DB, log zerolog.Logger) (*index.Updater, *index.Rematcher) {
	adv := index.NewAdvisoryStore(db, log)
	rm := &index.Rematcher{
		Advisories: adv,
		Packages:   index.NewPkgIndex(db),
		Findings:   index.NewFindingStore(db),
		Log:        log,
	}
	u := &index.Updater{
		Store:      adv,
		Rematcher:  rm,
		BaseURL:    c.DB.BaseURL,
		Ecosystems: c.DB.Ecosystems,
		MaxBytes:   c.DB.MaxDownloadBytes,
		Interval:   c.DB.RefreshInterval,
		TempDir:    c.DataDir,
		Log:        log,
	}
	return u, rm
}

// newDBCmd builds `tollgate db`: the advisory database.
func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Manage the advisory database (OSV feeds)",
	}
	var format string
	// open opens the index; with webhooks configured, the finding changes of
	// its re-matches go to the outbox as events (rematchAnnouncer), which the
	// next `tollgate serve` delivers.
	open := func(cmd *cobra.Command) (dbCommandIndex, *index.Updater, *index.Rematcher, error) {
		c, err := g.load(cmd)
		if err != nil {
			return dbCommandIndex{}, nil, nil, err
		}
		if err := c.Validate(); err != nil {
			return dbCommandIndex{}, nil, nil, err
		}
		log := g.logger(c)
		if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
			return dbCommandIndex{}, nil, nil, err
		}
		db, err := index.Open(filepath.Join(c.DataDir, "index"), index.Options{Logger: log})
		if err != nil {
			return dbCommandIndex{}, nil, nil, lockedHint(err)
		}
		u, rm := advisoryUpdater(c, db, log)
		ann := newRematchAnnouncer(c, db)
		if ann != nil {
			rm.OnChange = ann.OnChange
		}
		return dbCommandIndex{db: db, ann: ann}, u, rm, nil
	}
	results := func(rs []index.UpdateResult) error {
		if format == "json" {
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rs)
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tADVISORIES\tADDED\tCHANGED\tWITHDRAWN\tREMOVED\tIMAGES RE-MATCHED\tNOTE")
		for _, r := range rs {
			note := r.Err
			if r.NotModified {
				note = "not modified"
			}
			rem := "-"
			if r.Rematch != nil {
				rem = fmt.Sprintf("%d (%d changed)", r.Rematch.Examined, len(r.Rematch.Changed))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Source, r.Count, len(r.Delta.Added), len(r.Delta.Changed),
				len(r.Delta.Withdrawn), len(r.Delta.Removed), rem, note)
		}
		return tw.Flush()
	}

	var ecosystems []string
	var baseURL string
	update := &cobra.Command{
		Use:   "update",
		Short: "Download <baseURL>/<ecosystem>/all.zip for each ecosystem (conditional requests) and import what changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, u, _, err := open(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if len(ecosystems) > 0 {
				u.Ecosystems = ecosystems
			}
			if baseURL != "" {
				u.BaseURL = baseURL
			}
			if f, ok := g.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
				u.Progress = func(eco string) func(read, total int64) {
					return func(read, total int64) {
						if total > 0 {
							fmt.Fprintf(g.stderr, "\r\033[K%s: %s / %s (%d%%)", eco, humanBytes(read), humanBytes(total), read*100/total)
						} else {
							fmt.Fprintf(g.stderr, "\r\033[K%s: %s", eco, humanBytes(read))
						}
					}
				}
				defer fmt.Fprint(g.stderr, "\r\033[K")
			}
			rs, uerr := u.Update(cmd.Context())
			if err := results(rs); err != nil {
				return err
			}
			return uerr
		},
	}
	update.Flags().StringSliceVar(&ecosystems, "ecosystem", nil, "ecosystems to update (default: db.ecosystems, else every supported one)")
	update.Flags().StringVar(&baseURL, "base-url", "", "feed base URL (default db.baseURL; a mirror for air-gapped sites)")

	var merge bool
	var importAdmin clientFlags // --admin-url: import through a running server (db_import_remote.go)
	imp := &cobra.Command{
		Use:   "import PATH...",
		Short: "Import advisories from directories, zip archives or single OSV JSON/YAML or Alpine secdb files",
		Long: `Import advisories from directories, zip archives or single OSV JSON/YAML or
Alpine secdb files. A directory or zip replaces the sources it holds (--merge
keeps the rest); a single file merges into its source. Several paths are one
import: a source found in more than one of them holds all their advisories.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if importAdmin.adminURL != "" {
				return dbImportRemote(cmd.Context(), g, importAdmin, args, merge, results)
			}
			db, u, _, err := open(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			var all []index.UpdateResult
			batch := u.NewImportBatch(merge) // several paths: each source gets their union
			for _, p := range args {
				rs, ld, err := batch.Import(cmd.Context(), p)
				if err != nil {
					return fmt.Errorf("db import %s: %w", p, err)
				}
				all = append(all, rs...)
				if ld != nil && len(ld.Skipped) > 0 {
					fmt.Fprintf(g.stderr, "%s: %d files skipped (not OSV or secdb), first: %s: %s\n", p, len(ld.Skipped), ld.Skipped[0].Path, ld.Skipped[0].Reason)
				}
			}
			return results(all)
		},
	}
	imp.Flags().BoolVar(&merge, "merge", false, "keep advisories of the sources that PATH does not name (default for single files)")
	imp.Flags().StringVar(&importAdmin.adminURL, "admin-url", "", "import through a running server's admin API (POST /v1/db/import; the server reads the paths) instead of opening --data-dir, which a running server locks")
	imp.Flags().StringVar(&importAdmin.token, "token", "", "admin token with --admin-url; "+strings.TrimPrefix(tokenFlagHelp, "admin token "))

	var statusAdmin clientFlags // --admin-url: ask a running server (db_status.go)
	status := &cobra.Command{
		Use:   "status",
		Short: "Show per-source advisory counts, newest modified time and age",
		Long: `Show per-source advisory counts, newest modified time, import time and age.
With --admin-url, or when a running ` + "`tollgate serve`" + ` holds --data-dir's lock,
ask that server's admin API (GET /v1/db/status; env TOLLGATE_ADMIN_URL, else
server.adminListen; admin credentials as for the client commands).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if statusAdmin.adminURL != "" {
				srcs, now, err := dbStatusRemote(cmd.Context(), g, statusAdmin)
				if err != nil {
					return err
				}
				return printDBStatus(g, format, srcs, now, statusAdmin.adminURL)
			}
			db, u, _, err := open(cmd)
			if isLocked(err) {
				c, cerr := g.load(cmd)
				if cerr != nil {
					return errors.Join(err, cerr)
				}
				cf := statusAdmin
				if cf.adminURL, cerr = adminURLFromConfig(c, os.Getenv("TOLLGATE_ADMIN_URL")); cerr != nil {
					return fmt.Errorf("%w; cannot ask the running server instead: %w", err, cerr)
				}
				srcs, now, rerr := dbStatusRemote(cmd.Context(), g, cf)
				if rerr != nil {
					return fmt.Errorf("%w; asking the running server instead (--admin-url %s) failed: %w", err, cf.adminURL, rerr)
				}
				fmt.Fprintf(g.stderr, "a running `tollgate serve` holds the index: status from its admin API at %s\n", cf.adminURL)
				return printDBStatus(g, format, srcs, now, cf.adminURL)
			}
			if err != nil {
				return err
			}
			defer db.Close()
			srcs, err := u.Store.Sources(cmd.Context())
			if err != nil {
				return err
			}
			return printDBStatus(g, format, srcs, time.Now(), "")
		},
	}
	status.Flags().StringVar(&statusAdmin.adminURL, "admin-url", "", "ask a running server's admin API (GET /v1/db/status) instead of opening --data-dir, which a running server locks")
	status.Flags().StringVar(&statusAdmin.token, "token", "", "admin token with the admin API; "+strings.TrimPrefix(tokenFlagHelp, "admin token "))

	rematch := &cobra.Command{
		Use:   "rematch",
		Short: "Re-match every stored image against the current advisories (no blob is read)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, rm, err := open(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := rm.All(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(g.stdout).Encode(res)
			}
			fmt.Fprintf(g.stdout, "%d images re-matched, %d changed: %d findings created, %d updated, %d closed\n",
				res.Examined, len(res.Changed), res.Created, res.Updated, res.Closed)
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.AddCommand(update, imp, status, rematch)
	return cmd
}
