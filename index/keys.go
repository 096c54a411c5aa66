package index

// Badger keyspace: one prefix per concern. Each store file owns its prefix.
//
//	img/<manifest-digest>                         image record            (records.go)
//	tag/<repo>/<tag>                              → manifest digest        (records.go)
//	tgh/<repo>/<tag>/<unix-nano>                  tag history             (records.go)
//	rpi/<repo>@<manifest-digest>                  repository → image      (records.go)
//	ref/<subject-digest>/<digest>                 referrer descriptor     (referrers.go)
//	lay/<layer-digest>/<analyzers-version>        layer inventory         (inventory.go)
//	inv/<manifest-digest>                         merged image inventory  (inventory.go)
//	adv/<ecosystem>/<name>/<advisory-id>          advisory by package     (advisories.go)
//	ads/...                                       advisory sources/meta   (advisories.go)
//	pix/<ecosystem>/<name>/<manifest-digest>      package → image index   (pkgindex.go)
//	fnd/<manifest-digest>/<finding-id>            finding                 (findings.go)
//	job/<due>/<id>                                scan queue              (queue.go)
//	out/{e,d}/<seq>, out/i/<id>, out/c/<name>     event outbox            (outbox.go)
//	cfg/<name>                                    configuration           (settings.go)
//	cov/<manifest-digest>                         coverage / scan status  (coverage.go)
//	use/<manifest-digest>/<container-key>         runtime in-use reports  (inuse.go)
const (
	pfxImage     = "img/"
	pfxTag       = "tag/"
	pfxTagHist   = "tgh/"
	pfxReferrer  = "ref/"
	pfxLayer     = "lay/"
	pfxInventory = "inv/"
	pfxAdvisory  = "adv/"
	pfxAdvMeta   = "ads/"
	pfxPkgIndex  = "pix/"
	pfxFinding   = "fnd/"
	pfxJob       = "job/"
	pfxOutbox    = "out/"
	pfxConfig    = "cfg/"
	pfxCoverage  = "cov/"
	pfxInUse     = "use/"
)

// key joins parts with '/' after a prefix.
func key(prefix string, parts ...string) []byte {
	n := len(prefix)
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, p...)
	}
	return b
}
