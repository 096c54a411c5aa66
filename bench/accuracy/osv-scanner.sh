#!/usr/bin/env bash
# tollgate scan vs osv-scanner v2, offline, with the same advisories, on
# every shared image: the (package, advisory id) pairs each reports, and the
# time of each, interleaved, median of ROUNDS. docs/accuracy.md explains the
# differences; docs/performance.md quotes the ratio.
#
#   bash bench/accuracy/osv-scanner.sh        # writes bench/results/osv-scanner-<date>.txt
#   ROUNDS=5 OSV_SCANNER=/path/to/osv-scanner bash bench/accuracy/osv-scanner.sh
#
# osv-scanner v2 needs Go 1.27: it is built with GOTOOLCHAIN=go1.27.3 into
# bench/.tools (gitignored) unless OSV_SCANNER names a binary. Its offline
# matcher (osv-scalibr enricher/vulnmatch/osvlocal) reads
# $OSV_SCANNER_LOCAL_DB_CACHE_DIRECTORY/osv-scalibr/<Ecosystem>/all.zip and
# only *.json members of it; bench/accuracy/osvprep writes those zips from
# ../shared/vulndata as `tollgate db import` reads it, and turns the OCI
# layouts into docker archives (`scan image --archive` reads only those).
# Both scanners scan the same docker archive.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
SHARED=${TOLLGATE_SHARED:-$(cd .. && pwd)/shared}
OSV_VERSION=${OSV_VERSION:-v2.6.0}
ROUNDS=${ROUNDS:-5}
DATE=$(date -u +%F)
OUT=${OUT:-bench/results/osv-scanner-$DATE.txt}
mkdir -p bench/results bench/.tools bin

OSV=${OSV_SCANNER:-bench/.tools/osv-scanner}
if [ ! -x "$OSV" ]; then
	GOTOOLCHAIN=go1.27.3 GOBIN="$PWD/bench/.tools" \
		go install "github.com/google/osv-scanner/v2/cmd/osv-scanner@$OSV_VERSION"
fi
go build -o bin/tollgate ./cmd/tollgate
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/osvprep" ./bench/accuracy/osvprep

: >"$OUT"
say() { echo "$*" | tee -a "$OUT"; }
say "# tollgate scan vs osv-scanner $OSV_VERSION (offline, same advisories) — $(date -u +%FT%TZ)"
say "machine: $(uname -a)"
say "nproc:   $(nproc)  load at start: $(cut -d' ' -f1-3 /proc/loadavg)  $(go version | cut -d' ' -f3-)"
say "osv-scanner: $("$OSV" --version 2>/dev/null | head -1)"
say

# The same advisories: tollgate imports the files, osv-scanner gets them as
# its offline cache.
bin/tollgate --log-level error --data-dir "$tmp/tg" db import "$SHARED/vulndata" >/dev/null
"$tmp/osvprep" db "$tmp/osvdb" "$SHARED/vulndata" +Debian +npm 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | tee -a "$OUT"
export OSV_SCANNER_LOCAL_DB_CACHE_DIRECTORY="$tmp/osvdb"
say

images=(go-static debian12-minbase debian12-apps debian12-node alpine-3.11.13 alpine-3.18.9)
src_of() {
	case $1 in
	go-static) echo "docker-archive:$SHARED/images/go-static.docker.tar" ;;
	debian12-*) echo "oci:$SHARED/images/debian12:$1" ;;
	alpine-*) echo "oci:$SHARED/images/alpine:$1" ;;
	esac
}
for im in "${images[@]}"; do
	"$tmp/osvprep" image "$(src_of "$im")" "$tmp/$im.tar"
done

tg() { bin/tollgate --log-level error --data-dir "$tmp/tg" scan --format json --progress=false "docker-archive:$tmp/$1.tar"; }
# --offline: no network (--offline-vulnerabilities, --no-resolve); --all-vulns:
# no hiding of "unimportant" or uncalled ones (tollgate hides neither).
osv() { "$OSV" scan image --archive --offline --all-vulns --format json "${@:2}" "$tmp/$1.tar"; }

say "## Packages and findings ((package, advisory record id) pairs) on each image's docker archive"
say "(ecosystem, name, version, id; OS packages by binary name, PyPI names PEP 503-normalised,"
say "Go versions without v/go; osv-scanner run with --all-packages for the package list)"
for im in "${images[@]}"; do
	tg "$im" >"$tmp/$im.tg.json" 2>"$tmp/$im.tg.err" || true
	rc=0
	osv "$im" --all-packages >"$tmp/$im.osv.json" 2>"$tmp/$im.osv.err" || rc=$?
	say
	say "### $im (osv-scanner exit $rc: 0 none found, 1 found, other: error)"
	if [ "$rc" -gt 1 ]; then
		sed 's/^/  osv-scanner: /' "$tmp/$im.osv.err" | tail -20 | tee -a "$OUT"
		continue
	fi
	"$tmp/osvprep" compare "$tmp/$im.tg.json" "$tmp/$im.osv.json" | tee -a "$OUT"
	grep -iE 'error|fail|not supported|could not' "$tmp/$im.osv.err" | sort -u | head -5 | sed 's/^/  osv-scanner stderr: /' | tee -a "$OUT" || true
done

say
say "## Time: tollgate scan ÷ osv-scanner scan image, same archive, interleaved, median of $ROUNDS (after one warm-up each)"
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for im in "${images[@]}"; do
	tg "$im" >/dev/null 2>&1 || true
	osv "$im" >/dev/null 2>&1 || true
	: >"$tmp/t.tg"
	: >"$tmp/t.osv"
	for r in $(seq "$ROUNDS"); do
		if [ $((r % 2)) -eq 1 ]; then
			secs tg "$im" >>"$tmp/t.tg"
			secs osv "$im" >>"$tmp/t.osv"
		else
			secs osv "$im" >>"$tmp/t.osv"
			secs tg "$im" >>"$tmp/t.tg"
		fi
	done
	a=$(median <"$tmp/t.tg")
	b=$(median <"$tmp/t.osv")
	say "$(printf '%-18s tollgate %6.2fs  osv-scanner %6.2fs  ratio %.2f  (rounds tollgate: %s; osv-scanner: %s)' \
		"$im" "$a" "$b" "$(echo "scale=4; $a / $b" | bc)" "$(paste -sd' ' "$tmp/t.tg" | sed 's/\([0-9]*\.[0-9][0-9]\)[0-9]*/\1/g')" "$(paste -sd' ' "$tmp/t.osv" | sed 's/\([0-9]*\.[0-9][0-9]\)[0-9]*/\1/g')")"
done
# Probe: the shared data hold no advisory for Debian 12, so the OS-package
# matching of the two scanners is not compared above. Two constructed
# records (not real advisories; written here, in the temp dir only) show the
# one difference class there: osv-scanner looks an OS package up under its
# source name but compares the *binary* version, tollgate the source version.
say
say "## Probe: Debian source-package matching (two constructed Debian:12 records, not real data), debian12-minbase"
mkdir -p "$tmp/probe"
cat >"$tmp/probe/PROBE-EPOCH.json" <<'JSON'
{"id":"PROBE-EPOCH","modified":"2026-11-30T00:00:00Z","summary":"constructed: util-linux fixed in 2.38.1-5+deb12u4",
 "affected":[{"package":{"ecosystem":"Debian:12","name":"util-linux"},
  "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.38.1-5+deb12u4"}]}]}]}
JSON
cat >"$tmp/probe/PROBE-BINNMU.json" <<'JSON'
{"id":"PROBE-BINNMU","modified":"2026-11-30T00:00:00Z","summary":"constructed: bzip2 last affected 1.0.8-5",
 "affected":[{"package":{"ecosystem":"Debian:12","name":"bzip2"},
  "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"last_affected":"1.0.8-5"}]}]}]}
JSON
bin/tollgate --log-level error --data-dir "$tmp/tgprobe" db import "$tmp/probe" >/dev/null 2>&1
"$tmp/osvprep" db "$tmp/osvprobe" "$tmp/probe" +npm +PyPI +Go >/dev/null 2>&1
bin/tollgate --log-level error --data-dir "$tmp/tgprobe" scan --format json --progress=false \
	"docker-archive:$tmp/debian12-minbase.tar" >"$tmp/probe.tg.json" 2>/dev/null || true
OSV_SCANNER_LOCAL_DB_CACHE_DIRECTORY="$tmp/osvprobe" "$OSV" scan image --archive --offline --all-vulns \
	--all-packages --format json "$tmp/debian12-minbase.tar" >"$tmp/probe.osv.json" 2>/dev/null || true
"$tmp/osvprep" compare "$tmp/probe.tg.json" "$tmp/probe.osv.json" | grep -v '^  packages' | tee -a "$OUT"

say
say "load at end: $(cut -d' ' -f1-3 /proc/loadavg)  date: $(date -u +%FT%TZ)"
