package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/index"
)

// ecrScanningConfig is ECR's RegistryScanningConfiguration.
type ecrScanningConfig struct {
	ScanType string `json:"scanType"`
	Rules    []struct {
		ScanFrequency     string `json:"scanFrequency"`
		RepositoryFilters []struct {
			Filter     string `json:"filter"`
			FilterType string `json:"filterType"`
		} `json:"repositoryFilters"`
	} `json:"rules"`
}

// inspectorConfig is Inspector's GetConfiguration answer.
type inspectorConfig struct {
	EcrConfiguration struct {
		RescanDurationState struct {
			RescanDuration         string  `json:"rescanDuration"`
			PullDateRescanDuration string  `json:"pullDateRescanDuration"`
			PullDateRescanMode     string  `json:"pullDateRescanMode"`
			Status                 string  `json:"status"`
			UpdatedAt              float64 `json:"updatedAt"`
		} `json:"rescanDurationState"`
	} `json:"ecrConfiguration"`
}

func newConfigCmd(g *globals) *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{Use: "config", Short: "Show or change the scanning configuration (ECR registry scanning, Inspector rescan durations)"}
	addClientFlags(cmd, cf)
	show := func(c *adminClient, cmd *cobra.Command) error {
		var reg struct {
			RegistryID            string            `json:"registryId"`
			ScanningConfiguration ecrScanningConfig `json:"scanningConfiguration"`
		}
		if err := c.ecr(cmd.Context(), "GetRegistryScanningConfiguration", map[string]any{}, &reg); err != nil {
			return err
		}
		var insp inspectorConfig
		if err := c.inspector(cmd.Context(), "/configuration/get", map[string]any{}, &insp); err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(map[string]any{"scanningConfiguration": reg.ScanningConfiguration, "ecrConfiguration": insp.EcrConfiguration})
		}
		st := insp.EcrConfiguration.RescanDurationState
		rows := [][]string{{"scanType", reg.ScanningConfiguration.ScanType}}
		for i, r := range reg.ScanningConfiguration.Rules {
			var fs []string
			for _, f := range r.RepositoryFilters {
				fs = append(fs, f.Filter)
			}
			rows = append(rows, []string{fmt.Sprintf("rules[%d]", i), r.ScanFrequency + " " + strings.Join(fs, ",")})
		}
		rows = append(rows, []string{"rescanDuration", st.RescanDuration}, []string{"pullDateRescanDuration", st.PullDateRescanDuration},
			[]string{"pullDateRescanMode", st.PullDateRescanMode}, []string{"updatedAt", epochTime(st.UpdatedAt)})
		return c.table([]string{"SETTING", "VALUE"}, rows)
	}
	get := &cobra.Command{
		Use:   "get",
		Short: "Show the scanning configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			return show(c, cmd)
		},
	}
	var scanType, rescan, pullRescan, pullMode string
	var rules []string
	set := &cobra.Command{
		Use:   "set",
		Short: "Change the scanning configuration",
		Long: `Change the scanning configuration. Rules are FREQUENCY=FILTER[,FILTER…] with
FREQUENCY SCAN_ON_PUSH, CONTINUOUS_SCAN or MANUAL and WILDCARD filters, e.g.
  tollgate config set --scan-type ENHANCED --rule 'CONTINUOUS_SCAN=prod/*' --rule 'SCAN_ON_PUSH=*'
  tollgate config set --rescan-duration DAYS_30 --pull-date-rescan-duration DAYS_14`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			fl := cmd.Flags()
			if !fl.Changed("scan-type") && !fl.Changed("rule") && !fl.Changed("rescan-duration") && !fl.Changed("pull-date-rescan-duration") && !fl.Changed("pull-date-rescan-mode") {
				return fmt.Errorf("nothing to set: see --help")
			}
			if fl.Changed("scan-type") || fl.Changed("rule") {
				var cur struct {
					ScanningConfiguration ecrScanningConfig `json:"scanningConfiguration"`
				}
				if err := c.ecr(cmd.Context(), "GetRegistryScanningConfiguration", map[string]any{}, &cur); err != nil {
					return err
				}
				in := map[string]any{"scanType": cur.ScanningConfiguration.ScanType, "rules": cur.ScanningConfiguration.Rules}
				if fl.Changed("scan-type") {
					in["scanType"] = strings.ToUpper(scanType)
				}
				if fl.Changed("rule") {
					var rs []map[string]any
					for _, r := range rules {
						freq, filters, ok := strings.Cut(r, "=")
						if !ok || filters == "" {
							return fmt.Errorf("--rule %q: want FREQUENCY=FILTER[,FILTER…]", r)
						}
						var fs []map[string]string
						for _, f := range strings.Split(filters, ",") {
							fs = append(fs, map[string]string{"filter": f, "filterType": "WILDCARD"})
						}
						rs = append(rs, map[string]any{"scanFrequency": strings.ToUpper(freq), "repositoryFilters": fs})
					}
					in["rules"] = rs
				}
				if err := c.ecr(cmd.Context(), "PutRegistryScanningConfiguration", in, nil); err != nil {
					return err
				}
			}
			if fl.Changed("rescan-duration") || fl.Changed("pull-date-rescan-duration") || fl.Changed("pull-date-rescan-mode") {
				var cur inspectorConfig
				if err := c.inspector(cmd.Context(), "/configuration/get", map[string]any{}, &cur); err != nil {
					return err
				}
				st := cur.EcrConfiguration.RescanDurationState
				ec := map[string]string{"rescanDuration": st.RescanDuration, "pullDateRescanDuration": st.PullDateRescanDuration,
					"pullDateRescanMode": st.PullDateRescanMode}
				if fl.Changed("rescan-duration") {
					ec["rescanDuration"] = strings.ToUpper(rescan)
				}
				if fl.Changed("pull-date-rescan-duration") {
					ec["pullDateRescanDuration"] = strings.ToUpper(pullRescan)
				}
				if fl.Changed("pull-date-rescan-mode") {
					ec["pullDateRescanMode"] = strings.ToUpper(pullMode)
				}
				if err := c.inspector(cmd.Context(), "/configuration/update", map[string]any{"ecrConfiguration": ec}, nil); err != nil {
					return err
				}
			}
			return show(c, cmd)
		},
	}
	f := set.Flags()
	f.StringVar(&scanType, "scan-type", "", "ENHANCED or BASIC")
	f.StringArrayVar(&rules, "rule", nil, "FREQUENCY=FILTER[,FILTER…] (repeatable, replaces all rules)")
	f.StringVar(&rescan, "rescan-duration", "", "LIFETIME, DAYS_14, DAYS_30, DAYS_60, DAYS_90, DAYS_180")
	f.StringVar(&pullRescan, "pull-date-rescan-duration", "", "DAYS_14, DAYS_30, DAYS_60, DAYS_90, DAYS_180")
	f.StringVar(&pullMode, "pull-date-rescan-mode", "", "LAST_PULL_DATE or LAST_IN_USE_AT")
	cmd.AddCommand(get, set)
	return cmd
}

func newScanImageCmd(g *globals) *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "scan-image REPO@DIGEST|REPO:TAG",
		Short: "Queue a manual scan of an image in the registry (ECR StartImageScan)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			repo, id, err := c.imageID(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var out struct {
				RepositoryName  string            `json:"repositoryName"`
				ImageID         map[string]string `json:"imageId"`
				ImageScanStatus struct {
					Status      string `json:"status"`
					Description string `json:"description"`
				} `json:"imageScanStatus"`
			}
			if err := c.ecr(cmd.Context(), "StartImageScan", map[string]any{"repositoryName": repo, "imageId": id}, &out); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(out)
			}
			fmt.Fprintf(c.out, "%s@%s: %s (%s)\n", out.RepositoryName, out.ImageID["imageDigest"], out.ImageScanStatus.Status, out.ImageScanStatus.Description)
			return nil
		},
	}
	addClientFlags(cmd, cf)
	return cmd
}

func newSbomCmd(g *globals) *cobra.Command {
	cf := &clientFlags{}
	var format, outFile, platform string
	cmd := &cobra.Command{
		Use:   "sbom IMAGE",
		Short: "Print the SBOM of an image in the registry (CycloneDX 1.4 or SPDX 2.3 JSON)",
		Long: `Print the SBOM tollgate holds for IMAGE (REPO@sha256:… or REPO:TAG), from its
stored inventory, as CycloneDX 1.4 JSON (--format cyclonedx) or SPDX 2.3 JSON
(--format spdx). For an image index (a multi-platform tag) it is the SBOM of
one platform's image: --platform os/arch[/variant], default this host's.
Inspector's CreateSbomExport writes the same documents to the server's
admin.sbomDir.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("output") {
				return fmt.Errorf("--output does not apply to sbom (its output is the JSON document): choose it with --format cyclonedx|spdx")
			}
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			if format != "cyclonedx" && format != "spdx" {
				return fmt.Errorf("--format %q: want cyclonedx or spdx", format)
			}
			ref := args[0]
			repo, id, err := c.imageID(cmd.Context(), ref)
			if err != nil {
				return err
			}
			// Resolve through the image records: an index names its
			// platform images. Servers without GET /v1/images resolve the
			// reference themselves.
			rec, lerr := c.lookupImage(cmd.Context(), repo, id["imageTag"], digest.Digest(id["imageDigest"]))
			switch {
			case lerr == nil && rec == nil:
				return fmt.Errorf("image %s not found", ref)
			case lerr == nil && rec.Index && len(rec.PlatformImages()) > 0:
				want := platform
				if want == "" {
					want = runtime.GOOS + "/" + runtime.GOARCH
				}
				d, err := pickPlatform(ref, rec, want, platform != "")
				if err != nil {
					return err
				}
				ref = repo + "@" + d.String()
			}
			q := url.Values{"image": {ref}, "format": {format}}
			b, err := c.do(cmd.Context(), http.MethodGet, "/v1/sbom?"+q.Encode(), nil, nil)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusNotFound && strings.Contains(ae.Message, index.ErrNotFound.Error()) {
					return fmt.Errorf("image %s not found", args[0])
				}
				return err
			}
			var w io.Writer = c.out
			if outFile != "" && outFile != "-" {
				return os.WriteFile(outFile, b, 0o644)
			}
			_, err = w.Write(b)
			return err
		},
	}
	addClientFlags(cmd, cf)
	// -o table|json means nothing here: the document is JSON, --format picks it.
	_ = cmd.PersistentFlags().MarkHidden("output")
	cmd.Flags().StringVar(&format, "format", "cyclonedx", "cyclonedx or spdx")
	cmd.Flags().StringVarP(&outFile, "file", "f", "", "write to this file instead of stdout")
	cmd.Flags().StringVar(&platform, "platform", "", "for an image index: the platform image, os/arch[/variant] (default this host's)")
	return cmd
}

// newStorageClassCmd builds `archive` (ARCHIVE) or `restore` (STANDARD).
func newStorageClassCmd(g *globals, archive bool) *cobra.Command {
	cf := &clientFlags{}
	use, class, short := "restore IMAGE", "STANDARD", "Restore an archived image (ECR UpdateImageStorageClass STANDARD)"
	if archive {
		use, class, short = "archive IMAGE", "ARCHIVE", "Archive an image: pulls refused, scanning stops (ECR UpdateImageStorageClass ARCHIVE)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			repo, id, err := c.imageID(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var out struct {
				RepositoryName string            `json:"repositoryName"`
				ImageID        map[string]string `json:"imageId"`
				ImageStatus    string            `json:"imageStatus"`
			}
			if err := c.ecr(cmd.Context(), "UpdateImageStorageClass", map[string]any{"repositoryName": repo, "imageId": id,
				"targetStorageClass": class}, &out); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(out)
			}
			fmt.Fprintf(c.out, "%s@%s: %s\n", out.RepositoryName, out.ImageID["imageDigest"], out.ImageStatus)
			return nil
		},
	}
	addClientFlags(cmd, cf)
	return cmd
}
