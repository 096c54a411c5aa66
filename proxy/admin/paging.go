package admin

import (
	"encoding/base64"
	"encoding/json"
	"sort"
)

// Pagination is keyset pagination: every list is totally ordered by
// (sort key, id), and nextToken holds the last item's position, so the next
// page starts strictly after it. Items added or removed between pages shift
// no other item: no duplicates and no skipped items among those that were
// there throughout (unlike offsets).

// pageKey is one item's position in a list's order.
type pageKey struct {
	N  float64 `json:"n,omitempty"`
	S  string  `json:"s,omitempty"`
	ID string  `json:"i"`
}

// pageToken is the decoded nextToken.
type pageToken struct {
	Op   string  `json:"o"` // list identity: operation and sort
	Last pageKey `json:"k"`
}

func encodeToken(op string, k pageKey) string {
	b, _ := json.Marshal(pageToken{Op: op, Last: k})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(op, tok string) (*pageKey, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, errValidation("invalid nextToken")
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil || t.Op != op {
		return nil, errValidation("invalid nextToken for this request")
	}
	return &t.Last, nil
}

// lessKey orders keys by N, then S, then ID, with desc reversing N and S
// (ID stays ascending, so the order is total either way).
func lessKey(a, b pageKey, desc bool) bool {
	if a.N != b.N {
		return (a.N < b.N) != desc
	}
	if a.S != b.S {
		return (a.S < b.S) != desc
	}
	return a.ID < b.ID
}

// page sorts items by key, skips through after (exclusive) and returns up
// to n items plus the nextToken ("" on the last page).
func page[T any](items []T, key func(T) pageKey, desc bool, after *pageKey, n int, op string) ([]T, string) {
	keys := make([]pageKey, len(items))
	idx := make([]int, len(items))
	for i, it := range items {
		keys[i], idx[i] = key(it), i
	}
	sort.Slice(idx, func(i, j int) bool { return lessKey(keys[idx[i]], keys[idx[j]], desc) })
	start := 0
	if after != nil {
		start = sort.Search(len(idx), func(i int) bool { return lessKey(*after, keys[idx[i]], desc) })
	}
	end := start + n
	if end > len(idx) {
		end = len(idx)
	}
	out := make([]T, 0, end-start)
	for _, i := range idx[start:end] {
		out = append(out, items[i])
	}
	next := ""
	if end < len(idx) && end > start {
		next = encodeToken(op, keys[idx[end-1]])
	}
	return out, next
}
