package events

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
)

func TestStatusHandler(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, t.TempDir())
	defer n.close(t)
	evs := imageEvents(t, 3)
	require.NoError(t, NewPublisher(n.ob, nil).Publish(ctx, evs...))
	pend, err := n.ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	now := time.Now()
	next := now.Add(time.Minute)
	require.NoError(t, n.ob.Record(ctx, pend[0].Seq, "wh-1", indexDelivered(now), []string{"wh-1"}))
	require.NoError(t, n.ob.Record(ctx, pend[1].Seq, "wh-1", indexFailed(next), []string{"wh-1"}))

	get := func(q string) (int, DeliveriesPage) {
		rec := httptest.NewRecorder()
		StatusHandler(n.ob).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/webhooks/deliveries"+q, nil))
		var p DeliveriesPage
		if rec.Code == http.StatusOK {
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
		}
		return rec.Code, p
	}
	code, p := get("")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, p.Done, 1)
	require.Equal(t, evs[0].ID, p.Done[0].ID)
	require.NotNil(t, p.Done[0].Targets["wh-1"].DeliveredAt)
	require.Len(t, p.Pending, 2)
	require.Equal(t, 503, p.Pending[0].Targets["wh-1"].LastStatus)
	require.Empty(t, p.Pending[1].Targets, "not attempted yet")

	_, p = get("?state=pending&maxResults=1")
	require.Len(t, p.Pending, 1)
	require.Empty(t, p.Done)
	code, _ = get("?maxResults=0")
	require.Equal(t, http.StatusBadRequest, code)
}

func indexDelivered(at time.Time) index.Delivery {
	return index.Delivery{Attempts: 1, LastAttemptAt: &at, LastStatus: 204, DeliveredAt: &at}
}

func indexFailed(next time.Time) index.Delivery {
	return index.Delivery{Attempts: 1, LastStatus: 503, LastError: "503 Service Unavailable", NextAttemptAt: &next}
}
