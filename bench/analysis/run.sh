#!/usr/bin/env bash
# Analysis benchmarks (issue 3): Walk throughput vs plain gunzip, peak RSS on
# a 5 GiB streamed layer, and whole-image inventory time vs syft on the
# shared images. Results go to bench/results/analysis.txt.
#
#   bash bench/analysis/run.sh            # everything; installs syft if absent
#   NO_SYFT=1 bash bench/analysis/run.sh  # skip the syft comparison
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
SHARED=${TOLLGATE_SHARED:-$(cd .. && pwd)/shared}
OUT=bench/results/analysis.txt
mkdir -p bench/results
: >"$OUT"
say() { echo "$*" | tee -a "$OUT"; }

say "# tollgate analysis benchmarks — $(date -u +%FT%TZ) — $(nproc) cores"
say
say "## Walk throughput ÷ plain klauspost gunzip (256 MiB synthetic layer, goal >= 0.8)"
go test ./scan/ -run '^$' -bench 'Gunzip|WalkGzip' -benchtime 3x | tee /tmp/tollgate-bench-walk.txt | grep -E '^Benchmark' | tee -a "$OUT"
awk '/^BenchmarkGunzip/{g=$(NF-1)} /^BenchmarkWalkGzip/{w=$(NF-1)} END{printf "ratio %.2f\n", w/g}' /tmp/tollgate-bench-walk.txt | tee -a "$OUT"
say
say "## Peak RSS streaming a 5 GiB layer with a 1 GiB executable (goal < 300 MB)"
go test ./scan/ -run '^$' -bench 'WalkHugeLayer' -benchtime 1x | grep -E '^Benchmark' | tee -a "$OUT"
say
say "## Whole-image inventory time: tollgate scan vs syft (goal <= 0.2)"
go build -o bin/tollgate ./cmd/tollgate
SYFT=$(command -v syft || true)
if [ -z "$SYFT" ] && [ -z "${NO_SYFT:-}" ]; then
	go install github.com/anchore/syft/cmd/syft@v1.57.1 && SYFT=$(command -v syft || true)
fi
# syft's oci-dir: wants a layout holding one image: give each tag its own
# layout in a temp dir (index.json with that entry, blobs symlinked).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
onelayout() { # DIR TAG -> path of a one-image layout
	local d="$tmp/$(basename "$1")-$2"
	mkdir -p "$d"
	ln -sfn "$1/blobs" "$d/blobs"
	cp "$1/oci-layout" "$d/oci-layout"
	python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); i["manifests"]=[m for m in i["manifests"] if m.get("annotations",{}).get("org.opencontainers.image.ref.name")==sys.argv[2]]; json.dump(i,open(sys.argv[3],"w"))' "$1/index.json" "$2" "$d/index.json"
	echo "$d"
}
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
for src in "docker-archive:$SHARED/images/go-static.docker.tar" \
	"oci:$SHARED/images/debian12:debian12-minbase" \
	"oci:$SHARED/images/debian12:debian12-apps" \
	"oci:$SHARED/images/debian12:debian12-node" \
	"oci:$SHARED/images/alpine:alpine-3.11.13"; do
	bin/tollgate scan --format json "$src" >/dev/null 2>&1 || true
	t=$(secs bin/tollgate scan --format json "$src")
	line="$src tollgate ${t}s"
	if [ -n "$SYFT" ]; then
		ssrc="$src"
		if [[ "$src" == oci:* ]]; then
			p=${src#oci:}
			ssrc="oci-dir:$(onelayout "${p%:*}" "${p##*:}")"
		fi
		"$SYFT" scan -q -o syft-json "$ssrc" >/dev/null 2>&1 || true # warm syft's own caches
		s=$(secs "$SYFT" scan -q -o syft-json "$ssrc")
		line="$line syft ${s}s ratio $(echo "scale=3; $t / $s" | bc)"
		"$SYFT" scan -q -o syft-json "$ssrc" >"$tmp/syft.json" 2>/dev/null || true
		bin/tollgate scan --format json "$src" >"$tmp/tg.json" 2>/dev/null
		python3 - "$tmp/syft.json" "$tmp/tg.json" <<'PY' | tee -a "$OUT" || true
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    print("  syft output unreadable:", e); sys.exit(0)
t = json.load(open(sys.argv[2]))
def norm(v):  # Go: syft writes v1.6.3 / go1.21.0; OSV and tollgate 1.6.3 / 1.21.0
    if v.startswith("go1"):
        return v[2:]
    if v.startswith("v") and v[1:2].isdigit():
        return v[1:]
    return v
sp = {(a["name"], norm(a["version"])) for a in s.get("artifacts", [])}
tp = {(p["name"], p["version"]) for im in t["images"] for p in im["packages"]}
print(f"  packages: tollgate {len(tp)}, syft {len(sp)}, both {len(sp & tp)}")
for n, v in sorted(sp - tp)[:40]:
    print(f"  only syft: {n} {v}")
for n, v in sorted(tp - sp)[:40]:
    print(f"  only tollgate: {n} {v}")
PY
	fi
	say "$line"
done
