package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/schemas"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
)

// ECR's awsJson1_1 protocol
// (https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html): POST /
// with X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>.
// Requests decode into the SDK's own input types (their JSON member names
// are the Go field names, matched case-insensitively, and carry no
// timestamps); responses are the SDK's output types written by the SDK's
// own awsJson1_1 serializer, so field names and timestamp encoding (epoch
// seconds) are exactly what the SDK and the AWS CLI read.

const ecrTargetPrefix = "AmazonEC2ContainerRegistry_V20150921."

func (a *API) ecrOperations() map[string]func(context.Context, []byte) (any, error) {
	return map[string]func(context.Context, []byte) (any, error){
		"PutRegistryScanningConfiguration":        a.ecrPutRegistryScanningConfiguration,
		"GetRegistryScanningConfiguration":        a.ecrGetRegistryScanningConfiguration,
		"BatchGetRepositoryScanningConfiguration": a.ecrBatchGetRepositoryScanningConfiguration,
		"StartImageScan":                          a.ecrStartImageScan,
		"DescribeImageScanFindings":               a.ecrDescribeImageScanFindings,
		"DescribeImages":                          a.ecrDescribeImages,
		"DescribeRepositories":                    a.ecrDescribeRepositories,
		"ListImages":                              a.ecrListImages,
		"UpdateImageStorageClass":                 a.ecrUpdateImageStorageClass,
		"BatchDeleteImage":                        a.ecrBatchDeleteImage,
	}
}

func (a *API) serveECR(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, ecrTargetPrefix)
	op := a.ecrOps[name]
	if !ok || op == nil || r.Method != http.MethodPost {
		writeJSON11Error(w, &APIError{Status: http.StatusBadRequest, Code: "UnknownOperationException",
			Message: fmt.Sprintf("unknown operation %q", target)})
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeJSON11Error(w, toAPIError(err, "ServerException"))
		return
	}
	out, err := op(r.Context(), body)
	if err != nil {
		ae := toAPIError(err, "ServerException")
		if ae.Status >= 500 {
			a.log.Error().Err(err).Str("operation", name).Msg("ecr operation failed")
		}
		writeJSON11Error(w, ae)
		return
	}
	b, err := encodeECR(r.Context(), out)
	if err != nil {
		a.log.Error().Err(err).Str("operation", name).Msg("encode ecr response")
		writeJSON11Error(w, toAPIError(err, "ServerException"))
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_, _ = w.Write(b)
}

// encodeECR writes an SDK output value with the SDK's awsJson1_1 serializer.
func encodeECR(ctx context.Context, v any) ([]byte, error) {
	s, ok := v.(smithy.Serializable)
	if !ok {
		return json.Marshal(v)
	}
	p := awsjson.New11(schemas.AmazonEC2ContainerRegistry_V20150921)
	// The operation schema only sets X-Amz-Target on the scratch request.
	op := smithy.NewOperationSchema(schemas.DescribeImages, schemas.DescribeImagesRequest, schemas.DescribeImagesResponse)
	req := smithyhttp.NewStackRequest().(*smithyhttp.Request)
	if err := p.SerializeRequest(ctx, op, s, req); err != nil {
		return nil, fmt.Errorf("serialize: %w", err)
	}
	rd := req.GetStream()
	if rd == nil {
		return []byte("{}"), nil
	}
	return io.ReadAll(rd)
}

// registryScanningConfiguration renders c in ECR's shape.
func registryScanningConfiguration(c ScanningConfiguration) *ecrtypes.RegistryScanningConfiguration {
	out := &ecrtypes.RegistryScanningConfiguration{ScanType: ecrtypes.ScanType(c.ScanType), Rules: []ecrtypes.RegistryScanningRule{}}
	for _, r := range c.Rules {
		rule := ecrtypes.RegistryScanningRule{ScanFrequency: ecrtypes.ScanFrequency(r.ScanFrequency)}
		for _, f := range r.RepositoryFilters {
			rule.RepositoryFilters = append(rule.RepositoryFilters, ecrtypes.ScanningRepositoryFilter{
				Filter: aws.String(f), FilterType: ecrtypes.ScanningRepositoryFilterTypeWildcard})
		}
		out.Rules = append(out.Rules, rule)
	}
	return out
}

// ecrPutRegistryScanningConfiguration replaces scanType and rules; the
// rescan durations (Inspector's UpdateConfiguration) are kept.
func (a *API) ecrPutRegistryScanningConfiguration(ctx context.Context, body []byte) (any, error) {
	if a.o.Config == nil {
		return nil, unavailable("scanning configuration")
	}
	var in ecr.PutRegistryScanningConfigurationInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	c, err := a.o.Config.ScanningConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	if in.ScanType != "" {
		c.ScanType = string(in.ScanType)
	}
	if c.ScanType != "ENHANCED" && c.ScanType != "BASIC" {
		return nil, errECRParam("scanType %q: want ENHANCED or BASIC", c.ScanType)
	}
	if len(in.Rules) > 2 {
		return nil, errECRParam("at most 2 rules are allowed, got %d", len(in.Rules))
	}
	c.Rules = nil
	for i, r := range in.Rules {
		switch r.ScanFrequency {
		case "SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL":
		default:
			return nil, errECRParam("rules[%d].scanFrequency %q: want SCAN_ON_PUSH, CONTINUOUS_SCAN or MANUAL", i, r.ScanFrequency)
		}
		if c.ScanType == "BASIC" && r.ScanFrequency == "CONTINUOUS_SCAN" {
			return nil, errECRParam("rules[%d]: CONTINUOUS_SCAN needs scanType ENHANCED", i)
		}
		if c.ScanType == "ENHANCED" && r.ScanFrequency == "MANUAL" {
			return nil, errECRParam("rules[%d]: MANUAL needs scanType BASIC", i)
		}
		if len(r.RepositoryFilters) == 0 || len(r.RepositoryFilters) > 100 {
			return nil, errECRParam("rules[%d]: want 1 to 100 repositoryFilters", i)
		}
		rule := ScanningRule{ScanFrequency: string(r.ScanFrequency)}
		for j, f := range r.RepositoryFilters {
			if f.Filter == nil || *f.Filter == "" || (f.FilterType != "" && f.FilterType != ecrtypes.ScanningRepositoryFilterTypeWildcard) {
				return nil, errECRParam("rules[%d].repositoryFilters[%d]: want a non-empty WILDCARD filter", i, j)
			}
			rule.RepositoryFilters = append(rule.RepositoryFilters, *f.Filter)
		}
		c.Rules = append(c.Rules, rule)
	}
	c.UpdatedAt = a.o.Now().UTC()
	if err := a.o.Config.SetScanningConfiguration(ctx, c); err != nil {
		return nil, err
	}
	a.log.Info().Str("scanType", c.ScanType).Int("rules", len(c.Rules)).Msg("registry scanning configuration updated")
	return &ecr.PutRegistryScanningConfigurationOutput{RegistryScanningConfiguration: registryScanningConfiguration(c)}, nil
}

func (a *API) ecrGetRegistryScanningConfiguration(ctx context.Context, _ []byte) (any, error) {
	if a.o.Config == nil {
		return nil, unavailable("scanning configuration")
	}
	c, err := a.o.Config.ScanningConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	return &ecr.GetRegistryScanningConfigurationOutput{RegistryId: aws.String(a.o.AccountID),
		ScanningConfiguration: registryScanningConfiguration(c)}, nil
}

func (a *API) ecrBatchGetRepositoryScanningConfiguration(ctx context.Context, body []byte) (any, error) {
	if a.o.Config == nil {
		return nil, unavailable("scanning configuration")
	}
	var in ecr.BatchGetRepositoryScanningConfigurationInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	if len(in.RepositoryNames) < 1 || len(in.RepositoryNames) > 25 {
		return nil, errECRParam("repositoryNames: want 1 to 25 names")
	}
	c, err := a.o.Config.ScanningConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	repos, err := a.repositories(ctx)
	if err != nil {
		return nil, err
	}
	out := &ecr.BatchGetRepositoryScanningConfigurationOutput{
		ScanningConfigurations: []ecrtypes.RepositoryScanningConfiguration{},
		Failures:               []ecrtypes.RepositoryScanningConfigurationFailure{},
	}
	for _, name := range in.RepositoryNames {
		if _, ok := repos[name]; !ok {
			out.Failures = append(out.Failures, ecrtypes.RepositoryScanningConfigurationFailure{
				RepositoryName: aws.String(name), FailureCode: ecrtypes.ScanningConfigurationFailureCodeRepositoryNotFound,
				FailureReason: aws.String("REPOSITORY_NOT_FOUND")})
			continue
		}
		freq, filters := ruleFor(&c, name)
		if freq == "" {
			freq = string(ecrtypes.ScanFrequencyManual)
		}
		rc := ecrtypes.RepositoryScanningConfiguration{RepositoryName: aws.String(name), RepositoryArn: aws.String(a.repoARN(name)),
			ScanFrequency: ecrtypes.ScanFrequency(freq), ScanOnPush: freq != string(ecrtypes.ScanFrequencyManual),
			AppliedScanFilters: []ecrtypes.ScanningRepositoryFilter{}}
		for _, f := range filters {
			rc.AppliedScanFilters = append(rc.AppliedScanFilters, ecrtypes.ScanningRepositoryFilter{
				Filter: aws.String(f), FilterType: ecrtypes.ScanningRepositoryFilterTypeWildcard})
		}
		out.ScanningConfigurations = append(out.ScanningConfigurations, rc)
	}
	return out, nil
}

func (a *API) repoARN(name string) string {
	return "arn:aws:ecr:" + a.o.Region + ":" + a.o.AccountID + ":repository/" + name
}
