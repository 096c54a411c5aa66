#!/usr/bin/env bash
# OCI distribution-spec conformance suite, run THROUGH the tollgate proxy
# against its embedded registry (pull, push, content discovery, content
# management). Judged by the suite's exit code and results/junit.xml (a
# failing run prints no "--- FAIL" line). sha512 content is disabled:
# distribution v3.1.2 cannot store it (see docs/conformance.md).
#
# Usage: bench/conformance.sh [results-dir]   (make conformance builds bin/tollgate first)
# Env: TOLLGATE_BIN (default bin/tollgate), CONFORMANCE_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${TOLLGATE_BIN:-$ROOT/bin/tollgate}
VERSION=${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}
MOD=github.com/opencontainers/distribution-spec/conformance
RESULTS=${1:-$ROOT/bin/conformance-results}

[ -x "$BIN" ] || { echo "conformance: $BIN missing; run make build" >&2; exit 2; }
WORK=$(mktemp -d)
PID=
cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# Build the suite from a writable copy of the module source (the module
# cache is read-only, and the suite is a main package with its own go.mod).
DIR=$(cd "$WORK" && go mod download -json "$MOD@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$DIR" ] || { echo "conformance: cannot download $MOD@$VERSION" >&2; exit 2; }
cp -r "$DIR" "$WORK/src"
chmod -R u+w "$WORK/src"
(cd "$WORK/src" && GOFLAGS=-mod=mod go build -o "$WORK/conformance" .)

# Start tollgate on free loopback ports; read the bound address from its log.
"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
	--log-level info >"$WORK/tollgate.log" 2>&1 &
PID=$!
ADDR=
for _ in $(seq 1 200); do
	ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*"message":"registry listening".*/\1/p' "$WORK/tollgate.log" | head -1)
	[ -n "$ADDR" ] && break
	kill -0 "$PID" 2>/dev/null || { cat "$WORK/tollgate.log" >&2; exit 2; }
	sleep 0.1
done
[ -n "$ADDR" ] || { echo "conformance: tollgate did not start" >&2; cat "$WORK/tollgate.log" >&2; exit 2; }
echo "conformance: tollgate proxy at $ADDR (embedded registry), suite $MOD@$VERSION"

mkdir -p "$RESULTS"
set +e
(
	cd "$WORK"
	export OCI_REGISTRY="$ADDR" OCI_TLS=disabled OCI_RESULTS_DIR="$RESULTS" OCI_LOG=warn
	export OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2
	export OCI_API_PULL=true OCI_API_PUSH=true
	export OCI_API_TAGS_LIST=true OCI_API_REFERRER=true
	export OCI_API_BLOBS_DELETE=true OCI_API_MANIFESTS_DELETE=true OCI_API_TAGS_DELETE=true
	export OCI_API_BLOBS_UPLOAD_CANCEL=true
	export OCI_API_BLOBS_DIGEST_HEADER=true OCI_API_MANIFESTS_DIGEST_HEADER=true
	export OCI_DATA_SHA512=false
	"$WORK/conformance"
)
RC=$?
set -e

# Summarise junit.xml: tests, failures, errors, skipped.
J="$RESULTS/junit.xml"
if [ -f "$J" ]; then
	echo "conformance: junit: $(grep -o '<testsuites[^>]*>' "$J" | head -1)"
	echo "conformance: testcases passed=$(grep -o 'status="passed"' "$J" | wc -l) failure=$(grep -o 'status="failure"' "$J" | wc -l) error=$(grep -o 'status="error"' "$J" | wc -l) skipped=$(grep -o 'status="skipped"' "$J" | wc -l)"
else
	echo "conformance: no junit.xml written" >&2
	[ $RC -ne 0 ] || RC=1
fi
grep -c '"status":5' "$WORK/tollgate.log" >/dev/null 2>&1 && \
	echo "conformance: proxy answered $(grep -c '"status":5' "$WORK/tollgate.log") 5xx responses"
cp "$WORK/tollgate.log" "$RESULTS/tollgate.log"
if [ $RC -ne 0 ]; then
	echo "conformance: FAILED (exit $RC); see $RESULTS/report.html and $RESULTS/tollgate.log" >&2
	exit $RC
fi
echo "conformance: PASSED"
