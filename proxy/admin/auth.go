package admin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// AuthOptions configures NewAuth.
type AuthOptions struct {
	// Token is accepted as "Authorization: Bearer <token>".
	Token string
	// AccessKeys maps access key id → secret access key, accepted as AWS
	// Signature Version 4 (AWS4-HMAC-SHA256 Authorization header).
	AccessKeys map[string]string
	// MaxSkew bounds |X-Amz-Date − now| (default 15 minutes, as AWS).
	MaxSkew time.Duration
	Logger  zerolog.Logger
	Now     func() time.Time
}

// Auth authenticates admin API requests with a bearer token or a SigV4
// signature (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html)
// recomputed with the configured secret. Anything else is answered 401.
type Auth struct {
	o   AuthOptions
	log zerolog.Logger
}

// ErrNoCredentials is returned by NewAuth when neither a token nor an
// access key is configured: the admin API would be open to anyone.
var ErrNoCredentials = errors.New("admin: no token or access key configured")

// errUnauthenticated is the cause behind every 401.
var errUnauthenticated = errors.New("unauthenticated")

// NewAuth returns the authenticator; ErrNoCredentials when o configures nothing.
func NewAuth(o AuthOptions) (*Auth, error) {
	if o.Token == "" && len(o.AccessKeys) == 0 {
		return nil, ErrNoCredentials
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Auth{o: o, log: o.Logger.With().Str("op", "admin-auth").Logger()}, nil
}

// Wrap returns next behind authentication.
func (a *Auth) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.Check(r); err != nil {
			a.log.Debug().Err(err).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("rejected")
			WriteUnauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// WriteUnauthorized answers 401 with an AWS-shaped error and nothing else.
func WriteUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate-admin"`)
	w.Header().Set("X-Amzn-ErrorType", "UnrecognizedClientException")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"__type":"UnrecognizedClientException","message":"authentication required"}`+"\n")
}

// Check returns nil when r carries the token or a valid SigV4 signature.
// It reads and restores r.Body to hash the payload.
func (a *Auth) Check(r *http.Request) error {
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Bearer "):
		tok := strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
		if a.o.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.o.Token)) == 1 {
			return nil
		}
		return fmt.Errorf("%w: bad bearer token", errUnauthenticated)
	case strings.HasPrefix(h, "AWS4-HMAC-SHA256 "):
		return a.checkSigV4(r, strings.TrimPrefix(h, "AWS4-HMAC-SHA256 "))
	}
	return fmt.Errorf("%w: no credentials", errUnauthenticated)
}

// maxSignedBody bounds the body read to check a SigV4 payload hash (the
// largest admin request is an in-use payload, at most 16 MiB).
const maxSignedBody = maxInUseBytes

// sigV4Auth is the parsed Authorization header.
type sigV4Auth struct {
	keyID, date, region, service string
	signedHeaders                []string
	signature                    []byte
}

func parseSigV4(s string) (*sigV4Auth, error) {
	var out sigV4Auth
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%w: malformed authorization", errUnauthenticated)
		}
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" || f[0] == "" {
				return nil, fmt.Errorf("%w: malformed credential scope", errUnauthenticated)
			}
			out.keyID, out.date, out.region, out.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			out.signedHeaders = strings.Split(v, ";")
		case "Signature":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return nil, fmt.Errorf("%w: malformed signature", errUnauthenticated)
			}
			out.signature = sig
		}
	}
	if out.keyID == "" || len(out.signedHeaders) == 0 || out.signature == nil {
		return nil, fmt.Errorf("%w: incomplete authorization", errUnauthenticated)
	}
	return &out, nil
}

func (a *Auth) checkSigV4(r *http.Request, h string) error {
	p, err := parseSigV4(h)
	if err != nil {
		return err
	}
	var secret string
	found := false
	for id, s := range a.o.AccessKeys { // compare every key in constant time
		if subtle.ConstantTimeCompare([]byte(id), []byte(p.keyID)) == 1 {
			secret, found = s, true
		}
	}
	if !found {
		return fmt.Errorf("%w: unknown access key", errUnauthenticated)
	}
	switch p.service {
	case "inspector2", "ecr", "tollgate":
	default:
		return fmt.Errorf("%w: service %q", errUnauthenticated, p.service)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return fmt.Errorf("%w: missing or bad X-Amz-Date", errUnauthenticated)
	}
	if d := a.o.Now().Sub(t); d > a.o.MaxSkew || d < -a.o.MaxSkew {
		return fmt.Errorf("%w: request time %s too far from now", errUnauthenticated, amzDate)
	}
	if p.date != amzDate[:8] {
		return fmt.Errorf("%w: credential date does not match X-Amz-Date", errUnauthenticated)
	}
	if !containsStr(p.signedHeaders, "host") || !containsStr(p.signedHeaders, "x-amz-date") {
		return fmt.Errorf("%w: host and x-amz-date must be signed", errUnauthenticated)
	}
	// The payload: read, hash, restore.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSignedBody+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", errUnauthenticated, err)
	}
	if len(body) > maxSignedBody {
		return fmt.Errorf("%w: signed body larger than %d bytes", errUnauthenticated, maxSignedBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if ph := r.Header.Get("X-Amz-Content-Sha256"); ph != "" && ph != payload {
		return fmt.Errorf("%w: X-Amz-Content-Sha256 does not match the body", errUnauthenticated)
	}
	headers, err := canonicalHeaders(r, p.signedHeaders)
	if err != nil {
		return err
	}
	scope := p.date + "/" + p.region + "/" + p.service + "/aws4_request"
	key := signingKey(secret, p.date, p.region, p.service)
	query := canonicalQuery(r.URL.Query())
	for _, uri := range canonicalURIs(r.URL) {
		creq := strings.Join([]string{r.Method, uri, query, headers, strings.Join(p.signedHeaders, ";"), payload}, "\n")
		ch := sha256.Sum256([]byte(creq))
		sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(ch[:])
		if hmac.Equal(hmacSHA256(key, sts), p.signature) {
			return nil
		}
	}
	return fmt.Errorf("%w: signature does not match", errUnauthenticated)
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

// canonicalHeaders renders the signed headers: lowercase names, values
// trimmed with inner spaces collapsed, several values joined by commas.
func canonicalHeaders(r *http.Request, names []string) (string, error) {
	if !sort.StringsAreSorted(names) {
		return "", fmt.Errorf("%w: SignedHeaders not sorted", errUnauthenticated)
	}
	var b strings.Builder
	for _, n := range names {
		var vals []string
		switch n {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			vals = r.Header.Values(n)
		}
		if len(vals) == 0 {
			return "", fmt.Errorf("%w: signed header %q missing", errUnauthenticated, n)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	return b.String(), nil
}

// uriEncode is SigV4's UriEncode: everything but A-Z a-z 0-9 - _ . ~ is
// percent-encoded (uppercase hex); '/' is kept when keepSlash.
func uriEncode(s string, keepSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~' || (keepSlash && c == '/') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// canonicalURIs returns the canonical URI candidates: the path encoded
// once (the Go SDK), and the already-escaped path encoded again (botocore
// for non-S3 services). Both are bound by the same secret.
func canonicalURIs(u *url.URL) []string {
	p := u.Path
	if p == "" {
		p = "/"
	}
	once := uriEncode(p, true)
	twice := uriEncode(u.EscapedPath(), true)
	if once == twice {
		return []string{once}
	}
	return []string{once, twice}
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, uriEncode(k, false)+"="+uriEncode(v, false))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}
