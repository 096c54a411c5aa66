package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

	"github.com/tollgate-registry/tollgate/index"
)

// Suppression rules: Inspector's CreateFilter / ListFilters / UpdateFilter /
// DeleteFilter (https://docs.aws.amazon.com/inspector/v2/APIReference/API_CreateFilter.html).
// A SUPPRESS filter changes the reported status of the ACTIVE findings it
// matches to SUPPRESSED; the stored findings are untouched, so deleting or
// narrowing the filter returns them to ACTIVE at once.

type wFilter struct {
	Action      string            `json:"action"`
	Arn         string            `json:"arn"`
	CreatedAt   *epochTime        `json:"createdAt"`
	Criteria    rawJSON           `json:"criteria"`
	Description string            `json:"description,omitempty"`
	Name        string            `json:"name"`
	OwnerId     string            `json:"ownerId"`
	Reason      string            `json:"reason,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	UpdatedAt   *epochTime        `json:"updatedAt"`
}

func filterToWire(f index.Filter) wFilter {
	return wFilter{Action: f.Action, Arn: f.ARN, CreatedAt: epoch(f.CreatedAt), Criteria: rawJSON(f.Criteria),
		Description: f.Description, Name: f.Name, OwnerId: f.OwnerID, Reason: f.Reason, Tags: f.Tags,
		UpdatedAt: epoch(f.UpdatedAt)}
}

type filterInput struct {
	Action         string            `json:"action"`
	Description    *string           `json:"description"`
	FilterCriteria rawJSON           `json:"filterCriteria"`
	Name           *string           `json:"name"`
	Reason         *string           `json:"reason"`
	Tags           map[string]string `json:"tags"`
	FilterArn      string            `json:"filterArn"`
}

func validAction(a string) error {
	if a != "NONE" && a != "SUPPRESS" {
		return errValidation("action %q: want NONE or SUPPRESS", a)
	}
	return nil
}

func (a *API) createFilter(ctx context.Context, body []byte) (any, error) {
	if a.o.Filters == nil {
		return nil, unavailable("filters")
	}
	var in filterInput
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if in.Name == nil || *in.Name == "" || len(*in.Name) > 128 {
		return nil, errValidation("name: want 1 to 128 characters")
	}
	if err := validAction(in.Action); err != nil {
		return nil, err
	}
	if len(in.FilterCriteria) == 0 {
		return nil, errValidation("filterCriteria is required")
	}
	c, err := findingSchema.compile(in.FilterCriteria)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, errValidation("filterCriteria must name at least one field")
	}
	existing, err := a.o.Filters.ListFilters(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range existing {
		if f.Name == *in.Name {
			return nil, errConflict("a filter named %q exists", *in.Name)
		}
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	now := a.o.Now().UTC()
	f := index.Filter{
		ARN:  "arn:aws:inspector2:" + a.o.Region + ":" + a.o.AccountID + ":owner/" + a.o.AccountID + "/filter/" + hex.EncodeToString(id[:]),
		Name: *in.Name, Action: in.Action, Criteria: []byte(in.FilterCriteria), Tags: in.Tags,
		OwnerID: a.o.AccountID, CreatedAt: now, UpdatedAt: now,
	}
	if in.Description != nil {
		f.Description = *in.Description
	}
	if in.Reason != nil {
		f.Reason = *in.Reason
	}
	if err := a.o.Filters.PutFilter(ctx, f); err != nil {
		return nil, err
	}
	a.log.Info().Str("filter", f.ARN).Str("action", f.Action).Msg("filter created")
	return map[string]string{"arn": f.ARN}, nil
}

func (a *API) updateFilter(ctx context.Context, body []byte) (any, error) {
	if a.o.Filters == nil {
		return nil, unavailable("filters")
	}
	var in filterInput
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	f, err := a.o.Filters.GetFilter(ctx, in.FilterArn)
	if errors.Is(err, index.ErrNotFound) {
		return nil, errNotFound("filter %s does not exist", in.FilterArn)
	} else if err != nil {
		return nil, err
	}
	if in.Action != "" {
		if err := validAction(in.Action); err != nil {
			return nil, err
		}
		f.Action = in.Action
	}
	if len(in.FilterCriteria) > 0 {
		c, err := findingSchema.compile(in.FilterCriteria)
		if err != nil {
			return nil, err
		}
		if len(c) == 0 {
			return nil, errValidation("filterCriteria must name at least one field")
		}
		f.Criteria = []byte(in.FilterCriteria)
	}
	if in.Name != nil {
		f.Name = *in.Name
	}
	if in.Description != nil {
		f.Description = *in.Description
	}
	if in.Reason != nil {
		f.Reason = *in.Reason
	}
	f.UpdatedAt = a.o.Now().UTC()
	if err := a.o.Filters.PutFilter(ctx, f); err != nil {
		return nil, err
	}
	return map[string]string{"arn": f.ARN}, nil
}

func (a *API) deleteFilter(ctx context.Context, body []byte) (any, error) {
	if a.o.Filters == nil {
		return nil, unavailable("filters")
	}
	var in struct {
		Arn string `json:"arn"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if err := a.o.Filters.DeleteFilter(ctx, in.Arn); errors.Is(err, index.ErrNotFound) {
		return nil, errNotFound("filter %s does not exist", in.Arn)
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"arn": in.Arn}, nil
}

func (a *API) listFilters(ctx context.Context, body []byte) (any, error) {
	if a.o.Filters == nil {
		return nil, unavailable("filters")
	}
	var in struct {
		Action     string   `json:"action"`
		Arns       []string `json:"arns"`
		MaxResults *int     `json:"maxResults"`
		NextToken  string   `json:"nextToken"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	n, err := maxResults(in.MaxResults, 50, 100)
	if err != nil {
		return nil, err
	}
	after, err := decodeToken("filters", in.NextToken)
	if err != nil {
		return nil, err
	}
	all, err := a.o.Filters.ListFilters(ctx)
	if err != nil {
		return nil, err
	}
	var sel []index.Filter
	for _, f := range all {
		if in.Action != "" && f.Action != in.Action {
			continue
		}
		if len(in.Arns) > 0 && !containsStr(in.Arns, f.ARN) {
			continue
		}
		sel = append(sel, f)
	}
	pg, next := page(sel, func(f index.Filter) pageKey { return pageKey{ID: f.ARN} }, false, after, n, "filters")
	out := struct {
		Filters   []wFilter `json:"filters"`
		NextToken string    `json:"nextToken,omitempty"`
	}{Filters: []wFilter{}, NextToken: next}
	for _, f := range pg {
		out.Filters = append(out.Filters, filterToWire(f))
	}
	return out, nil
}
