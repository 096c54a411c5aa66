package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// findingView is one Inspector finding: a stored finding (per image digest)
// as seen in one repository. An image in several repositories gives one
// view per repository, each with its own stable ARN.
type findingView struct {
	f        *scan.Finding
	status   scan.FindingStatus // after suppression rules
	arn      string
	repo     string
	ri       *index.RepoImage
	arch     string
	platform string
	inUse    int64
	lastUse  *time.Time
	account  string
	region   string
}

// findingARN is the stable ARN of finding id in repo:
// arn:aws:inspector2:<region>:<account>:finding/<32 hex>.
func findingARN(region, account, repo, id string) string {
	h := sha256.Sum256([]byte(repo + "\x00" + id))
	return "arn:aws:inspector2:" + region + ":" + account + ":finding/" + hex.EncodeToString(h[:16])
}

// imageResourceID is Inspector's resource id of an ECR image:
// arn:aws:ecr:<region>:<account>:repository/<repo>/<digest>.
func imageResourceID(region, account, repo, dgst string) string {
	return "arn:aws:ecr:" + region + ":" + account + ":repository/" + repo + "/" + dgst
}

// inspectorScore is the highest CVSS base score of f (Inspector's score
// before environmental adjustment); ok false when f has no CVSS.
func inspectorScore(f *scan.Finding) (float64, bool) {
	best, ok := 0.0, false
	for _, c := range f.CVSS {
		if !ok || c.BaseScore > best {
			best, ok = c.BaseScore, true
		}
	}
	return best, ok
}

// vulnerabilitySource names where the advisory came from, in Inspector's
// style (NVD, GITHUB, DEBIAN_CVE…), from the OSV id's prefix.
func vulnerabilitySource(f *scan.Finding) string {
	id := f.AdvisoryID
	if id == "" {
		id = f.VulnerabilityID
	}
	pfx, _, _ := strings.Cut(id, "-")
	switch strings.ToUpper(pfx) {
	case "CVE":
		return "NVD"
	case "GHSA":
		return "GITHUB"
	case "DSA", "DLA", "DTSA", "DEBIAN":
		return "DEBIAN_CVE"
	case "USN", "UBUNTU":
		return "UBUNTU_CVE"
	case "ALPINE":
		return "ALPINE_SEC"
	case "GO":
		return "GO"
	case "PYSEC":
		return "PYPA"
	case "RUSTSEC":
		return "RUSTSEC"
	case "RHSA", "RHBA", "RHEA":
		return "REDHAT_CVE"
	}
	return "OSV"
}

// packageManager maps an OSV ecosystem to Inspector's PackageManager enum.
func packageManager(p scan.Package) string {
	eco, _, _ := strings.Cut(p.Ecosystem, ":")
	switch strings.ToLower(eco) {
	case "debian", "ubuntu":
		return "OS"
	case "alpine", "wolfi", "chainguard":
		return "OS"
	case "red hat", "rocky linux", "almalinux", "suse", "opensuse":
		return "OS"
	case "go":
		return "GOMOD"
	case "npm":
		return "NPM"
	case "pypi":
		return "PIP"
	case "maven":
		return "JAR"
	case "rubygems":
		return "GEMSPEC"
	case "crates.io":
		return "CARGO"
	case "nuget":
		return "NUGET"
	case "packagist":
		return "COMPOSER"
	}
	if p.Kind == scan.KindOS {
		return "OS"
	}
	return strings.ToUpper(eco)
}

// pkgRelease splits an OS package version into Inspector's version and
// release ("1.2.3-4" → "1.2.3", "4") for OS packages; language packages
// keep the whole version.
func pkgVersionRelease(p scan.Package) (version, release string, epoch float64) {
	v := p.Version
	if i := strings.IndexByte(v, ':'); i > 0 && p.Kind == scan.KindOS {
		var e float64
		for _, c := range v[:i] {
			if c < '0' || c > '9' {
				e = -1
				break
			}
			e = e*10 + float64(c-'0')
		}
		if e >= 0 {
			epoch, v = e, v[i+1:]
		}
	}
	if p.Kind == scan.KindOS {
		if i := strings.LastIndexByte(v, '-'); i > 0 {
			return v[:i], v[i+1:], epoch
		}
	}
	return v, "", epoch
}

func (v *findingView) pkgFacts() pkgFacts {
	p := v.f.Package
	ver, rel, ep := pkgVersionRelease(p)
	return pkgFacts{Arch: p.Arch, FilePath: p.Path, Name: p.Name, Release: rel,
		SourceLayerHash: p.Layer.String(), Version: ver, Epoch: ep}
}

func one(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func (v *findingView) tags() []string {
	if v.ri == nil {
		return nil
	}
	return v.ri.Tags
}

func (v *findingView) pushedAt() *time.Time {
	if v.ri == nil || v.ri.PushedAt.IsZero() {
		return nil
	}
	return &v.ri.PushedAt
}

// findingSchema is Inspector's FilterCriteria over findings of container
// images (https://docs.aws.amazon.com/inspector/v2/APIReference/API_FilterCriteria.html).
var findingSchema = &schema[*findingView]{
	name:        "filterCriteria",
	comparisons: []string{"EQUALS", "PREFIX", "NOT_EQUALS"},
	strs: map[string]func(*findingView) []string{
		"awsAccountId":           func(v *findingView) []string { return one(v.account) },
		"componentId":            func(v *findingView) []string { return one(v.f.Package.PURL) },
		"componentType":          func(v *findingView) []string { return one(packageManager(v.f.Package)) },
		"ecrImageArchitecture":   func(v *findingView) []string { return one(v.arch) },
		"ecrImageHash":           func(v *findingView) []string { return one(v.f.Image.String()) },
		"ecrImageRegistry":       func(v *findingView) []string { return one(v.account) },
		"ecrImageRepositoryName": func(v *findingView) []string { return one(v.repo) },
		"ecrImageTags":           func(v *findingView) []string { return v.tags() },
		"exploitAvailable":       func(v *findingView) []string { return []string{"NO"} },
		"findingArn":             func(v *findingView) []string { return one(v.arn) },
		"findingStatus":          func(v *findingView) []string { return one(string(v.status)) },
		"findingType":            func(v *findingView) []string { return []string{"PACKAGE_VULNERABILITY"} },
		"fixAvailable":           func(v *findingView) []string { return one(v.f.FixAvailable) },
		"relatedVulnerabilities": func(v *findingView) []string { return v.f.RelatedIDs },
		"resourceId": func(v *findingView) []string {
			return one(imageResourceID(v.region, v.account, v.repo, v.f.Image.String()))
		},
		"resourceType":        func(v *findingView) []string { return []string{"AWS_ECR_CONTAINER_IMAGE"} },
		"severity":            func(v *findingView) []string { return one(string(v.f.Severity)) },
		"title":               func(v *findingView) []string { return one(v.f.Title) },
		"vendorSeverity":      func(v *findingView) []string { return one(v.f.VendorSeverity) },
		"vulnerabilityId":     func(v *findingView) []string { return one(v.f.VulnerabilityID) },
		"vulnerabilitySource": func(v *findingView) []string { return one(vulnerabilitySource(v.f)) },
	},
	dates: map[string]func(*findingView) *time.Time{
		"firstObservedAt":     func(v *findingView) *time.Time { return &v.f.FirstObservedAt },
		"lastObservedAt":      func(v *findingView) *time.Time { return &v.f.LastObservedAt },
		"updatedAt":           func(v *findingView) *time.Time { return &v.f.UpdatedAt },
		"ecrImagePushedAt":    func(v *findingView) *time.Time { return v.pushedAt() },
		"ecrImageLastInUseAt": func(v *findingView) *time.Time { return v.lastUse },
	},
	nums: map[string]func(*findingView) (float64, bool){
		"inspectorScore":     func(v *findingView) (float64, bool) { return inspectorScore(v.f) },
		"ecrImageInUseCount": func(v *findingView) (float64, bool) { return float64(v.inUse), true },
	},
	maps: map[string]func(*findingView) map[string]string{
		"resourceTags": func(*findingView) map[string]string { return nil },
	},
	pkgs: map[string]func(*findingView) []pkgFacts{
		"vulnerablePackages": func(v *findingView) []pkgFacts { return []pkgFacts{v.pkgFacts()} },
	},
	absent: map[string]fieldKind{
		"codeRepositoryProjectName":      kString,
		"codeRepositoryProviderType":     kString,
		"codeVulnerabilityDetectorName":  kString,
		"codeVulnerabilityDetectorTags":  kString,
		"codeVulnerabilityFilePath":      kString,
		"ec2InstanceImageId":             kString,
		"ec2InstanceSubnetId":            kString,
		"ec2InstanceVpcId":               kString,
		"lambdaFunctionExecutionRoleArn": kString,
		"lambdaFunctionLayers":           kString,
		"lambdaFunctionName":             kString,
		"lambdaFunctionRuntime":          kString,
		"networkProtocol":                kString,
		"lambdaFunctionLastModifiedAt":   kDate,
		"epssScore":                      kNumber,
		"portRange":                      kPortRange,
	},
}
