package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/events"
	"github.com/tollgate-registry/tollgate/scan"
)

// TestDBImportAnnouncesFindingChanges: `tollgate db import` on a stopped
// server's data directory re-matches the stored image an advisory concerns
// and, with webhooks configured, puts the "Inspector2 Finding" CREATED
// event of the new finding (its ARN in the image's repository, ACTIVE, the
// repository's tags) in the durable outbox; the next `tollgate serve`
// delivers it to the webhook.
func TestDBImportAnnouncesFindingChanges(t *testing.T) {
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	data := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(cfgPath, []byte("admin:\n  webhooks:\n    - url: "+hook.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	feed := t.TempDir()
	if err := os.WriteFile(filepath.Join(feed, "GO-2099-0001.json"), []byte(cliOSV), 0o600); err != nil {
		t.Fatal(err)
	}

	// A stored image: pushed as team/app:v1, its packages indexed.
	ctx := context.Background()
	img := digest.FromString("db-events-image")
	db, err := index.Open(filepath.Join(data, "index"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := index.NewRecords(db, index.RecordsOptions{}).Record(ctx, index.Event{Kind: index.EventPush, Repository: "team/app", Digest: img, Tag: "v1"}); err != nil {
		t.Fatal(err)
	}
	if err := index.NewPkgIndex(db).IndexImage(ctx, &scan.Inventory{Image: img,
		Packages: []scan.Package{{Ecosystem: "Go", Name: "example.com/m", Version: "v1.1.0", Kind: scan.KindLang}}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if _, stderr, err := runCLI(t, "--config", cfgPath, "--data-dir", data, "--log-level", "error", "db", "import", feed); err != nil {
		t.Fatalf("db import: %v %s", err, stderr)
	}

	db, err = index.Open(filepath.Join(data, "index"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := index.NewFindingStore(db).ForImage(ctx, img)
	if err != nil || len(fs) != 1 || fs[0].VulnerabilityID != "CVE-2099-0001" || fs[0].Status != scan.FindingActive {
		t.Fatalf("findings after import: %+v %v", fs, err)
	}
	arn := events.Builder{Region: config.Default().Admin.Region}.FindingARN("team/app", fs[0].ID)
	ob, err := index.NewOutbox(db)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := ob.Pending(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range pending {
		var ev struct {
			receivedEvent
			Data struct {
				FindingArn string `json:"findingArn"`
				Status     string `json:"status"`
				Change     string `json:"tollgateChange"`
				Resources  []struct {
					Details struct {
						Image struct {
							Tags []string `json:"imageTags"`
						} `json:"awsEcrContainerImage"`
					} `json:"details"`
				} `json:"resources"`
			} `json:"data"`
		}
		if err := json.Unmarshal(e.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		found = append(found, fmt.Sprintf("%s %s %s %s", ev.Type, ev.Data.FindingArn, ev.Data.Change, ev.Data.Status))
		if ev.Type == "Inspector2 Finding" && ev.Data.FindingArn == arn && ev.Data.Change == "CREATED" && ev.Data.Status == "ACTIVE" &&
			len(ev.Data.Resources) == 1 && len(ev.Data.Resources[0].Details.Image.Tags) == 1 && ev.Data.Resources[0].Details.Image.Tags[0] == "v1" {
			found = nil
			break
		}
	}
	if found != nil || len(pending) == 0 {
		t.Fatalf("no CREATED event for %s in the outbox: %v", arn, found)
	}
	_ = ob.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The next serve delivers it.
	startScanEnv(t, func(c *config.Config) {
		c.DataDir = data
		c.Admin.Webhooks = []config.Webhook{{URL: hook.URL}}
	})
	eventually(t, "CREATED event at the webhook", func() (bool, string) {
		evs := sink.findings("CVE-2099-0001")
		for _, ev := range evs {
			if ev.Data.FindingArn == arn && ev.Data.Change == "CREATED" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", evs)
	})
}
