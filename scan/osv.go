package scan

import (
	"strings"

	"github.com/package-url/packageurl-go"
)

// OSVEcosystem names the OSV ecosystem of an OS release's packages, in
// OSV's naming (https://ossf.github.io/osv-schema/#affectedpackage-field):
// "Debian:12", "Ubuntu:22.04:LTS", "Alpine:v3.18", "AlmaLinux:9",
// "Rocky Linux:9", "Red Hat:enterprise_linux:9", "SUSE:…", "openSUSE:…",
// "Wolfi", "Chainguard", "Mariner:2.0", "Azure Linux:3.0", "Photon OS:5.0",
// "openEuler:22.03-LTS". Distributions OSV does not name get "<Name>:<version>".
// It returns "" when os is nil or names nothing.
func OSVEcosystem(os *OSRelease) string {
	if os == nil || os.ID == "" {
		return ""
	}
	v := os.VersionID
	major, minor := v, ""
	if i := strings.IndexByte(v, '.'); i >= 0 {
		major = v[:i]
		minor = v[i+1:]
		if j := strings.IndexByte(minor, '.'); j >= 0 {
			minor = minor[:j]
		}
	}
	with := func(name, ver string) string {
		if ver == "" {
			return name
		}
		return name + ":" + ver
	}
	switch strings.ToLower(os.ID) {
	case "debian":
		return with("Debian", major)
	case "ubuntu":
		eco := with("Ubuntu", v)
		// LTS releases are the even years' April releases.
		if len(major) == 2 && minor == "04" && (major[1]-'0')%2 == 0 {
			eco += ":LTS"
		}
		return eco
	case "alpine":
		if minor != "" {
			return "Alpine:v" + major + "." + minor
		}
		return with("Alpine", v)
	case "wolfi":
		return "Wolfi"
	case "chainguard":
		return "Chainguard"
	case "almalinux":
		return with("AlmaLinux", major)
	case "rocky":
		return with("Rocky Linux", major)
	case "rhel":
		return with("Red Hat", with("enterprise_linux", major))
	case "centos":
		return with("CentOS", major)
	case "fedora":
		return with("Fedora", major)
	case "amzn":
		return with("Amazon Linux", v)
	case "mariner":
		return with("Mariner", v)
	case "azurelinux":
		return with("Azure Linux", v)
	case "photon":
		return with("Photon OS", v)
	case "openeuler":
		return with("openEuler", v)
	case "sles", "sled", "sle-micro", "sles_sap":
		return with("SUSE", "Linux Enterprise Server "+strings.ReplaceAll(strings.Replace(v, ".", " SP", 1), " SP0", ""))
	case "opensuse-leap", "opensuse":
		return with("openSUSE", "Leap "+v)
	case "opensuse-tumbleweed":
		return "openSUSE:Tumbleweed"
	}
	if os.PrettyName != "" && strings.Contains(strings.ToLower(os.PrettyName), "distroless") {
		return with("Debian", major)
	}
	return with(os.ID, v)
}

// purlNamespace is the purl namespace of an OS's packages.
func purlNamespace(os *OSRelease) string {
	switch id := strings.ToLower(os.ID); id {
	case "rhel":
		return "redhat"
	case "sles", "sled", "opensuse-leap", "opensuse-tumbleweed", "opensuse", "sle-micro", "sles_sap":
		return "suse"
	case "amzn":
		return "amazon"
	default:
		return id
	}
}

// resolveOSPackage sets an OS package's release ecosystem and purl distro.
func resolveOSPackage(p *Package, os *OSRelease, eco string) {
	if eco != "" {
		p.Ecosystem = eco
	}
	if p.PURL == "" {
		return
	}
	u, err := packageurl.FromString(p.PURL)
	if err != nil {
		return
	}
	u.Namespace = purlNamespace(os)
	q := u.Qualifiers.Map()
	if os.VersionID != "" {
		q["distro"] = u.Namespace + "-" + os.VersionID
	}
	u.Qualifiers = packageurl.QualifiersFromMap(q)
	p.PURL = u.ToString()
}

// ResolveOS sets inv.OS's ecosystem (OSVEcosystem) and purl distro on every
// OS package; packages keep their family ecosystem when the OS is unknown.
func (inv *Inventory) ResolveOS() {
	if inv.OS == nil {
		return
	}
	eco := OSVEcosystem(inv.OS)
	for i := range inv.Packages {
		if inv.Packages[i].Kind == KindOS {
			resolveOSPackage(&inv.Packages[i], inv.OS, eco)
		}
	}
}
