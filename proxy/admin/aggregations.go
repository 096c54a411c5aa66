package admin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tollgate-registry/tollgate/scan"
)

// ListFindingAggregations (POST /findings/aggregation/list,
// https://docs.aws.amazon.com/inspector/v2/APIReference/API_ListFindingAggregations.html)
// counts ACTIVE findings by severity per repository (REPOSITORY), image
// (AWS_ECR_CONTAINER), layer (IMAGE_LAYER), package (PACKAGE),
// vulnerability (TITLE), finding type (FINDING_TYPE) or account (ACCOUNT).

// aggSchema reads the filter lists of the aggregation requests.
var aggSchema = &schema[*findingView]{
	name:        "aggregationRequest",
	comparisons: []string{"EQUALS", "PREFIX", "NOT_EQUALS"},
	strs: map[string]func(*findingView) []string{
		"repositories":  func(v *findingView) []string { return one(v.repo) },
		"imageShas":     func(v *findingView) []string { return one(v.f.Image.String()) },
		"imageTags":     func(v *findingView) []string { return v.tags() },
		"architectures": func(v *findingView) []string { return one(v.arch) },
		"resourceIds": func(v *findingView) []string {
			return one(imageResourceID(v.region, v.account, v.repo, v.f.Image.String()))
		},
		"packageNames":     func(v *findingView) []string { return one(v.f.Package.Name) },
		"titles":           func(v *findingView) []string { return one(v.f.Title) },
		"vulnerabilityIds": func(v *findingView) []string { return one(v.f.VulnerabilityID) },
		"layerHashes":      func(v *findingView) []string { return one(v.f.Package.Layer.String()) },
	},
	dates: map[string]func(*findingView) *time.Time{
		"lastInUseAt": func(v *findingView) *time.Time { return v.lastUse },
	},
	nums: map[string]func(*findingView) (float64, bool){
		"inUseCount": func(v *findingView) (float64, bool) { return float64(v.inUse), true },
	},
}

type severityCounts struct {
	All      int64 `json:"all"`
	Critical int64 `json:"critical"`
	High     int64 `json:"high"`
	Medium   int64 `json:"medium"`
}

func (s *severityCounts) add(sev scan.Severity) {
	s.All++
	switch sev {
	case scan.SeverityCritical:
		s.Critical++
	case scan.SeverityHigh:
		s.High++
	case scan.SeverityMedium:
		s.Medium++
	}
}

// aggGroup accumulates one response entry.
type aggGroup struct {
	key      string
	fields   map[string]any // response members besides severityCounts
	counts   severityCounts
	images   map[string]bool
	fixAvail int64
}

// aggKinds maps aggregationType to the union member name and how to group.
var aggKinds = map[string]struct {
	member string
	group  func(v *findingView) (string, map[string]any)
}{
	"REPOSITORY": {"repositoryAggregation", func(v *findingView) (string, map[string]any) {
		return v.repo, map[string]any{"repository": v.repo}
	}},
	"AWS_ECR_CONTAINER": {"awsEcrContainerAggregation", func(v *findingView) (string, map[string]any) {
		m := map[string]any{"repository": v.repo, "imageSha": v.f.Image.String(), "imageTags": v.tags(),
			"resourceId": imageResourceID(v.region, v.account, v.repo, v.f.Image.String()), "inUseCount": v.inUse}
		if v.arch != "" {
			m["architecture"] = v.arch
		}
		if v.lastUse != nil {
			m["lastInUseAt"] = epochTime{*v.lastUse}
		}
		return v.repo + "@" + v.f.Image.String(), m
	}},
	"IMAGE_LAYER": {"imageLayerAggregation", func(v *findingView) (string, map[string]any) {
		l := v.f.Package.Layer.String()
		return v.repo + "@" + v.f.Image.String() + "/" + l, map[string]any{"repository": v.repo, "layerHash": l,
			"resourceId": imageResourceID(v.region, v.account, v.repo, v.f.Image.String())}
	}},
	"PACKAGE": {"packageAggregation", func(v *findingView) (string, map[string]any) {
		return v.f.Package.Name, map[string]any{"packageName": v.f.Package.Name}
	}},
	"TITLE": {"titleAggregation", func(v *findingView) (string, map[string]any) {
		return v.f.VulnerabilityID + "\x00" + v.f.Title, map[string]any{"title": v.f.Title, "vulnerabilityId": v.f.VulnerabilityID}
	}},
	"FINDING_TYPE": {"findingTypeAggregation", func(v *findingView) (string, map[string]any) {
		return "PACKAGE_VULNERABILITY", map[string]any{}
	}},
	"ACCOUNT": {"accountAggregation", func(v *findingView) (string, map[string]any) {
		return v.account, map[string]any{}
	}},
}

func (a *API) listFindingAggregations(ctx context.Context, body []byte) (any, error) {
	var in struct {
		AggregationType    string                                `json:"aggregationType"`
		AggregationRequest map[string]map[string]json.RawMessage `json:"aggregationRequest"`
		MaxResults         *int                                  `json:"maxResults"`
		NextToken          string                                `json:"nextToken"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	kind, ok := aggKinds[in.AggregationType]
	if !ok {
		return nil, errValidation("aggregationType %q: tollgate aggregates REPOSITORY, AWS_ECR_CONTAINER, IMAGE_LAYER, PACKAGE, TITLE, FINDING_TYPE and ACCOUNT", in.AggregationType)
	}
	n, err := maxResults(in.MaxResults, 50, 100)
	if err != nil {
		return nil, err
	}
	req := map[string]json.RawMessage{}
	for k, v := range in.AggregationRequest {
		if k != kind.member {
			return nil, errValidation("aggregationRequest.%s does not go with aggregationType %s", k, in.AggregationType)
		}
		req = v
	}
	str := func(k string) (string, error) {
		raw, ok := req[k]
		delete(req, k)
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errValidation("aggregationRequest.%s.%s: %v", kind.member, k, err)
		}
		return s, nil
	}
	sortBy, err := str("sortBy")
	if err != nil {
		return nil, err
	}
	sortOrder, err := str("sortOrder")
	if err != nil {
		return nil, err
	}
	findingType, err := str("findingType")
	if err != nil {
		return nil, err
	}
	resourceType, err := str("resourceType")
	if err != nil {
		return nil, err
	}
	if sortBy == "" {
		sortBy = "CRITICAL"
	}
	if sortOrder == "" {
		sortOrder = "DESC"
	}
	if !containsStr([]string{"CRITICAL", "HIGH", "ALL", "AFFECTED_IMAGES"}, sortBy) || (sortBy == "AFFECTED_IMAGES" && in.AggregationType != "REPOSITORY") {
		return nil, errValidation("sortBy %q not valid for %s", sortBy, in.AggregationType)
	}
	if sortOrder != "ASC" && sortOrder != "DESC" {
		return nil, errValidation("sortOrder %q: want ASC or DESC", sortOrder)
	}
	rest, _ := json.Marshal(req)
	c, err := aggSchema.compile(rest)
	if err != nil {
		return nil, err
	}
	none := (findingType != "" && findingType != "PACKAGE_VULNERABILITY") ||
		(resourceType != "" && resourceType != "AWS_ECR_CONTAINER_IMAGE" && resourceType != "AWS_ECR_CONTAINER")
	op := "agg:" + in.AggregationType + ":" + sortBy + ":" + sortOrder
	after, err := decodeToken(op, in.NextToken)
	if err != nil {
		return nil, err
	}
	groups := map[string]*aggGroup{}
	var order []*aggGroup
	if !none {
		err = a.eachView(ctx, func(v *findingView) error {
			if v.status != scan.FindingActive || !c.match(v) {
				return ctx.Err()
			}
			k, fields := kind.group(v)
			g, ok := groups[k]
			if !ok {
				g = &aggGroup{key: k, fields: fields, images: map[string]bool{}}
				groups[k] = g
				order = append(order, g)
			}
			g.counts.add(v.f.Severity)
			g.images[v.repo+"@"+v.f.Image.String()] = true
			if v.f.FixAvailable == "YES" || v.f.FixAvailable == "PARTIAL" {
				g.fixAvail++
			}
			return ctx.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	key := func(g *aggGroup) pageKey {
		k := pageKey{ID: g.key}
		switch sortBy {
		case "CRITICAL":
			k.N = float64(g.counts.Critical)
		case "HIGH":
			k.N = float64(g.counts.High)
		case "ALL":
			k.N = float64(g.counts.All)
		case "AFFECTED_IMAGES":
			k.N = float64(len(g.images))
		}
		return k
	}
	pg, next := page(order, key, sortOrder == "DESC", after, n, op)
	out := struct {
		AggregationType string           `json:"aggregationType"`
		Responses       []map[string]any `json:"responses"`
		NextToken       string           `json:"nextToken,omitempty"`
	}{AggregationType: in.AggregationType, Responses: []map[string]any{}, NextToken: next}
	for _, g := range pg {
		m := map[string]any{"accountId": a.o.AccountID, "severityCounts": g.counts}
		for k, v := range g.fields {
			m[k] = v
		}
		switch in.AggregationType {
		case "REPOSITORY":
			m["affectedImages"] = int64(len(g.images))
		case "FINDING_TYPE", "ACCOUNT":
			m["fixAvailableCount"] = g.fixAvail
			m["exploitAvailableCount"] = int64(0)
		}
		out.Responses = append(out.Responses, map[string]any{kind.member: m})
	}
	return out, nil
}
