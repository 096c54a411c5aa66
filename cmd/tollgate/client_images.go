package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
)

// lookupImage finds REPO:TAG or REPO@DIGEST among the server's image
// records (GET /v1/images?repository=REPO, which lists an index's children
// with their platforms); nil, nil when the repository has no such image.
// With repo "" it finds DIGEST in any repository (paging through all).
func (c *adminClient) lookupImage(ctx context.Context, repo, tag string, d digest.Digest) (*index.ImageRecord, error) {
	var found *index.ImageRecord
	err := c.eachImage(ctx, repo, func(rec *index.ImageRecord) bool {
		if repo == "" {
			if d != "" && rec.Digest == d && slices.ContainsFunc(rec.Repos, func(ri index.RepoImage) bool { return !ri.Deleted }) {
				found = rec
			}
			return found == nil
		}
		ri := rec.Repo(repo)
		if ri == nil || ri.Deleted {
			return true
		}
		if (d != "" && rec.Digest == d) || (d == "" && slices.Contains(ri.Tags, tag)) {
			found = rec
		}
		return found == nil
	})
	return found, err
}

// eachImage calls fn with each image record in repo ("" all), page by page
// (GET /v1/images), until fn returns false.
func (c *adminClient) eachImage(ctx context.Context, repo string, fn func(rec *index.ImageRecord) bool) error {
	next := ""
	for {
		q := url.Values{"maxResults": {"1000"}}
		if repo != "" {
			q.Set("repository", repo)
		}
		if next != "" {
			q.Set("nextToken", next)
		}
		b, err := c.do(ctx, http.MethodGet, "/v1/images?"+q.Encode(), nil, nil)
		if err != nil {
			return err
		}
		var pg admin.ImagesPage
		if err := json.Unmarshal(b, &pg); err != nil {
			return fmt.Errorf("image records: %w", err)
		}
		for i := range pg.Images {
			if !fn(&pg.Images[i]) {
				return nil
			}
		}
		if pg.NextToken == "" || pg.NextToken == next {
			return nil
		}
		next = pg.NextToken
	}
}

// shortRef is REPO@<hex>, the way the tables print an image (12 hex
// digits of its sha256 digest).
var shortRef = regexp.MustCompile(`^(.+)@([0-9a-f]{7,63})$`)

// imageID is the package's imageID, after a short digest (REPO@cc2d54c00000,
// as `findings list` prints it) is expanded to the one image in REPO whose
// sha256 digest starts with it, and a bare sha256 digest to the first
// repository holding it.
func (c *adminClient) imageID(ctx context.Context, ref string) (string, map[string]string, error) {
	if d := digest.Digest(ref); strings.HasPrefix(ref, "sha256:") && d.Validate() == nil {
		// A bare digest: the image in the first repository that holds it.
		rec, err := c.lookupImage(ctx, "", "", d)
		if err != nil {
			return "", nil, err
		}
		if rec != nil {
			for _, ri := range rec.Repos {
				if !ri.Deleted {
					return imageID(ri.Repository + "@" + ref)
				}
			}
		}
		return "", nil, fmt.Errorf("image %s not found", ref)
	}
	if m := shortRef.FindStringSubmatch(ref); m != nil {
		repo, prefix := m[1], "sha256:"+m[2]
		var found []digest.Digest
		err := c.eachImage(ctx, repo, func(rec *index.ImageRecord) bool {
			if ri := rec.Repo(repo); ri != nil && !ri.Deleted && strings.HasPrefix(rec.Digest.String(), prefix) {
				found = append(found, rec.Digest)
			}
			return len(found) < 2
		})
		switch {
		case err != nil:
			return "", nil, err
		case len(found) == 0:
			return "", nil, fmt.Errorf("image %s not found", ref)
		case len(found) > 1:
			return "", nil, fmt.Errorf("image %s: the digest prefix names more than one image; give more of it", ref)
		}
		ref = repo + "@" + found[0].String()
	}
	return imageID(ref)
}

// pickPlatform returns the child of the index for want (os/arch[/variant];
// without a variant the first child of os/arch), or an error listing the
// platforms there are.
func pickPlatform(ref string, rec *index.ImageRecord, want string, flagGiven bool) (digest.Digest, error) {
	kids := rec.PlatformImages()
	parts := strings.Split(want, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", fmt.Errorf("--platform %q: want os/arch[/variant], e.g. linux/arm64/v8", want)
	}
	for _, ch := range kids {
		p := ch.Platform
		if p.OS == parts[0] && p.Architecture == parts[1] && (len(parts) == 2 || p.Variant == parts[2]) {
			return ch.Digest, nil
		}
	}
	have := make([]string, 0, len(kids))
	for _, ch := range kids {
		have = append(have, ch.Platform.String())
	}
	what := "an image for " + want
	if !flagGiven {
		what = "an image for this host's platform " + want + " (choose one with --platform)"
	}
	return "", fmt.Errorf("image %s is a multi-platform index with no %s; its platforms: %s", ref, what, strings.Join(have, ", "))
}
