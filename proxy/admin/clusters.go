package admin

import (
	"context"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
)

// GetClustersForImage (POST /cluster/get,
// https://docs.aws.amazon.com/inspector/v2/APIReference/API_GetClustersForImage.html)
// answers from the runtime in-use reports: one ClusterInformation per
// cluster, one ClusterDetails per workload. filter.resourceId is the image's
// resource id (arn:aws:ecr:…:repository/<repo>/sha256:…), or a bare digest.

type wClusterInformation struct {
	ClusterArn     string            `json:"clusterArn"`
	ClusterDetails []wClusterDetails `json:"clusterDetails"`
}

type wClusterDetails struct {
	ClusterMetadata  map[string]any `json:"clusterMetadata"`
	LastInUse        *epochTime     `json:"lastInUse"`
	RunningUnitCount int64          `json:"runningUnitCount"`
	StoppedUnitCount int64          `json:"stoppedUnitCount"`
}

// digestOfResource extracts the image digest from a resource id or digest.
func digestOfResource(id string) (digest.Digest, error) {
	i := strings.LastIndex(id, "sha256:")
	if i < 0 {
		return "", errValidation("filter.resourceId %q names no image digest", id)
	}
	d := digest.Digest(id[i:])
	if err := d.Validate(); err != nil {
		return "", errValidation("filter.resourceId %q: %v", id, err)
	}
	return d, nil
}

func (a *API) getClustersForImage(ctx context.Context, body []byte) (any, error) {
	if a.o.InUse == nil {
		return nil, unavailable("in-use reports")
	}
	var in struct {
		Filter *struct {
			ResourceID string `json:"resourceId"`
		} `json:"filter"`
		MaxResults *int   `json:"maxResults"`
		NextToken  string `json:"nextToken"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if in.Filter == nil {
		return nil, errValidation("filter is required")
	}
	d, err := digestOfResource(in.Filter.ResourceID)
	if err != nil {
		return nil, err
	}
	n, err := maxResults(in.MaxResults, 100, 100)
	if err != nil {
		return nil, err
	}
	after, err := decodeToken("clusters", in.NextToken)
	if err != nil {
		return nil, err
	}
	uses, err := a.o.InUse.ClustersForImage(ctx, d)
	if err != nil {
		return nil, err
	}
	byCluster := map[string]index.ClusterUse{}
	for _, u := range uses {
		byCluster[u.Cluster] = u
	}
	names := sortStrings(byCluster)
	pg, next := page(names, func(s string) pageKey { return pageKey{ID: s} }, false, after, n, "clusters")
	out := struct {
		Cluster   []wClusterInformation `json:"cluster"`
		NextToken string                `json:"nextToken,omitempty"`
	}{Cluster: []wClusterInformation{}, NextToken: next}
	for _, c := range pg {
		u := byCluster[c]
		// One ClusterDetails per cluster: Kubernetes workloads grouped by
		// namespace in awsEksMetadataDetails.
		byNS := map[string][]map[string]string{}
		for _, w := range u.Workloads {
			byNS[w.Namespace] = append(byNS[w.Namespace], map[string]string{"name": w.Workload, "type": "workload"})
		}
		ci := wClusterInformation{ClusterArn: c, ClusterDetails: []wClusterDetails{}}
		for _, ns := range sortStrings(byNS) {
			ci.ClusterDetails = append(ci.ClusterDetails, wClusterDetails{
				ClusterMetadata: map[string]any{"awsEksMetadataDetails": map[string]any{"namespace": ns, "workloadInfoList": byNS[ns]}},
				LastInUse:       epoch(lastSeen(u, ns)), RunningUnitCount: int64(u.Running), StoppedUnitCount: int64(u.Stopped)})
		}
		if len(ci.ClusterDetails) == 0 {
			ci.ClusterDetails = append(ci.ClusterDetails, wClusterDetails{ClusterMetadata: map[string]any{},
				LastInUse: epoch(u.LastSeen), RunningUnitCount: int64(u.Running), StoppedUnitCount: int64(u.Stopped)})
		}
		out.Cluster = append(out.Cluster, ci)
	}
	return out, nil
}

// lastSeen is the latest sighting of a workload of namespace ns in u.
func lastSeen(u index.ClusterUse, ns string) time.Time {
	var t time.Time
	for _, w := range u.Workloads {
		if w.Namespace == ns && w.LastSeen.After(t) {
			t = w.LastSeen
		}
	}
	if t.IsZero() {
		t = u.LastSeen
	}
	return t
}
