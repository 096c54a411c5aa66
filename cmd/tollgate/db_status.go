package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
)

// isLocked reports a directory-lock failure of the local index: a running
// `tollgate serve` holds it.
func isLocked(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// dbStatusRemote is `tollgate db status` through a running server's admin
// API (GET /v1/db/status): the sources and the server's clock.
func dbStatusRemote(ctx context.Context, g *globals, cf clientFlags) ([]index.AdvisorySource, time.Time, error) {
	cf.output = "table"
	if cf.timeout <= 0 {
		cf.timeout = 2 * time.Minute
	}
	c, err := newAdminClient(g, &cf)
	if err != nil {
		return nil, time.Time{}, err
	}
	st, err := c.dbStatus(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("db status via %s: %w", c.base, err)
	}
	srcs := make([]index.AdvisorySource, 0, len(st.Sources))
	for _, s := range st.Sources {
		srcs = append(srcs, s.AdvisorySource)
	}
	return srcs, st.Now, nil
}

func (c *adminClient) dbStatus(ctx context.Context) (*admin.DBStatusResponse, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/db/status", nil, nil)
	if err != nil {
		return nil, err
	}
	var out admin.DBStatusResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	return &out, nil
}

// emptyDBHint tells the table reader (on stderr) that the server has no
// advisory data, so SUCCESSFUL scans with no findings mean nothing yet. It
// stays silent when the status cannot be read (scanning disabled, older
// server).
func (c *adminClient) emptyDBHint(ctx context.Context) {
	if c.output != "table" || c.errOut == nil {
		return
	}
	if st, err := c.dbStatus(ctx); err == nil && st.Empty {
		fmt.Fprintf(c.errOut, "note: no advisory data on the server: findings stay empty until `tollgate db import --admin-url %s PATH` (or the server's advisory refresh)\n", c.base)
	}
}

// adminURLFromConfig is the admin API of the server configured by c: env
// TOLLGATE_ADMIN_URL, else http:// server.adminListen (an unspecified host
// is this host).
func adminURLFromConfig(c config.Config, envURL string) (string, error) {
	if envURL != "" {
		return envURL, nil
	}
	if c.Server.AdminListen == "" {
		return "", errors.New("the admin API is disabled (server.adminListen is empty)")
	}
	host, port, err := net.SplitHostPort(c.Server.AdminListen)
	if err != nil {
		return "", fmt.Errorf("server.adminListen %q: %w", c.Server.AdminListen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// printDBStatus writes the sources as `tollgate db status` does, ages at
// now; via names the server asked (empty: the local index).
func printDBStatus(g *globals, format string, srcs []index.AdvisorySource, now time.Time, via string) error {
	if format == "json" {
		if srcs == nil {
			srcs = []index.AdvisorySource{}
		}
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(srcs)
	}
	if len(srcs) == 0 {
		if via != "" {
			fmt.Fprintf(g.stdout, "no advisories: findings stay empty until `tollgate db import --admin-url %s PATH` (or the server's advisory refresh)\n", via)
		} else {
			fmt.Fprintln(g.stdout, "no advisories: run `tollgate db update` or `tollgate db import PATH`")
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tADVISORIES\tWITHDRAWN\tPACKAGES\tNEWEST MODIFIED\tIMPORTED\tAGE\tORIGIN")
	for _, s := range srcs {
		nm := "-"
		if !s.NewestModified.IsZero() && s.NewestModified.Year() > 1 {
			nm = s.NewestModified.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", s.Source, s.Count, s.Withdrawn, s.Packages, nm,
			s.ImportedAt.UTC().Format(time.RFC3339), s.Age(now).Round(time.Minute), s.Origin)
	}
	return tw.Flush()
}
