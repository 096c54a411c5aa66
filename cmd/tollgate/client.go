package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/proxy/admin"
)

// The client commands (findings, coverage, config, scan-image, sbom,
// archive, restore) are thin clients of the admin API over HTTP: Inspector
// operations at their restJson1 paths, ECR operations as awsJson1_1, with
// the admin bearer token or, when the environment holds access keys and no
// token is given, signed with SigV4.

// clientFlags are the flags every client command shares.
type clientFlags struct {
	adminURL string
	token    string
	output   string // table or json
	timeout  time.Duration
}

func addClientFlags(cmd *cobra.Command, cf *clientFlags) {
	f := cmd.PersistentFlags()
	f.StringVar(&cf.adminURL, "admin-url", "", adminURLFlagHelp)
	f.StringVar(&cf.token, "token", "", tokenFlagHelp)
	f.StringVarP(&cf.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&cf.timeout, "timeout", 2*time.Minute, "request timeout")
}

// adminURLFlagHelp documents --admin-url and its defaults.
const adminURLFlagHelp = "admin API base URL (default env TOLLGATE_ADMIN_URL, else http:// + the configuration's server.adminListen (--config, env TOLLGATE_ADMIN_LISTEN), an unspecified host being 127.0.0.1: http://127.0.0.1:5001)"

// tokenFlagHelp documents --token and the credentials tried without it.
const tokenFlagHelp = "admin token (default env TOLLGATE_ADMIN_TOKEN; else SigV4 with env TOLLGATE_ADMIN_ACCESS_KEY_ID + TOLLGATE_ADMIN_SECRET_ACCESS_KEY; else the --config file's admin.token, else its first admin.accessKeys entry (SigV4); else <dataDir>/admin-token (--data-dir, env TOLLGATE_DATA_DIR, the --config file's dataDir); else SigV4 with env AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY)"

// credentialsHelp says how to give the CLI the admin API's credentials.
const credentialsHelp = "give the server's credentials: --token or env TOLLGATE_ADMIN_TOKEN (the server's admin.token), " +
	"env TOLLGATE_ADMIN_ACCESS_KEY_ID + TOLLGATE_ADMIN_SECRET_ACCESS_KEY (one of the server's admin.accessKeys; requests are signed with SigV4), " +
	"--config with the server's configuration file (its admin.token, admin.accessKeys, dataDir and server.adminListen), " +
	"or --data-dir set to the server's data directory (its " + admin.TokenFileName + ", generated when the server has no credentials configured)"

// sigV4Service is the signing name of the CLI's requests; the admin API
// accepts inspector2, ecr and tollgate (proxy/admin/auth.go).
const sigV4Service = "tollgate"

// adminClient talks to the admin API.
type adminClient struct {
	base   string
	token  string
	keys   *aws.Credentials // SigV4 when token is empty
	region string
	creds  string // the credentials used, for errors: "the bearer token from --token"
	hc     *http.Client
	output string
	out    io.Writer
	errOut io.Writer
}

// envKeys returns the access key pair in the environment variables idVar
// and secretVar, nil unless both are set.
func envKeys(idVar, secretVar string) *aws.Credentials {
	id, secret := os.Getenv(idVar), os.Getenv(secretVar)
	if id == "" || secret == "" {
		return nil
	}
	return &aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, Source: idVar}
}

// newAdminClient resolves the admin URL and the credentials and checks
// flags. The configuration is the one every subcommand sees (g.load:
// defaults, the --config file, TOLLGATE_* env, flags). The URL: --admin-url,
// env TOLLGATE_ADMIN_URL, else server.adminListen made dialable. The
// credentials, in order: --token, env TOLLGATE_ADMIN_TOKEN, env
// TOLLGATE_ADMIN_ACCESS_KEY_ID + TOLLGATE_ADMIN_SECRET_ACCESS_KEY (SigV4),
// the config file's admin.token, its first admin.accessKeys entry (SigV4),
// <dataDir>/admin-token, env AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
// (SigV4). Tollgate's own key variables come before the token file: a token
// file left from a run without credentials would otherwise shadow the keys
// the server now uses.
func newAdminClient(g *globals, cf *clientFlags) (*adminClient, error) {
	if cf.output != "table" && cf.output != "json" {
		return nil, fmt.Errorf("--output %q: want table or json", cf.output)
	}
	if g.cmd == nil {
		return nil, errors.New("internal error: the admin client needs the running command")
	}
	cfg, err := g.load(g.cmd)
	if err != nil {
		return nil, err
	}
	base := cf.adminURL
	if base == "" {
		if base, err = adminURLFromConfig(cfg, os.Getenv("TOLLGATE_ADMIN_URL")); err != nil {
			return nil, fmt.Errorf("no admin URL: %w; give --admin-url", err)
		}
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin-url %q: want http(s)://host:port", base)
	}
	c := &adminClient{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: cf.timeout},
		output: cf.output, out: g.stdout, errOut: g.stderr, region: "us-east-1"}
	if r := os.Getenv("AWS_REGION"); r != "" {
		c.region = r
	}
	switch {
	case cf.token != "":
		c.token, c.creds = cf.token, "the bearer token from --token"
	case os.Getenv("TOLLGATE_ADMIN_TOKEN") != "":
		c.token, c.creds = os.Getenv("TOLLGATE_ADMIN_TOKEN"), "the bearer token from env TOLLGATE_ADMIN_TOKEN"
	default:
		c.keys = envKeys("TOLLGATE_ADMIN_ACCESS_KEY_ID", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY")
		if c.keys != nil {
			break
		}
		// The env's token and keys were taken above: what is left in
		// cfg.Admin comes from the --config file.
		if cfg.Admin.Token != "" {
			c.token, c.creds = cfg.Admin.Token, "the bearer token from admin.token in "+g.configPath
			break
		}
		if i := slices.IndexFunc(cfg.Admin.AccessKeys, func(k config.AccessKey) bool { return k.AccessKeyID != "" && k.SecretAccessKey != "" }); i >= 0 {
			k := cfg.Admin.AccessKeys[i]
			c.keys = &aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey, Source: "admin.accessKeys in " + g.configPath}
			break
		}
		tok, terr := admin.ReadTokenFile(cfg.DataDir)
		if terr == nil {
			c.token, c.creds = tok, "the bearer token from "+filepath.Join(cfg.DataDir, admin.TokenFileName)
			break
		}
		if c.keys = envKeys("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"); c.keys == nil {
			return nil, fmt.Errorf("no admin credentials (%w): %s", terr, credentialsHelp)
		}
	}
	if c.keys != nil {
		c.creds = fmt.Sprintf("a SigV4 signature with access key %s from %s", c.keys.AccessKeyID, c.keys.Source)
		if strings.HasPrefix(c.keys.Source, "TOLLGATE_") || strings.HasPrefix(c.keys.Source, "AWS_") {
			c.creds = fmt.Sprintf("a SigV4 signature with access key %s from env %s", c.keys.AccessKeyID, c.keys.Source)
		}
	}
	return c, nil
}

// authorize adds the credentials to req: the bearer token, else a SigV4
// signature over the method, URL, host, date and body.
func (c *adminClient) authorize(ctx context.Context, req *http.Request, body []byte) error {
	if c.keys == nil {
		req.Header.Set("Authorization", "Bearer "+c.token)
		return nil
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", payload)
	if err := v4.NewSigner().SignHTTP(ctx, *c.keys, req, payload, sigV4Service, c.region, time.Now()); err != nil {
		return fmt.Errorf("signing the request: %w", err)
	}
	return nil
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
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if err := c.authorize(ctx, req, body); err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The usual cause: serve runs with another --admin-listen.
			return nil, fmt.Errorf("%w\n(no admin API at %s: is `tollgate serve` running, and on which --admin-listen? Point the CLI at it with --admin-url or TOLLGATE_ADMIN_URL; serve logs the URL at startup)", err, c.base)
		}
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
			ae.Message = "the admin API at " + c.base + " refused " + c.creds + "; " + credentialsHelp
		}
		return nil, ae
	}
	return b, nil
}

// inspector calls an Inspector operation (POST path, JSON in and out).
// inspectorPages posts in to path page by page (Inspector's nextToken
// paging, from the first page) and calls each with the page's list under
// the JSON field items; each returns false to stop early.
func (c *adminClient) inspectorPages(ctx context.Context, path string, in map[string]any, items string, each func([]json.RawMessage) (bool, error)) error {
	delete(in, "nextToken")
	for {
		var page map[string]json.RawMessage
		if err := c.inspector(ctx, path, in, &page); err != nil {
			return err
		}
		var list []json.RawMessage
		if b := page[items]; len(b) > 0 {
			if err := json.Unmarshal(b, &list); err != nil {
				return fmt.Errorf("%s: %s: %w", path, items, err)
			}
		}
		if more, err := each(list); err != nil || !more {
			return err
		}
		var next string
		if b := page["nextToken"]; len(b) > 0 {
			if err := json.Unmarshal(b, &next); err != nil {
				return fmt.Errorf("%s: nextToken: %w", path, err)
			}
		}
		if next == "" {
			return nil
		}
		in["nextToken"] = next
	}
}

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
