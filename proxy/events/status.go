package events

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/tollgate-registry/tollgate/index"
)

// Lister lists outbox entries; *index.Outbox implements it.
type Lister interface {
	Pending(ctx context.Context, after uint64, limit int) ([]index.OutboxEntry, error)
	Done(ctx context.Context, after uint64, limit int) ([]index.OutboxEntry, error)
}

// DeliveryStatus is one outbox entry as GET /v1/webhooks/deliveries shows it:
// the event's id and type and its delivery state per webhook target id.
type DeliveryStatus struct {
	Seq       uint64                    `json:"seq"`
	ID        string                    `json:"id"`
	Type      string                    `json:"type"`
	CreatedAt time.Time                 `json:"createdAt"`
	DoneAt    *time.Time                `json:"doneAt,omitempty"`
	Targets   map[string]index.Delivery `json:"targets"`
}

// DeliveriesPage is the answer of StatusHandler.
type DeliveriesPage struct {
	Pending []DeliveryStatus `json:"pending"`
	Done    []DeliveryStatus `json:"done"`
}

// StatusHandler serves the outbox's delivery records as JSON:
// ?state=pending|done|all (default all), ?maxResults=1..1000 (default 100,
// per state), oldest first. Payloads are not included.
func StatusHandler(l Lister) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := 100
		if v := q.Get("maxResults"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				http.Error(w, `{"error":"maxResults must be 1..1000"}`, http.StatusBadRequest)
				return
			}
			limit = n
		}
		state := q.Get("state")
		page := DeliveriesPage{Pending: []DeliveryStatus{}, Done: []DeliveryStatus{}}
		for _, part := range []struct {
			name string
			list func(context.Context, uint64, int) ([]index.OutboxEntry, error)
			out  *[]DeliveryStatus
		}{{"pending", l.Pending, &page.Pending}, {"done", l.Done, &page.Done}} {
			if state != "" && state != "all" && state != part.name {
				continue
			}
			es, err := part.list(r.Context(), 0, limit)
			if err != nil {
				http.Error(w, `{"error":"listing the outbox failed"}`, http.StatusInternalServerError)
				return
			}
			for _, e := range es {
				t := e.Targets
				if t == nil {
					t = map[string]index.Delivery{}
				}
				*part.out = append(*part.out, DeliveryStatus{Seq: e.Seq, ID: e.ID, Type: e.Type,
					CreatedAt: e.CreatedAt, DoneAt: e.DoneAt, Targets: t})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	})
}
