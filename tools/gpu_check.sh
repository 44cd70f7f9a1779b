#!/usr/bin/env bash
# One GPU check for the CUDA kernels, in two halves:
#
#   tools/gpu_check.sh build   (here, where Bazel is; the default)
#       Builds //runtime/cuda:{kernels_gpu_test,device_gpu_test,kernels_bench} (the CUDA runtime is
#       linked statically; no gRPC), copies them with the few shared libraries they need that a GPU
#       host lacks (Abseil, GoogleTest; not glibc or libstdc++) into .gpu_check/ (ignored by git
#       through .git/info/exclude), and prints the device `run` call to make.
#   tools/gpu_check.sh run     (on the GPU host, from the repository root; needs no Bazel)
#       Runs the device self-test, the kernel tests, compute-sanitizer memcheck and racecheck on the
#       kernel tests, and the benchmark; every step under its own timeout so the whole stays under
#       ~8 minutes. Writes $OUT/gpu_check.md (summary + benchmark table) and the logs under $OUT.
#
# Environment: GPU_CHECK_OUTPUT_BASE (build) passes --output_base to Bazel, so a build here does not
# wait on another engineer's Bazel server.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
bundle=.gpu_check
targets=(//runtime/cuda:kernels_gpu_test //runtime/cuda:device_gpu_test //runtime/cuda:kernels_bench)

if [ "$mode" = build ]; then
  startup=()
  [ -n "${GPU_CHECK_OUTPUT_BASE:-}" ] && startup=(--output_base="$GPU_CHECK_OUTPUT_BASE")
  bazel "${startup[@]}" build "${targets[@]}" || exit 1
  bin=$(bazel "${startup[@]}" info bazel-bin 2>/dev/null) || exit 1
  rm -rf "$bundle" && mkdir -p "$bundle/lib" || exit 1
  grep -qx "/$bundle/" .git/info/exclude 2>/dev/null || echo "/$bundle/" >> .git/info/exclude
  for t in "${targets[@]}"; do
    name=${t##*:}
    cp "$bin/runtime/cuda/$name" "$bundle/$name" || exit 1
    chmod u+w "$bundle/$name"
    # Shared libraries outside the base system travel along (the GPU host has glibc and libstdc++,
    # not Abseil or GoogleTest).
    ldd "$bundle/$name" | awk '/=> \// {print $3}' \
      | grep -v -E '/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
      | while read -r lib; do cp -L -n "$lib" "$bundle/lib/"; done
  done
  du -sh "$bundle"
  cat <<'MSG'

Built. On a GPU session, make this one device call (about 8 minutes of GPU time at most):

  run(command="tools/gpu_check.sh run", carry=[".gpu_check"], timeout_s=560)

It writes gpu_check.md (summary and benchmark table) and the logs under $OUT.
MSG
  exit 0
fi

if [ "$mode" != run ]; then
  echo "usage: $0 [build|run]" >&2
  exit 2
fi

out="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
summary="$out/gpu_check.md"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
  /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1 || true)
# Racecheck tracks every shared-memory access: run it on the shapes that exercise every code path
# (split-warp merge, K/V tiles, splits) but not on the 32k-context cases.
race_filter='GpuTest.TinyFixtureShapes:GpuTest.PrefillGlobalHeadDim512:GpuTest.RopeKvWrite:GpuTest.RmsNorm:GpuTest.ResidualRmsNorm:GpuTest.Geglu'

{
  echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ) at $(git rev-parse --short HEAD 2>/dev/null)"
  echo
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  echo
  echo "| step | result | seconds |"
  echo "| --- | --- | --- |"
} > "$summary"

failures=0
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  local log="$out/${name}.log" t0=$SECONDS rc
  echo "== $name: $*"
  timeout "$limit" "$@" > "$log" 2>&1
  rc=$?
  local result="PASS"
  if [ $rc -eq 124 ]; then result="TIMEOUT after ${limit}s"; elif [ $rc -ne 0 ]; then result="FAIL (exit $rc)"; fi
  [ "$result" = PASS ] || failures=$((failures + 1))
  echo "| $name | $result | $((SECONDS - t0)) |" >> "$summary"
  tail -n 25 "$log"
  echo "== $name: $result in $((SECONDS - t0)) s"
}

step device_gpu_test 30 "$bundle/device_gpu_test"
step kernels_gpu_test 120 "$bundle/kernels_gpu_test"
if [ -n "$sanitizer" ]; then
  step memcheck 150 "$sanitizer" --tool memcheck --error-exitcode 1 --leak-check full "$bundle/kernels_gpu_test"
  step racecheck 90 "$sanitizer" --tool racecheck --error-exitcode 1 "$bundle/kernels_gpu_test" --gtest_filter="$race_filter"
else
  echo "| compute-sanitizer | not found | 0 |" >> "$summary"
fi
step kernels_bench 90 "$bundle/kernels_bench" --out="$out/bench.md"

{
  echo
  echo "Failed steps: $failures"
  if [ -f "$out/bench.md" ]; then
    echo
    echo "## Benchmark"
    echo
    cat "$out/bench.md"
  fi
} >> "$summary"
echo
cat "$summary"
[ "$failures" -eq 0 ]
