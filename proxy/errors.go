package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// OCI distribution-spec error codes
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes),
// plus UNAVAILABLE (distribution's code for 503) used for upstream failures.
const (
	CodeBlobUnknown         = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       = "DIGEST_INVALID"
	CodeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     = "MANIFEST_INVALID"
	CodeManifestUnknown     = "MANIFEST_UNKNOWN"
	CodeNameInvalid         = "NAME_INVALID"
	CodeNameUnknown         = "NAME_UNKNOWN"
	CodeSizeInvalid         = "SIZE_INVALID"
	CodeUnauthorized        = "UNAUTHORIZED"
	CodeDenied              = "DENIED"
	CodeUnsupported         = "UNSUPPORTED"
	CodeTooManyRequests     = "TOOMANYREQUESTS"
	CodeUnavailable         = "UNAVAILABLE"
	// CodeUnknown is distribution's code for a 500 (a storage error).
	CodeUnknown = "UNKNOWN"
)

// Error is an OCI error answer: HTTP status and one entry of the error
// envelope. The proxy answers every error it produces itself through
// WriteError; hooks (Gate) may return an *Error to choose the answer.
type Error struct {
	Status  int    // HTTP status
	Code    string // OCI error code
	Message string
	Detail  any // optional, JSON-encoded as "detail"
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}
func (e *Error) Unwrap() error { return e.Err }

// DeniedError refuses a request on policy grounds; it becomes 403 DENIED
// with Message. Gates return it to refuse a pull.
type DeniedError struct{ Message string }

func (e *DeniedError) Error() string { return "denied: " + e.Message }

// errorf builds an *Error.
func errorf(status int, code, format string, a ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// WriteError writes err as the OCI error envelope
// {"errors":[{"code","message","detail"}]}: an *Error as given, a
// *DeniedError as 403 DENIED, anything else as 500 UNAVAILABLE. HEAD
// requests get the status and headers without a body, as the spec
// requires. It is the one place the proxy's own error bodies come from.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *Error
	var de *DeniedError
	switch {
	case errors.As(err, &oe):
	case errors.As(err, &de):
		oe = &Error{Status: http.StatusForbidden, Code: CodeDenied, Message: de.Message}
	default:
		oe = &Error{Status: http.StatusInternalServerError, Code: CodeUnavailable, Message: err.Error()}
	}
	body, _ := json.Marshal(struct {
		Errors []errorEntry `json:"errors"`
	}{[]errorEntry{{Code: oe.Code, Message: oe.Message, Detail: oe.Detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Del("Docker-Content-Digest")
	w.WriteHeader(oe.Status)
	if r == nil || r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// upstreamError maps a failed round trip to the upstream to the client's
// answer: 504 on timeouts, 502 when the upstream cannot be reached or
// broke the connection. name is the upstream's host for the message.
func upstreamError(name string, err error) *Error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return &Error{Status: http.StatusGatewayTimeout, Code: CodeUnavailable,
			Message: fmt.Sprintf("upstream registry %s did not answer in time", name), Err: err}
	default:
		return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Message: fmt.Sprintf("upstream registry %s is unreachable: %v", name, err), Err: err}
	}
}

// upstreamStatusError maps a 5xx answer of the upstream: 503 and 504 keep
// their status, anything else becomes 502; the message names the upstream.
func upstreamStatusError(name string, status int) *Error {
	out := http.StatusBadGateway
	if status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout {
		out = status
	}
	return &Error{Status: out, Code: CodeUnavailable,
		Message: fmt.Sprintf("upstream registry %s answered %d %s", name, status, http.StatusText(status))}
}
