package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tollgate-registry/tollgate/index"
)

// APIError is an error in AWS's vocabulary: Code is the exception name
// (the x-amzn-ErrorType header in restJson1, "__type" in awsJson1_1),
// Status the HTTP status. Handlers return it (wrapped or not); writeError
// maps any other error to InternalServerException / ServerException.
type APIError struct {
	Status  int
	Code    string
	Message string
	Err     error // cause, not shown to the client
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *APIError) Unwrap() error { return e.Err }

// Inspector2 exceptions
// (https://docs.aws.amazon.com/inspector/v2/APIReference/CommonErrors.html).
func errValidation(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: "ValidationException", Message: fmt.Sprintf(format, a...)}
}

func errNotFound(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusNotFound, Code: "ResourceNotFoundException", Message: fmt.Sprintf(format, a...)}
}

func errConflict(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusConflict, Code: "ConflictException", Message: fmt.Sprintf(format, a...)}
}

// ECR exceptions (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/CommonErrors.html).
func errECRParam(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: "InvalidParameterException", Message: fmt.Sprintf(format, a...)}
}

func errECRRepoNotFound(repo string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: "RepositoryNotFoundException",
		Message: fmt.Sprintf("The repository with name '%s' does not exist in the registry", repo)}
}

func errECRImageNotFound(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: "ImageNotFoundException", Message: fmt.Sprintf(format, a...)}
}

// toAPIError maps err to the AWS error shape; internal is the exception name
// used for unexpected errors (InternalServerException or ServerException).
func toAPIError(err error, internal string) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var ie *InputError
	if errors.As(err, &ie) {
		if internal == "ServerException" {
			return &APIError{Status: http.StatusBadRequest, Code: "InvalidParameterException", Message: ie.Message, Err: err}
		}
		return &APIError{Status: http.StatusBadRequest, Code: "ValidationException", Message: ie.Message, Err: err}
	}
	if errors.Is(err, index.ErrNotFound) {
		if internal == "ServerException" {
			return &APIError{Status: http.StatusBadRequest, Code: "ImageNotFoundException", Message: "not found", Err: err}
		}
		return &APIError{Status: http.StatusNotFound, Code: "ResourceNotFoundException", Message: "not found", Err: err}
	}
	return &APIError{Status: http.StatusInternalServerError, Code: internal, Message: "internal error", Err: err}
}

// writeRestJSONError writes an inspector2 (restJson1) error: the
// x-amzn-ErrorType header and a JSON body with "message".
func writeRestJSONError(w http.ResponseWriter, ae *APIError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", ae.Code)
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": ae.Message})
}

// writeJSON11Error writes an ECR (awsJson1_1) error: {"__type", "message"}.
func writeJSON11Error(w http.ResponseWriter, ae *APIError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": ae.Code, "message": ae.Message})
}
