package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/index"
)

// cliFinding is the part of Inspector's Finding the tables show.
type cliFinding struct {
	FindingArn      string   `json:"findingArn"`
	Severity        string   `json:"severity"`
	Status          string   `json:"status"`
	Title           string   `json:"title"`
	Description     string   `json:"description"`
	FixAvailable    string   `json:"fixAvailable"`
	InspectorScore  *float64 `json:"inspectorScore"`
	FirstObservedAt float64  `json:"firstObservedAt"`
	LastObservedAt  float64  `json:"lastObservedAt"`
	Remediation     struct {
		Recommendation struct {
			Text string `json:"text"`
		} `json:"recommendation"`
	} `json:"remediation"`
	PackageVulnerabilityDetails struct {
		VulnerabilityId    string   `json:"vulnerabilityId"`
		Source             string   `json:"source"`
		SourceUrl          string   `json:"sourceUrl"`
		ReferenceUrls      []string `json:"referenceUrls"`
		VulnerablePackages []struct {
			Name            string `json:"name"`
			Version         string `json:"version"`
			Release         string `json:"release"`
			FixedInVersion  string `json:"fixedInVersion"`
			FilePath        string `json:"filePath"`
			SourceLayerHash string `json:"sourceLayerHash"`
			PackageManager  string `json:"packageManager"`
		} `json:"vulnerablePackages"`
	} `json:"packageVulnerabilityDetails"`
	Resources []struct {
		ID      string `json:"id"`
		Details struct {
			AwsEcrContainerImage struct {
				RepositoryName string   `json:"repositoryName"`
				ImageHash      string   `json:"imageHash"`
				ImageTags      []string `json:"imageTags"`
				Architecture   string   `json:"architecture"`
			} `json:"awsEcrContainerImage"`
		} `json:"details"`
	} `json:"resources"`
}

func (f *cliFinding) pkg() (name, version, fixed string) {
	for _, p := range f.PackageVulnerabilityDetails.VulnerablePackages {
		v := p.Version
		if p.Release != "" {
			v += "-" + p.Release
		}
		return p.Name, v, p.FixedInVersion
	}
	return "", "", ""
}

func (f *cliFinding) image() (repo, dgst string) {
	for _, r := range f.Resources {
		return r.Details.AwsEcrContainerImage.RepositoryName, r.Details.AwsEcrContainerImage.ImageHash
	}
	return "", ""
}

// oneOf returns a usage error unless v is one of the values flag takes:
// the server would answer a misspelt enum with an empty list, which a CI
// gate reads as "no findings".
func oneOf(flag, v string, values ...string) error {
	if slices.Contains(values, v) {
		return nil
	}
	return fmt.Errorf("%s %q: want one of %s", flag, v, strings.Join(values, ", "))
}

// maxFilterValues is Inspector's limit of values per filter field
// (FilterCriteria: "Array Members: Maximum number of 10 items").
const maxFilterValues = 10

// stringFilters builds an Inspector StringFilter list (EQUALS) from values.
func stringFilters(cmp string, values ...string) []map[string]string {
	var out []map[string]string
	for _, v := range values {
		if v != "" {
			out = append(out, map[string]string{"comparison": cmp, "value": v})
		}
	}
	return out
}

func newFindingsCmd(g *globals) *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{Use: "findings", Short: "List and show findings (Inspector ListFindings)"}
	addClientFlags(cmd, cf)

	var severities []string
	var repo, status, vuln, image, pkgName, sortField, sortOrder, fix string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List findings, highest severity first",
		Long: `List findings through the admin API's ListFindings. Filters are AND'ed;
--severity may repeat (OR'ed). --status defaults to ACTIVE; "all" lists every status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			crit := map[string]any{}
			add := func(field string, fs []map[string]string) {
				if len(fs) > 0 {
					crit[field] = fs
				}
			}
			for i := range severities {
				severities[i] = strings.ToUpper(severities[i])
				if err := oneOf("--severity", severities[i], "CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED"); err != nil {
					return err
				}
			}
			if !strings.EqualFold(status, "all") {
				if err := oneOf("--status", strings.ToUpper(status), "ACTIVE", "SUPPRESSED", "CLOSED"); err != nil {
					return err
				}
			}
			if fix != "" {
				if err := oneOf("--fix-available", strings.ToUpper(fix), "YES", "NO", "PARTIAL"); err != nil {
					return err
				}
			}
			if err := oneOf("--order", strings.ToUpper(sortOrder), "ASC", "DESC"); err != nil {
				return err
			}
			add("severity", stringFilters("EQUALS", severities...))
			add("ecrImageRepositoryName", stringFilters("EQUALS", repo))
			if !strings.EqualFold(status, "all") {
				add("findingStatus", stringFilters("EQUALS", strings.ToUpper(status)))
			}
			add("vulnerabilityId", stringFilters("EQUALS", vuln))
			add("fixAvailable", stringFilters("EQUALS", strings.ToUpper(fix)))
			var platforms map[string]string // an index's platform images: digest → os/arch[/variant]
			if image != "" {
				var rec *index.ImageRecord
				var id map[string]string
				if strings.HasPrefix(image, "sha256:") {
					// A digest in any repository; an index's is looked up
					// for its platform images.
					rec, _ = c.lookupImage(cmd.Context(), "", "", digest.Digest(image))
				} else {
					var r string
					if r, id, err = c.imageID(cmd.Context(), image); err != nil {
						return err
					}
					add("ecrImageRepositoryName", stringFilters("EQUALS", r))
					// Servers without GET /v1/images filter as before.
					var lerr error
					rec, lerr = c.lookupImage(cmd.Context(), r, id["imageTag"], digest.Digest(id["imageDigest"]))
					if lerr == nil && rec == nil && id["imageTag"] != "" {
						// A misspelt tag would list nothing and exit 0. (A
						// digest still filters: a deleted image's findings
						// stay listed, CLOSED, for a while.)
						return fmt.Errorf("image %s not found", image)
					}
				}
				switch {
				case rec != nil && rec.Index && len(rec.PlatformImages()) > 0:
					// An image index has no findings of its own: its
					// platform images (children, which carry no tag) do.
					platforms = map[string]string{}
					var hashes []string
					for _, ch := range rec.PlatformImages() {
						platforms[ch.Digest.String()] = ch.Platform.String()
						hashes = append(hashes, ch.Digest.String())
					}
					if len(hashes) <= maxFilterValues {
						add("ecrImageHash", stringFilters("EQUALS", hashes...))
					} // else: more values than a filter takes; kept below
				case id == nil:
					add("ecrImageHash", stringFilters("EQUALS", image))
				case id["imageDigest"] != "":
					add("ecrImageHash", stringFilters("EQUALS", id["imageDigest"]))
				default:
					add("ecrImageTags", stringFilters("EQUALS", id["imageTag"]))
				}
			}
			if pkgName != "" {
				crit["vulnerablePackages"] = []map[string]any{{"name": map[string]string{"comparison": "EQUALS", "value": pkgName}}}
			}
			in := map[string]any{"filterCriteria": crit, "maxResults": 100}
			if sortField != "" || cmd.Flags().Changed("order") {
				// --order alone orders the default listing (highest severity
				// first) the other way.
				field := cmp.Or(strings.ToUpper(sortField), "SEVERITY")
				in["sortCriteria"] = map[string]string{"field": field, "sortOrder": strings.ToUpper(sortOrder)}
			}
			var raw []json.RawMessage
			// One listing, in the server's order. An index with more
			// platform images than a filter takes values is listed by
			// repository (or whole), keeping its platform images' findings.
			filterHashes := platforms != nil && crit["ecrImageHash"] == nil
			err = c.inspectorPages(cmd.Context(), "/findings/list", in, "findings", func(items []json.RawMessage) (bool, error) {
				for _, it := range items {
					if filterHashes {
						var f cliFinding
						if json.Unmarshal(it, &f) != nil {
							continue
						}
						if _, d := f.image(); platforms[d] == "" {
							continue
						}
					}
					raw = append(raw, it)
				}
				return limit <= 0 || len(raw) < limit, nil
			})
			if err != nil {
				return err
			}
			if limit > 0 && len(raw) > limit {
				raw = raw[:limit]
			}
			if c.output == "json" {
				if raw == nil {
					raw = []json.RawMessage{}
				}
				return c.printJSON(map[string]any{"findings": raw})
			}
			var rows [][]string
			for _, r := range raw {
				var f cliFinding
				if err := json.Unmarshal(r, &f); err != nil {
					return fmt.Errorf("decoding a finding: %w", err)
				}
				name, ver, fixed := f.pkg()
				rp, d := f.image()
				score := "-"
				if f.InspectorScore != nil {
					score = strconv.FormatFloat(*f.InspectorScore, 'f', 1, 64)
				}
				img := rp + "@" + shortDigest(d)
				if p := platforms[d]; p != "" {
					img += " (" + p + ")"
				}
				rows = append(rows, []string{f.Severity, score, f.PackageVulnerabilityDetails.VulnerabilityId, name, ver,
					orDash(fixed), img, f.Status, f.FindingArn[strings.LastIndexByte(f.FindingArn, '/')+1:]})
			}
			if err := c.table([]string{"SEVERITY", "SCORE", "VULNERABILITY", "PACKAGE", "VERSION", "FIXED IN", "IMAGE", "STATUS", "ID"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "%d findings\n", len(rows))
			return nil
		},
	}
	fl := list.Flags()
	fl.StringSliceVar(&severities, "severity", nil, "CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNTRIAGED (repeatable)")
	fl.StringVar(&repo, "repository", "", "repository name")
	fl.StringVar(&image, "image", "", "REPO@sha256:…, REPO:TAG or sha256:…; for an image index (multi-platform tag) the findings of its platform images")
	fl.StringVar(&status, "status", "ACTIVE", "ACTIVE, SUPPRESSED, CLOSED or all")
	fl.StringVar(&vuln, "vulnerability-id", "", "CVE or advisory id")
	fl.StringVar(&pkgName, "package", "", "vulnerable package name")
	fl.StringVar(&fix, "fix-available", "", "YES, NO or PARTIAL")
	fl.StringVar(&sortField, "sort", "", "Inspector SortField (SEVERITY, INSPECTOR_SCORE, FIRST_OBSERVED_AT, …)")
	fl.StringVar(&sortOrder, "order", "DESC", "ASC or DESC (of --sort, default SEVERITY)")
	fl.IntVar(&limit, "limit", 0, "stop after this many findings (0: all)")

	get := &cobra.Command{
		Use:   "get FINDING-ARN|ID",
		Short: "Show one finding",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			// A full ARN is a findingArn filter; a bare id (the ARN's last
			// element, as `findings list` shows it) is looked for page by page.
			crit := map[string]any{}
			if strings.HasPrefix(args[0], "arn:") {
				crit["findingArn"] = stringFilters("EQUALS", args[0])
			}
			in := map[string]any{"filterCriteria": crit, "maxResults": 100}
			var found json.RawMessage
			var f cliFinding
			err = c.inspectorPages(cmd.Context(), "/findings/list", in, "findings", func(items []json.RawMessage) (bool, error) {
				for _, r := range items {
					f = cliFinding{}
					if err := json.Unmarshal(r, &f); err != nil {
						return false, err
					}
					if f.FindingArn == args[0] || strings.HasSuffix(f.FindingArn, "/"+args[0]) {
						found = r
						return false, nil
					}
				}
				return true, nil
			})
			switch {
			case err != nil:
				return err
			case found == nil:
				return fmt.Errorf("no finding %s", args[0])
			case c.output == "json":
				return c.printJSON(found)
			}
			return printFinding(c, &f)
		},
	}
	cmd.AddCommand(list, get)
	return cmd
}

func printFinding(c *adminClient, f *cliFinding) error {
	name, ver, fixed := f.pkg()
	repo, d := f.image()
	score := "-"
	if f.InspectorScore != nil {
		score = strconv.FormatFloat(*f.InspectorScore, 'f', 1, 64)
	}
	rows := [][]string{
		{"Finding", f.FindingArn},
		{"Title", f.Title},
		{"Severity", f.Severity + " (score " + score + ")"},
		{"Status", f.Status},
		{"Vulnerability", f.PackageVulnerabilityDetails.VulnerabilityId + " (" + f.PackageVulnerabilityDetails.Source + ")"},
		{"Package", name + " " + ver},
		{"Fixed in", orDash(fixed)},
		{"Fix available", orDash(f.FixAvailable)},
		{"Image", repo + "@" + d},
		{"First observed", epochTime(f.FirstObservedAt)},
		{"Last observed", epochTime(f.LastObservedAt)},
		{"Remediation", orDash(f.Remediation.Recommendation.Text)},
		{"Advisory", orDash(f.PackageVulnerabilityDetails.SourceUrl)},
	}
	for _, p := range f.PackageVulnerabilityDetails.VulnerablePackages {
		rows = append(rows, []string{"File", orDash(p.FilePath)}, []string{"Layer", orDash(p.SourceLayerHash)})
	}
	if err := c.table([]string{"FIELD", "VALUE"}, rows); err != nil {
		return err
	}
	if f.Description != "" && f.Description != f.Title {
		fmt.Fprintln(c.out, "\n"+f.Description)
	}
	return nil
}

func newCoverageCmd(g *globals) *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{Use: "coverage", Short: "Scan coverage of repositories and images (Inspector ListCoverage)"}
	addClientFlags(cmd, cf)
	var repo, status, rtype, groupBy string
	crit := func() (map[string]any, error) {
		c := map[string]any{}
		if repo != "" {
			c["ecrRepositoryName"] = stringFilters("EQUALS", repo)
		}
		if status != "" {
			if err := oneOf("--status", strings.ToUpper(status), "ACTIVE", "INACTIVE"); err != nil {
				return nil, err
			}
			c["scanStatusCode"] = stringFilters("EQUALS", strings.ToUpper(status))
		}
		switch strings.ToLower(rtype) {
		case "":
		case "image":
			c["resourceType"] = stringFilters("EQUALS", "AWS_ECR_CONTAINER_IMAGE")
		case "repository":
			c["resourceType"] = stringFilters("EQUALS", "AWS_ECR_REPOSITORY")
		default:
			return nil, fmt.Errorf("--type %q: want image or repository", rtype)
		}
		return c, nil
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List covered resources with their scan status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			fc, err := crit()
			if err != nil {
				return err
			}
			in := map[string]any{"filterCriteria": fc, "maxResults": 200}
			var raw []json.RawMessage
			err = c.inspectorPages(cmd.Context(), "/coverage/list", in, "coveredResources", func(items []json.RawMessage) (bool, error) {
				raw = append(raw, items...)
				return true, nil
			})
			if err != nil {
				return err
			}
			if c.output == "json" {
				if raw == nil {
					raw = []json.RawMessage{}
				}
				return c.printJSON(map[string]any{"coveredResources": raw})
			}
			var rows [][]string
			for _, r := range raw {
				var cr struct {
					ResourceID       string  `json:"resourceId"`
					ResourceType     string  `json:"resourceType"`
					LastScannedAt    float64 `json:"lastScannedAt"`
					ResourceMetadata struct {
						EcrImage *struct {
							Tags       []string `json:"tags"`
							InUseCount int64    `json:"inUseCount"`
						} `json:"ecrImage"`
						EcrRepository struct {
							Name          string `json:"name"`
							ScanFrequency string `json:"scanFrequency"`
						} `json:"ecrRepository"`
					} `json:"resourceMetadata"`
					ScanStatus struct {
						StatusCode string `json:"statusCode"`
						Reason     string `json:"reason"`
					} `json:"scanStatus"`
				}
				if err := json.Unmarshal(r, &cr); err != nil {
					return err
				}
				kind, what := "repository", cr.ResourceMetadata.EcrRepository.Name
				if cr.ResourceType == "AWS_ECR_CONTAINER_IMAGE" {
					kind = "image"
					what += "@" + shortDigest(cr.ResourceID[strings.LastIndexByte(cr.ResourceID, '/')+1:])
					if m := cr.ResourceMetadata.EcrImage; m != nil && len(m.Tags) > 0 {
						what += " (" + strings.Join(m.Tags, ",") + ")"
					}
				}
				rows = append(rows, []string{kind, what, cr.ScanStatus.StatusCode, cr.ScanStatus.Reason,
					orDash(cr.ResourceMetadata.EcrRepository.ScanFrequency), epochTime(cr.LastScannedAt)})
			}
			if err := c.table([]string{"TYPE", "RESOURCE", "STATUS", "REASON", "FREQUENCY", "LAST SCANNED"}, rows); err != nil {
				return err
			}
			c.emptyDBHint(cmd.Context())
			return nil
		},
	}
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Count covered resources, optionally grouped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(g, cf)
			if err != nil {
				return err
			}
			fc, err := crit()
			if err != nil {
				return err
			}
			in := map[string]any{"filterCriteria": fc}
			if groupBy != "" {
				in["groupBy"] = strings.ToUpper(groupBy)
			}
			var out struct {
				CountsByGroup []struct {
					Count    int64  `json:"count"`
					GroupKey string `json:"groupKey"`
				} `json:"countsByGroup"`
				TotalCounts int64 `json:"totalCounts"`
			}
			if err := c.inspector(cmd.Context(), "/coverage/statistics/list", in, &out); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(out)
			}
			var rows [][]string
			for _, g := range out.CountsByGroup {
				rows = append(rows, []string{g.GroupKey, strconv.FormatInt(g.Count, 10)})
			}
			rows = append(rows, []string{"TOTAL", strconv.FormatInt(out.TotalCounts, 10)})
			return c.table([]string{"GROUP", "COUNT"}, rows)
		},
	}
	for _, c := range []*cobra.Command{list, stats} {
		c.Flags().StringVar(&repo, "repository", "", "repository name")
		c.Flags().StringVar(&status, "status", "", "ACTIVE or INACTIVE")
		c.Flags().StringVar(&rtype, "type", "", "image or repository")
	}
	stats.Flags().StringVar(&groupBy, "group-by", "SCAN_STATUS_REASON", "SCAN_STATUS_CODE, SCAN_STATUS_REASON, RESOURCE_TYPE, ECR_REPOSITORY_NAME, ACCOUNT_ID")
	cmd.AddCommand(list, stats)
	return cmd
}
