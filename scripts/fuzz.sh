#!/usr/bin/env bash
# Runs every Go native fuzz target of the module for FUZZTIME each (default
# 1m): each parser of untrusted bytes that is the project's own has one.
# Findings are written by `go test` under the package's testdata/fuzz/ and
# fail this script.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-1m}"
targets=$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . \
  | grep -v -e '^./tools/' -e '^./web/' -e '/node_modules/' | sort)
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 1; }
printf '| package | target | time | result |\n|---|---|---|---|\n'
status=0
for file in $targets; do
  pkg="./$(dirname "${file#./}")"
  for name in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //'); do
    log=$(mktemp)
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
      result=ok
    else
      result=FAIL; status=1
    fi
    printf '| %s | %s | %s | %s |\n' "$pkg" "$name" "$FUZZTIME" "$result"
    if [ "$result" = FAIL ]; then sed 's/^/    /' "$log" | tail -40 >&2; fi
    rm -f "$log"
  done
done
exit $status
