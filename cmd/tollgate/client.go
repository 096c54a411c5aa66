package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/proxy/admin"
)

// The client commands (findings, coverage, config, scan-image, sbom,
// archive, restore) are thin clients of the admin API over HTTP: Inspector
// operations at their restJson1 paths, ECR operations as awsJson1_1, with
// the admin bearer token.

// clientFlags are the flags every client command shares.
type clientFlags struct {
	adminURL string
	token    string
	output   string // table or json
	timeout  time.Duration
}

func addClientFlags(cmd *cobra.Command, cf *clientFlags) {
	def := "http://127.0.0.1:5001"
	if v := os.Getenv("TOLLGATE_ADMIN_URL"); v != "" {
		def = v
	}
	f := cmd.PersistentFlags()
	f.StringVar(&cf.adminURL, "admin-url", def, "admin API base URL (env TOLLGATE_ADMIN_URL)")
	f.StringVar(&cf.token, "token", "", "admin token (default env TOLLGATE_ADMIN_TOKEN, else <data-dir>/admin-token)")
	f.StringVarP(&cf.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&cf.timeout, "timeout", 2*time.Minute, "request timeout")
}

// adminClient talks to the admin API.
type adminClient struct {
	base   string
	token  string
	hc     *http.Client
	output string
	out    io.Writer
}

// newAdminClient resolves the token (flag, env, token file) and checks flags.
func newAdminClient(g *globals, cf *clientFlags) (*adminClient, error) {
	if cf.output != "table" && cf.output != "json" {
		return nil, fmt.Errorf("--output %q: want table or json", cf.output)
	}
	u, err := url.Parse(cf.adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin-url %q: want http(s)://host:port", cf.adminURL)
	}
	tok := cf.token
	if tok == "" {
		tok = os.Getenv("TOLLGATE_ADMIN_TOKEN")
	}
	if tok == "" {
		t, err := admin.ReadTokenFile(g.dataDir)
		if err != nil {
			return nil, fmt.Errorf("no admin token: pass --token, set TOLLGATE_ADMIN_TOKEN, or run where --data-dir holds %s (%w)", admin.TokenFileName, err)
		}
		tok = t
	}
	return &adminClient{base: strings.TrimRight(cf.adminURL, "/"), token: tok, hc: &http.Client{Timeout: cf.timeout},
		output: cf.output, out: g.stdout}, nil
}

// apiError is an error answered by the admin API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

func (c *adminClient) do(ctx context.Context, method, path string, hdr map[string]string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		ae := &apiError{Status: resp.StatusCode, Code: resp.Header.Get("X-Amzn-ErrorType"), Message: e.Message}
		if ae.Code == "" {
			ae.Code = e.Type
		}
		if ae.Message == "" {
			ae.Message = strings.TrimSpace(string(b))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			ae.Message = "the admin API refused the token"
		}
		return nil, ae
	}
	return b, nil
}

// inspector calls an Inspector operation (POST path, JSON in and out).
func (c *adminClient) inspector(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, path, map[string]string{"Content-Type": "application/json"}, b)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(resp, out)
}

// ecr calls an ECR operation (awsJson1_1).
func (c *adminClient) ecr(ctx context.Context, op string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, "/", map[string]string{"Content-Type": "application/x-amz-json-1.1",
		"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921." + op}, b)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(resp, out)
}

// printJSON writes v indented.
func (c *adminClient) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under a header, aligned.
func (c *adminClient) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// epochTime renders an epoch-seconds timestamp for tables.
func epochTime(v float64) string {
	if v == 0 {
		return "-"
	}
	return time.Unix(int64(v), 0).UTC().Format("2006-01-02 15:04")
}

// shortDigest abbreviates sha256:… to its first 12 hex digits.
func shortDigest(d string) string {
	if _, h, ok := strings.Cut(d, ":"); ok && len(h) > 12 {
		return h[:12]
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// imageID parses IMAGE (repo@digest or repo:tag) into ECR's repositoryName and imageId.
func imageID(ref string) (repo string, id map[string]string, err error) {
	repo, tag, d := admin.ParseImageRef(ref)
	if repo == "" {
		return "", nil, fmt.Errorf("image %q: want REPO@sha256:… or REPO:TAG", ref)
	}
	if d != "" {
		return repo, map[string]string{"imageDigest": d.String()}, nil
	}
	return repo, map[string]string{"imageTag": tag}, nil
}
