package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestTruncatedUploadIsNeverOK: a client that declares a Content-Length
// larger than the body it sends and then closes its write side (a push
// killed mid-layer) must not be told its upload succeeded: it gets the
// registry's error, or the connection closes; never a 2xx.
func TestTruncatedUploadIsNeverOK(t *testing.T) {
	for _, method := range []string{http.MethodPatch, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, nil)
			resp, err := http.Post(h.srv.URL+"/v2/trunc/app/blobs/uploads/", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusAccepted || loc == "" {
				t.Fatalf("POST: %d %q", resp.StatusCode, loc)
			}
			if i := strings.Index(loc, "/v2/"); i > 0 {
				loc = loc[i:]
			}
			if method == http.MethodPut {
				sep := "?"
				if strings.Contains(loc, "?") {
					sep = "&"
				}
				loc += sep + "digest=sha256:" + strings.Repeat("ab", 32)
			}
			conn, err := net.Dial("tcp", h.host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n", method, loc, h.host)
			_, _ = conn.Write([]byte(strings.Repeat("x", 1000)))
			_ = conn.(*net.TCPConn).CloseWrite()
			got, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return // the connection closed without an answer: acceptable
			}
			b, _ := io.ReadAll(got.Body)
			got.Body.Close()
			t.Logf("%s answered %d %s", method, got.StatusCode, b)
			if got.StatusCode < 400 {
				t.Fatalf("%s of a truncated body answered %d %q", method, got.StatusCode, b)
			}
		})
	}
}
