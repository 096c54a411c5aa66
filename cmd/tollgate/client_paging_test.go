package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// The CLI follows Inspector's nextToken paging to the end: a server that
// answers one item per page still gives `findings list` and `coverage
// list` every item, and `findings get` a finding on the last page.
func TestClientFollowsPages(t *testing.T) {
	const n = 3
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			NextToken string `json:"nextToken"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		i, _ := strconv.Atoi(in.NextToken)
		page := map[string]any{}
		if i+1 < n {
			page["nextToken"] = strconv.Itoa(i + 1)
		}
		arn := fmt.Sprintf("arn:aws:inspector2:us-east-1:000000000000:finding/f%d", i)
		switch r.URL.Path {
		case "/findings/list":
			page["findings"] = []map[string]any{{"findingArn": arn, "severity": "HIGH", "title": fmt.Sprintf("CVE-%d", i)}}
		case "/coverage/list":
			page["coveredResources"] = []map[string]any{{"resourceId": fmt.Sprintf("img%d", i)}}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	flags := []string{"--admin-url", srv.URL, "--token", "tok", "-o", "json"}

	out, err := runClient(t, append([]string{"findings", "list"}, flags...)...)
	var fl struct {
		Findings []json.RawMessage `json:"findings"`
	}
	if err != nil || json.Unmarshal([]byte(out), &fl) != nil || len(fl.Findings) != n {
		t.Fatalf("findings list over %d pages: %v\n%s", n, err, out)
	}
	out, err = runClient(t, append([]string{"coverage", "list"}, flags...)...)
	var cl struct {
		CoveredResources []json.RawMessage `json:"coveredResources"`
	}
	if err != nil || json.Unmarshal([]byte(out), &cl) != nil || len(cl.CoveredResources) != n {
		t.Fatalf("coverage list over %d pages: %v\n%s", n, err, out)
	}
	out, err = runClient(t, append([]string{"findings", "get", fmt.Sprintf("f%d", n-1)}, flags...)...)
	if err != nil || !strings.Contains(out, fmt.Sprintf("finding/f%d", n-1)) {
		t.Fatalf("findings get of the last page's finding: %v\n%s", err, out)
	}
	if _, err := runClient(t, append([]string{"findings", "get", "nope"}, flags...)...); err == nil || !strings.Contains(err.Error(), "no finding nope") {
		t.Fatalf("findings get of a missing finding: %v", err)
	}
}
