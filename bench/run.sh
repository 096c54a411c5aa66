#!/usr/bin/env bash
# make bench: every benchmark of tollgate, each measured side by side with
# its peer in the same run, results in bench/results/<name>-<date>.txt
# (each with the machine: uname -a, nproc, load, date) and a summary in
# bench/results/summary-<date>.txt. docs/performance.md explains them.
#
#   bash bench/run.sh               # everything (the 1 GiB proxy layer, the 5 GiB
#                                   # analysis layer, syft, re-match at 100,000 images)
#   QUICK=1 bash bench/run.sh       # minutes, not an hour: 256 MiB proxy layer, no
#                                   # 5 GiB layers (analysis, proxy-rss), no syft,
#                                   # re-match at 10,000 images
#   ONLY="proxy shared" bash bench/run.sh   # some of: proxy proxy-rss shared analysis match go osv
#
# Env: TOLLGATE_SHARED (default ../shared), PROXY_SIZE (bytes), IMAGES
# (re-match image counts), ROUNDS (shared-images rounds), NO_SYFT=1,
# NO_OSV_SCANNER=1 (skip the osv-scanner v2 comparison; QUICK skips it too).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
export TOLLGATE_SHARED="${TOLLGATE_SHARED:-$(cd .. && pwd)/shared}"
DATE=$(date -u +%F)
RES=bench/results
mkdir -p "$RES" bin
ONLY=${ONLY:-proxy proxy-rss shared analysis match go osv}
SUFFIX=""
if [ -n "${QUICK:-}" ]; then
	SUFFIX=-quick # never overwrite a full run's results
	PROXY_SIZE=${PROXY_SIZE:-268435456}
	IMAGES=${IMAGES:-10000}
	ROUNDS=${ROUNDS:-3}
	NO_SYFT=${NO_SYFT:-1}
	NO_OSV_SCANNER=${NO_OSV_SCANNER:-1}
else
	PROXY_SIZE=${PROXY_SIZE:-1073741824}
	IMAGES=${IMAGES:-10000,100000}
	ROUNDS=${ROUNDS:-5}
fi
export NO_SYFT

machine() {
	echo "machine: $(uname -a)"
	echo "nproc:   $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)  $(go version | cut -d' ' -f3-)"
	echo "date:    $(date -u +%FT%TZ)"
}
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
ran=()
step() { # name, command...
	local name=$1 start=$SECONDS
	shift
	echo "== $name"
	if "$@"; then
		echo "== $name: done in $((SECONDS - start))s"
		ran+=("$name")
	else
		echo "== $name: FAILED after $((SECONDS - start))s" | tee -a "$RES/summary-$DATE$SUFFIX.txt"
		failed=1
	fi
}
failed=0
: >"$RES/summary-$DATE$SUFFIX.txt"

make -s build

# 1. Proxy throughput: one large random layer pushed and pulled directly
#    against the embedded registry and through the proxy; ratio, peak RSS.
proxy() {
	local out="$RES/proxy-$DATE$SUFFIX.txt"
	bash bench/proxy/run.sh -size "$PROXY_SIZE" -out "$out"
	{ echo; machine; } >>"$out"
}
want proxy && step proxy proxy

# 1b. Peak RSS while proxying and scanning a ~5 GiB gzip tar layer (its image
#     pushed through the proxy with scanning on, pulled back, the scan waited
#     for and checked in the SBOM), beside the embedded registry's own peak.
#     Needs ~16 GiB free in $TMPDIR. Not under QUICK.
proxyrss() {
	local out="$RES/proxy-rss-$DATE.txt"
	bash bench/proxy/run.sh -gztar -size "${RSS_SIZE:-5368709120}" -out "$out"
	{ echo; machine; } >>"$out"
}
if want proxy-rss && [ -z "${QUICK:-}" ]; then step proxy-rss proxyrss; fi

# 2. Shared images through tollgate with scanning on ÷ direct, and the time
#    from each manifest PUT's answer to its scan being listed.
shared() {
	local out="$RES/shared-images-$DATE$SUFFIX.txt" off="$RES/shared-images-scan-off-$DATE$SUFFIX.txt"
	TOLLGATE_BENCH_ROUNDS=$ROUNDS TOLLGATE_BENCH_OUT="$PWD/$out" \
		go test -tags e2e -run '^$' -bench SharedImages -benchtime 1x -timeout 60m ./e2e/ >/dev/null
	# the same with scan.enabled: false, to separate the proxy's own cost
	TOLLGATE_BENCH_SCAN=off TOLLGATE_BENCH_ROUNDS=$ROUNDS TOLLGATE_BENCH_OUT="$PWD/$off" \
		go test -tags e2e -run '^$' -bench SharedImages -benchtime 1x -timeout 60m ./e2e/ >/dev/null
	cat "$out" "$off"
}
want shared && step shared shared

# 3. Analysis: Walk ÷ plain gunzip of the same layer (the floor), peak RSS
#    on a 5 GiB layer, tollgate scan ÷ syft on the shared images.
analysis() {
	local out="$RES/analysis-$DATE$SUFFIX.txt"
	if [ -z "${QUICK:-}" ]; then
		bash bench/analysis/run.sh
		{ machine; echo; cat bench/results/analysis.txt; } >"$out"
	else
		{
			machine
			echo "QUICK: no 5 GiB layer, no syft"
			echo
			echo "## Walk throughput ÷ plain klauspost gunzip (256 MiB synthetic layer, goal >= 0.8)"
			go test ./scan/ -run '^$' -bench 'Gunzip|WalkGzip' -benchtime 3x | tee /tmp/tollgate-bench-walk.txt | grep -E '^Benchmark'
			awk '/^BenchmarkGunzip/{g=$(NF-1)} /^BenchmarkWalkGzip/{w=$(NF-1)} END{printf "ratio %.2f\n", w/g}' /tmp/tollgate-bench-walk.txt
			echo
			echo "## tollgate scan of each shared image (wall seconds)"
			for src in "docker-archive:$TOLLGATE_SHARED/images/go-static.docker.tar" \
				"oci:$TOLLGATE_SHARED/images/debian12:debian12-node" \
				"oci:$TOLLGATE_SHARED/images/alpine:alpine-3.11.13"; do
				s=$(date +%s.%N)
				bin/tollgate scan --format json "$src" >/dev/null
				e=$(date +%s.%N)
				echo "$src tollgate $(echo "$e - $s" | bc)s"
			done
		} >"$out"
	fi
	cat "$out"
}
want analysis && step analysis analysis

# 4. Advisories: import of all of ../shared/vulndata, one image's match,
#    re-match after a 1 % delta across synthetic stored images.
match() {
	IMAGES=$IMAGES bash bench/match/run.sh
	local out="$RES/match-$DATE$SUFFIX.txt"
	[ -z "$SUFFIX" ] || mv "$RES/match-$DATE.txt" "$out"
	{ echo; machine; } >>"$out"
	cat "$out"
}
want match && step match match

# 5. go test benchmarks: proxy blob paths, lifecycle sweep/queue/observe,
#    the Badger queue, matching.
gobench() {
	local out="$RES/go-bench-$DATE$SUFFIX.txt"
	{
		machine
		echo
		go test -run '^$' -bench . -benchmem -benchtime 1s ./proxy/ ./index/ ./scan/match/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
		go test -run '^$' -bench 'QueueThroughput|ObservePull' -benchmem -benchtime 1s ./scan/lifecycle/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
		go test -run '^$' -bench 'Sweep100k' -benchmem -benchtime 1x ./scan/lifecycle/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
	} >"$out"
	cat "$out"
}
want go && step go gobench

# 6. Findings and time against osv-scanner v2, offline with the same
#    advisories, on every shared image (builds osv-scanner with go1.27.3).
osvscanner() {
	OUT="$RES/osv-scanner-$DATE$SUFFIX.txt" ROUNDS=$ROUNDS bash bench/accuracy/osv-scanner.sh
}
if want osv && [ -z "${NO_OSV_SCANNER:-}" ]; then step osv-scanner osvscanner; fi

# Summary: the ratio and goal lines of every result file of this run.
{
	echo "tollgate benchmarks, $(date -u +%FT%TZ)${QUICK:+ (QUICK)}: ${ran[*]:-none}"
	machine
	for n in proxy proxy-rss shared-images shared-images-scan-off analysis match osv-scanner; do
		f="$RES/$n-$DATE$SUFFIX.txt"
		[ -f "$f" ] || continue
		echo
		echo "--- $f"
		grep -Ei 'ratio|goal|rss|p95|push |pull |import|re-match|rematch|match |delta [0-9]' "$f" | grep -v '^machine' | head -30 || true
	done
	f="$RES/go-bench-$DATE$SUFFIX.txt"
	[ -f "$f" ] && { echo; echo "--- $f"; grep '^Benchmark' "$f" || true; }
} >>"$RES/summary-$DATE$SUFFIX.txt"
echo
cat "$RES/summary-$DATE$SUFFIX.txt"
exit $failed
