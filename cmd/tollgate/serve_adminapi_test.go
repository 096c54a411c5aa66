package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/scan"
)

// pushImage pushes a one-layer image to repo:tag through h (the proxy).
func pushImage(t *testing.T, base, repo, tag string, content string) digest.Digest {
	t.Helper()
	blob := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %v %v", err, resp)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if loc[0] == '/' {
			loc = base + loc
		}
		sep := "?"
		if bytes.ContainsRune([]byte(loc), '?') {
			sep = "&"
		}
		req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+d.String(), bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err = http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("put blob: %v %d %s", err, resp.StatusCode, body)
		}
		resp.Body.Close()
		return d
	}
	layer := []byte(content)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	ld, cd := blob(layer), blob(cfg)
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		cd, len(cfg), ld, len(layer)))
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %v %v", err, resp)
	}
	resp.Body.Close()
	return digest.FromBytes(m)
}

// TestServeAdminAPI wires the core and the admin API as `tollgate serve`
// does (embedded registry, real Badger, generated token), pushes through
// the proxy and drives the admin API with the SDK clients.
func TestServeAdminAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	s := &server{cfg: cfg, log: zerolog.Nop()}
	defer func() {
		for i := len(s.closers) - 1; i >= 0; i-- {
			_ = s.closers[i](context.Background())
		}
	}()
	if err := wireCore(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, c := range []component{wireAdminAuth, wireAdminAPI} {
		if err := c(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.ReadTokenFile(cfg.DataDir)
	if err != nil || tok != s.cfg.Admin.Token {
		t.Fatalf("generated token: %q %v (cfg %q)", tok, err, s.cfg.Admin.Token)
	}
	if st, _ := os.Stat(filepath.Join(cfg.DataDir, admin.TokenFileName)); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", st.Mode())
	}
	reg := httptest.NewServer(s.proxy)
	defer reg.Close()
	adm := httptest.NewServer(s.admin)
	defer adm.Close()

	d1 := pushImage(t, reg.URL, "team/app", "v1", "layer one")
	d2 := pushImage(t, reg.URL, "team/app", "v2", "layer two")
	now := time.Now().UTC()
	if _, err := index.NewFindingStore(s.db).Replace(ctx, d1, []scan.Finding{{ID: "f1", Image: d1, VulnerabilityID: "CVE-2024-9",
		AdvisoryID: "CVE-2024-9", Title: "CVE-2024-9", Severity: scan.SeverityHigh, FixAvailable: "NO",
		Package: scan.Package{Name: "zlib", Version: "1.2", Ecosystem: "Alpine:v3.19", Kind: scan.KindOS}}}, now); err != nil {
		t.Fatal(err)
	}

	hc := &http.Client{Transport: tokenTransport{tok: tok}}
	ic := inspector2.New(inspector2.Options{BaseEndpoint: aws.String(adm.URL), Region: "us-east-1", HTTPClient: hc, RetryMaxAttempts: 1,
		Credentials: aws.AnonymousCredentials{}})
	ec := ecr.New(ecr.Options{BaseEndpoint: aws.String(adm.URL), Region: "us-east-1", HTTPClient: hc, RetryMaxAttempts: 1,
		Credentials: aws.AnonymousCredentials{}})

	lf, err := ic.ListFindings(ctx, &inspector2.ListFindingsInput{})
	if err != nil || len(lf.Findings) != 1 || aws.ToString(lf.Findings[0].Resources[0].Details.AwsEcrContainerImage.RepositoryName) != "team/app" ||
		lf.Findings[0].Resources[0].Details.AwsEcrContainerImage.ImageTags[0] != "v1" || lf.Findings[0].Severity != types.SeverityHigh {
		t.Fatalf("ListFindings: %+v %v", lf, err)
	}
	di, err := ec.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/app")})
	if err != nil || len(di.ImageDetails) != 2 || di.ImageDetails[0].ImagePushedAt == nil {
		t.Fatalf("DescribeImages: %+v %v", di, err)
	}
	// Archive through the records (no lifecycle wired here), then restore.
	if out, err := ec.UpdateImageStorageClass(ctx, &ecr.UpdateImageStorageClassInput{RepositoryName: aws.String("team/app"),
		ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String("v2")}, TargetStorageClass: ecrtypes.TargetStorageClassArchive}); err != nil || out.ImageStatus != ecrtypes.ImageStatusArchived {
		t.Fatalf("archive: %+v %v", out, err)
	}
	if rec, err := s.records.Image(ctx, d2); err != nil || rec.Repo("team/app").Status != index.ImageArchived {
		t.Fatalf("record after archive: %+v %v", rec, err)
	}
	// BatchDeleteImage deletes through the proxy: the registry and the records agree.
	del, err := ec.BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team/app"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(d1.String())}}})
	if err != nil || len(del.ImageIds) != 1 || len(del.Failures) != 0 {
		t.Fatalf("BatchDeleteImage: %+v %v", del, err)
	}
	resp, err := http.Get(reg.URL + "/v2/team/app/manifests/" + d1.String())
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("manifest after delete: %v %v", err, resp.StatusCode)
	}
	resp.Body.Close()
	lf, err = ic.ListFindings(ctx, &inspector2.ListFindingsInput{})
	if err != nil || len(lf.Findings) != 0 {
		t.Fatalf("findings of a deleted image: %+v %v", lf, err)
	}
	// Without the token: 401.
	_, err = inspector2.New(inspector2.Options{BaseEndpoint: aws.String(adm.URL), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: aws.AnonymousCredentials{}}).ListFindings(ctx, &inspector2.ListFindingsInput{})
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusUnauthorized {
		t.Fatalf("no token: %v", err)
	}
}

// tokenTransport adds the admin bearer token to every request. It also
// sends a copy of the body: smithy-go closes the request body when Do
// returns, and a closed SDK body makes net/http's write loop (still
// checking for bytes past Content-Length) close the connection under the
// response being read, "use of closed network connection" on a 200 (see
// ownedBodyClient in proxy/admin/sdk_test.go).
type tokenTransport struct{ tok string }

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.tok)
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength > 0 {
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	return http.DefaultTransport.RoundTrip(r)
}
