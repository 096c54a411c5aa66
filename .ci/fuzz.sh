#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time (FUZZTIME, default
# 20s) from its committed seed corpus (testdata/fuzz/<Target>). A crash leaves
# the failing input under testdata/fuzz/ — commit it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-20s}"
fail=0
while IFS= read -r pkg; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "== fuzz $pkg $target ($fuzztime)"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"; then
      echo "FUZZ FAILURE: $pkg $target"; fail=1
    fi
  done
done < <(go list ./... )
exit $fail
