package match

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
)

// ErrTooLarge is returned (wrapped) when a download exceeds its size limit.
var ErrTooLarge = errors.New("match: download too large")

// FetchOptions tunes Fetch. The zero value works (no limit, default client).
type FetchOptions struct {
	Client *http.Client
	// ETag and LastModified of the copy at hand: sent as If-None-Match and
	// If-Modified-Since, so an unchanged archive costs a 304.
	ETag, LastModified string
	// MaxBytes bounds the body (0: no limit).
	MaxBytes int64
	// Dir receives the temporary file (default os.TempDir()).
	Dir string
	// Progress, if set, is called as bytes arrive with (read, total); total
	// is -1 when the server sent no Content-Length.
	Progress func(read, total int64)
}

// Fetched is a completed download.
type Fetched struct {
	NotModified  bool   // 304: nothing downloaded, Path empty
	Path         string // temporary file holding the body; the caller removes it
	Size         int64
	ETag         string
	LastModified string
}

// Fetch downloads url into a temporary file with a conditional GET. A body
// that fails or is cut short leaves no file behind. Errors wrap ErrTooLarge,
// the transport's error, or name the unexpected HTTP status.
func Fetch(ctx context.Context, url string, opts FetchOptions) (Fetched, error) {
	c := opts.Client
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Fetched{}, fmt.Errorf("match: fetch %s: %w", url, err)
	}
	if opts.ETag != "" {
		req.Header.Set("If-None-Match", opts.ETag)
	}
	if opts.LastModified != "" {
		req.Header.Set("If-Modified-Since", opts.LastModified)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Fetched{}, fmt.Errorf("match: fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return Fetched{NotModified: true, ETag: opts.ETag, LastModified: opts.LastModified}, nil
	case http.StatusOK:
	default:
		return Fetched{}, fmt.Errorf("match: fetch %s: HTTP %s", url, resp.Status)
	}
	if opts.MaxBytes > 0 && resp.ContentLength > opts.MaxBytes {
		return Fetched{}, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, url, resp.ContentLength, opts.MaxBytes)
	}
	f, err := os.CreateTemp(opts.Dir, "tollgate-advisories-*.zip")
	if err != nil {
		return Fetched{}, fmt.Errorf("match: fetch %s: %w", url, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var body io.Reader = resp.Body
	if opts.MaxBytes > 0 {
		body = io.LimitReader(resp.Body, opts.MaxBytes+1)
	}
	if opts.Progress != nil {
		body = &progressReader{r: body, total: resp.ContentLength, fn: opts.Progress}
	}
	n, err := io.Copy(f, body)
	if err != nil {
		return Fetched{}, fmt.Errorf("match: fetch %s: %w", url, err)
	}
	if opts.MaxBytes > 0 && n > opts.MaxBytes {
		return Fetched{}, fmt.Errorf("%w: %s over %d bytes", ErrTooLarge, url, opts.MaxBytes)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return Fetched{}, fmt.Errorf("match: fetch %s: got %d of %d bytes", url, n, resp.ContentLength)
	}
	if err := f.Close(); err != nil {
		return Fetched{}, fmt.Errorf("match: fetch %s: %w", url, err)
	}
	ok = true
	return Fetched{Path: f.Name(), Size: n, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}, nil
}

type progressReader struct {
	r     io.Reader
	read  int64
	total int64
	fn    func(read, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.read += int64(n)
	p.fn(p.read, p.total)
	return n, err
}
