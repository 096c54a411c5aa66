// Package events publishes tollgate's events as CloudEvents 1.0
// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md) in
// structured JSON mode (application/cloudevents+json), named after the
// EventBridge events of Amazon Inspector and Amazon ECR:
//
//	type "Inspector2 Scan"      source "aws.inspector2"  initial scan complete, finding counts by severity
//	type "Inspector2 Finding"   source "aws.inspector2"  finding created, updated or closed
//	type "Inspector2 Coverage"  source "aws.inspector2"  an image's coverage (scan status) changed
//	type "ECR Image Action"     source "aws.ecr"         image PUSH, DELETE (ECR) and PULL (tollgate)
//
// The mapping follows EventBridge's own CloudEvents transformation: type is
// the EventBridge detail-type, source its source, data its detail. Events go
// through a durable outbox in Badger (index.Outbox) and a Deliverer posts
// them to webhooks with retries: delivery is at-least-once and receivers
// deduplicate on the event id, which is stable across retries and restarts.
// See docs/events.md.
package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ContentType is the structured-mode media type of a CloudEvent in JSON.
const ContentType = "application/cloudevents+json"

// SpecVersion is the CloudEvents version produced.
const SpecVersion = "1.0"

// Event types (EventBridge detail-types).
const (
	TypeScan        = "Inspector2 Scan"
	TypeFinding     = "Inspector2 Finding"
	TypeCoverage    = "Inspector2 Coverage"
	TypeImageAction = "ECR Image Action"
)

// Event sources (EventBridge sources).
const (
	SourceInspector = "aws.inspector2"
	SourceECR       = "aws.ecr"
)

// Event is one CloudEvent in structured JSON mode. Data holds the event's
// detail as JSON.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// Validate checks the CloudEvents 1.0 required attributes (id, source,
// specversion, type: non-empty strings).
func (e Event) Validate() error {
	var errs []error
	if e.SpecVersion != SpecVersion {
		errs = append(errs, fmt.Errorf("specversion %q: want %q", e.SpecVersion, SpecVersion))
	}
	if e.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	if e.Source == "" {
		errs = append(errs, errors.New("source is empty"))
	}
	if e.Type == "" {
		errs = append(errs, errors.New("type is empty"))
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		errs = append(errs, errors.New("data is not valid JSON"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("events: invalid CloudEvent: %w", err)
	}
	return nil
}

// New builds an event of type typ from source with detail as data. The id is
// derived from idParts (a hash), so that announcing the same state change
// twice yields the same id and the outbox stores it once; with no idParts the
// id is derived from the type, subject, time and data.
func New(source, typ, subject string, at time.Time, detail any, idParts ...string) (Event, error) {
	b, err := json.Marshal(detail)
	if err != nil {
		return Event{}, fmt.Errorf("events: encode %s detail: %w", typ, err)
	}
	if len(idParts) == 0 {
		idParts = []string{subject, at.UTC().Format(time.RFC3339Nano), string(b)}
	}
	return Event{
		SpecVersion:     SpecVersion,
		ID:              stableID(append([]string{typ}, idParts...)...),
		Source:          source,
		Type:            typ,
		Subject:         subject,
		Time:            at.UTC(),
		DataContentType: "application/json",
		Data:            b,
	}, nil
}

// stableID hashes parts (NUL-separated) into a 32-hex-digit id.
func stableID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
