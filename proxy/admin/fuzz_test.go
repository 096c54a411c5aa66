package admin

import (
	"errors"
	"testing"
)

// FuzzFilterCriteria feeds untrusted criteria JSON (ListFindings,
// CreateFilter, coverage, SBOM export) to the compilers: they either
// return a ValidationException or a predicate that evaluates without
// panicking.
func FuzzFilterCriteria(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"severity":[{"comparison":"EQUALS","value":"HIGH"}]}`,
		`{"ecrImagePushedAt":[{"startInclusive":1700000000.5,"endInclusive":1800000000}]}`,
		`{"inspectorScore":[{"lowerInclusive":"NaN","upperInclusive":"-Infinity"}]}`,
		`{"vulnerablePackages":[{"name":{"comparison":"PREFIX","value":"lib"},"epoch":{"lowerInclusive":0}}]}`,
		`{"resourceTags":[{"comparison":"EQUALS","key":"k","value":"v"}]}`,
		`{"portRange":[{"beginInclusive":1}]}`,
		`{"scanStatusCode":[{"comparison":"NOT_EQUALS","value":"ACTIVE"}],"lastScannedAt":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	v := sampleView()
	cv := &coverageView{resourceType: "AWS_ECR_CONTAINER_IMAGE", repo: "app", tags: []string{"v1"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error) {
			var ae *APIError
			if err != nil && (!errors.As(err, &ae) || ae.Code != "ValidationException") {
				t.Fatalf("error is not a ValidationException: %v", err)
			}
		}
		c, err := findingSchema.compile(b)
		check(err)
		if err == nil {
			c.match(v)
		}
		a, err := aggSchema.compile(b)
		check(err)
		if err == nil {
			a.match(v)
		}
		cc, err := coverageSchema.compile(b)
		check(err)
		if err == nil {
			cc.match(cv)
		}
		rc, err := resourceSchema.compile(b)
		check(err)
		if err == nil {
			rc.match(cv)
		}
	})
}
