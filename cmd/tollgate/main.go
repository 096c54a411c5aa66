// Command tollgate is a vulnerability-scanning OCI registry proxy.
//
// Subcommands are built by constructor functions (no init registries); each
// lives in its own file: serve.go, scan.go, db.go, client.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/config"
)

// exitError carries a specific process exit code (e.g. `scan --fail-on`).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// globals are the flags every subcommand shares.
type globals struct {
	dataDir    string
	configPath string
	logFormat  string
	logLevel   string
	stdout     io.Writer
	stderr     io.Writer
	// cmd is the subcommand being run (set before it runs), for code
	// without its *cobra.Command at hand: the admin client loads the
	// configuration with it.
	cmd *cobra.Command
}

// load returns the effective configuration: defaults, the --config file,
// TOLLGATE_* env, then explicitly set flags; validated.
func (g *globals) load(cmd *cobra.Command) (config.Config, error) {
	c, err := config.Load(g.configPath, nil)
	if err != nil {
		return c, err
	}
	fl := cmd.Flags()
	if fl.Changed("data-dir") || c.DataDir == "" {
		c.DataDir = g.dataDir
	}
	if fl.Changed("log-format") {
		c.Log.Format = g.logFormat
	}
	if fl.Changed("log-level") {
		c.Log.Level = g.logLevel
	}
	return c, nil
}

// logger builds the process logger from the configuration.
func (g *globals) logger(c config.Config) zerolog.Logger {
	var w io.Writer = g.stderr
	if c.Log.Format == "console" {
		w = zerolog.ConsoleWriter{Out: g.stderr, TimeFormat: time.RFC3339}
	}
	lvl, err := zerolog.ParseLevel(c.Log.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "A vulnerability-scanning OCI registry proxy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// No subcommand defines its own PersistentPreRun (it would replace this one).
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) { g.cmd = cmd }
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	defDir := "./tollgate-data"
	if v := os.Getenv("TOLLGATE_DATA_DIR"); v != "" {
		defDir = v
	}
	pf.StringVar(&g.dataDir, "data-dir", defDir, "data directory (env TOLLGATE_DATA_DIR)")
	pf.StringVar(&g.configPath, "config", "", "YAML configuration file (unknown keys are errors)")
	pf.StringVar(&g.logFormat, "log-format", "json", "log format: json or console")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	for _, c := range subcommands(g) {
		root.AddCommand(c)
	}
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(os.Stdout, os.Stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "tollgate:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "tollgate:", err)
		os.Exit(2)
	}
}
