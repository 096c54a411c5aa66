#!/usr/bin/env bash
# Advisory import, single-image match and delta re-match benchmarks.
# Writes bench/results/match-<date>.txt. Run from the repository root
# (bench/run.sh calls it); IMAGES overrides the synthetic image counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)/benchmatch
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/match
"$bin" -shared "${TOLLGATE_SHARED:-../shared}" -images "${IMAGES:-10000,100000}" -out bench/results
