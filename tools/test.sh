#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs the whole test suite: every Bazel test except those tagged gpu.
# Prints a closing "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh || exit 1

log=$(mktemp)
bazel test --config=ci --test_summary=short //... 2>&1 | tee "$log" \
  | grep -v -E '^(Loading|Analyzing|\[[0-9,]+ / [0-9,]+\])'
rc=${PIPESTATUS[0]}
passed=$(grep -c -E '^//.* PASSED in' "$log")
failed=$(grep -c -E '^//.* (FAILED|TIMEOUT|FLAKY|INCOMPLETE|REMOTE FAILURE|FAILED TO BUILD|NO STATUS)' "$log")
skipped=$(grep -c -E '^//.* SKIPPED' "$log")
rm -f "$log"
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # a build failure counts as one
echo
if [ "$skipped" -gt 0 ]; then echo "skipped (they need the CUDA toolkit, absent here): $skipped"; fi
echo "tests: $passed passed, $failed failed"
exit "$rc"
