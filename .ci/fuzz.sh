#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time (FUZZTIME, default
# 20s) from its committed seed corpus (testdata/fuzz/<Target>); FUZZ_PKGS
# narrows it to some packages (default ./...). A crash leaves
# the failing input under testdata/fuzz/ — commit it as a regression test.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" at the -fuzztime boundary without having found anything
# (golang/go#75804, fixed in Go 1.27). Such a run wrote no failing input, so
# it is retried; only a run that writes a failing input, or fails for any
# other reason, fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-20s}"
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# new_inputs DIR TARGET: untracked files under DIR/testdata/fuzz/TARGET.
new_inputs() {
  git ls-files --others --exclude-standard -- "$1/testdata/fuzz/$2" 2>/dev/null || true
}

while IFS= read -r pkg; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    before=$(new_inputs "$dir" "$target")
    for attempt in 1 2 3; do
      echo "== fuzz $pkg $target ($fuzztime, attempt $attempt)"
      if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
        break
      fi
      after=$(new_inputs "$dir" "$target")
      if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$log" \
        && [ "$(grep -c -- '--- FAIL' "$log")" -eq 1 ] && [ "$attempt" -lt 3 ]; then
        echo "-- $target: 'context deadline exceeded' with no failing input (golang/go#75804); retrying"
        continue
      fi
      echo "FUZZ FAILURE: $pkg $target"
      [ "$before" = "$after" ] || echo "failing input(s): $after"
      fail=1
      break
    done
  done
done < <(go list ${FUZZ_PKGS:-./...})
exit $fail
