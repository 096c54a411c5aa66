package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// TestServeCorruptLayerShowsInCoverage is the fresh-user repro: a layer of
// garbage bytes (valid digest, tar+gzip media type) is pushed fine, and its
// image's coverage says CORRUPT_LAYER with a message naming the layer —
// in the lifecycle and in the admin API's ListCoverage JSON.
func TestServeCorruptLayerShowsInCoverage(t *testing.T) {
	e := startScanEnv(t, nil)
	base, _ := apkImage(t, "musl 1.2.4-r1")
	garbage := static.NewLayer([]byte("not a gzip stream: garbage bytes with a perfectly valid digest"), types.OCILayer)
	img, err := mutate.AppendLayers(base, garbage)
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := garbage.Digest()
	d := e.push(t, "broken/app:1", img) // a push never fails on analysis

	eventually(t, "coverage of "+d.String(), func() (bool, string) {
		c := e.coverage(t, d)
		return c.StatusCode == "ACTIVE" && c.Reason == "CORRUPT_LAYER" && c.LastScannedAt != nil,
			fmt.Sprintf("%s/%s %s", c.StatusCode, c.Reason, c.Message)
	})
	if c := e.coverage(t, d); !strings.Contains(c.Message, "layer "+bad.String()+": CORRUPT_LAYER") {
		t.Errorf("message %q does not name the corrupt layer", c.Message)
	}

	req, _ := http.NewRequest("POST", e.adm.URL+"/coverage/list", strings.NewReader(`{"filterCriteria":{"ecrRepositoryName":[{"comparison":"EQUALS","value":"broken/app"}],"resourceType":[{"comparison":"EQUALS","value":"AWS_ECR_CONTAINER_IMAGE"}]}}`))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		CoveredResources []struct {
			ResourceID string                                       `json:"resourceId"`
			ScanStatus struct{ StatusCode, Reason, Message string } `json:"scanStatus"`
		} `json:"coveredResources"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.CoveredResources) != 1 {
		t.Fatalf("coverage list %d %s: %v", resp.StatusCode, body, err)
	}
	st := out.CoveredResources[0].ScanStatus
	if st.StatusCode != "ACTIVE" || st.Reason != "CORRUPT_LAYER" || !strings.Contains(st.Message, bad.String()) ||
		!strings.HasSuffix(out.CoveredResources[0].ResourceID, digest.Digest(d).String()) {
		t.Errorf("coverage list: %s", body)
	}
}
