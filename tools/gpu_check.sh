#!/usr/bin/env bash
# One GPU check for the CUDA runtime, in two halves:
#
#   tools/gpu_check.sh build   (here, where Bazel is; the default)
#       Builds the GPU tests and benchmarks of //runtime/cuda (the CUDA runtime is linked
#       statically; no gRPC), copies them with the few shared libraries they need that a GPU host
#       lacks (Abseil, GoogleTest; not glibc or libstdc++, and not cuBLAS: libcublasLt is ~500 MB
#       and every CUDA host has it) into .gpu_check/ (ignored by git through .git/info/exclude),
#       and prints the device `run` call to make. A target
#       that fails to build is left out (and reported), so the others can still be checked.
#   tools/gpu_check.sh run     (on the GPU host, from the repository root; needs no Bazel)
#       Runs the device self-test, the kernel, GEMM, media, sampling, quantized-weight and
#       CUDA-runner tests (the GGUF one against llama.cpp's logits in testdata/gguf), the model
#       benchmark in bf16 and with Q4_K_M and Q8_0 weights, compute-sanitizer memcheck and
#       racecheck on the kernel tests, and the kernel benchmark; every
#       step under its own timeout and all of it within GPU_CHECK_BUDGET_S (default 540 s, under the
#       device tool's 600 s per call). Writes $OUT/gpu_check.md (summary + benchmark tables) and the
#       logs under $OUT.
#
# Environment: GPU_CHECK_OUTPUT_BASE (build) passes --output_base to Bazel, so a build here does not
# wait on another engineer's Bazel server. The tests read the golden fixture from testdata/ in the
# working tree the device tool copies (TESSERA_WORKSPACE_DIR, set by `run`).
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
bundle=.gpu_check
targets=(
  //runtime/cuda:device_gpu_test
  //runtime/cuda:kernels_gpu_test
  //runtime/cuda:gemm_gpu_test
  //runtime/cuda:media_gpu_test
  //runtime/cuda:sampling_gpu_test
  //runtime/cuda:quant_gpu_test
  //runtime/cuda:cuda_model_runner_gpu_test
  //runtime/cuda:cuda_model_runner_gguf_gpu_test
  //runtime/cuda:kernels_bench
  //runtime/cuda:model_bench
)

if [ "$mode" = build ]; then
  startup=()
  [ -n "${GPU_CHECK_OUTPUT_BASE:-}" ] && startup=(--output_base="$GPU_CHECK_OUTPUT_BASE")
  bin=$(bazel "${startup[@]}" info --dynamic_mode=off bazel-bin 2>/dev/null) || exit 1
  rm -rf "$bundle" && mkdir -p "$bundle/lib" || exit 1
  grep -qx "/$bundle/" .git/info/exclude 2>/dev/null || echo "/$bundle/" >> .git/info/exclude
  built=0
  missing=()
  for t in "${targets[@]}"; do
    name=${t##*:}
    # One target at a time: a stale binary of a target that no longer builds must not travel.
    # --dynamic_mode=off links tests statically too: a test linked against Bazel's per-library
    # .so files can miss a symbol that only a library needs (absl is linked --as-needed).
    if ! bazel "${startup[@]}" build --dynamic_mode=off "$t"; then
      echo "gpu_check: $t does not build; left out of the bundle" >&2
      missing+=("$name")
      continue
    fi
    cp "$bin/runtime/cuda/$name" "$bundle/$name" || exit 1
    chmod u+w "$bundle/$name"
    built=$((built + 1))
    # Shared libraries outside the base system travel along (the GPU host has glibc and libstdc++,
    # not Abseil or GoogleTest): ldd the binary where it was built, so that any $ORIGIN-relative
    # RUNPATH resolves. CUDA's own libraries stay: the run half finds them on the host.
    ldd "$bin/runtime/cuda/$name" | awk '/=> \// {print $3}' \
      | grep -v -E '/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
      | grep -v -E '/lib(cublas|cublasLt|cudart|cuda|nvidia-[^/]*|nvrtc|nvJitLink)\.so' \
      | while read -r lib; do cp -L -n "$lib" "$bundle/lib/"; done
  done
  [ "$built" -gt 0 ] || exit 1
  : > "$bundle/not_built.txt"
  [ "${#missing[@]}" -eq 0 ] || printf '%s\n' "${missing[@]}" > "$bundle/not_built.txt"
  du -ah "$bundle" | sort -h | tail -n 10  # The largest pieces, then the whole bundle.
  size_kib=$(du -sk "$bundle" | cut -f1)
  if [ "$size_kib" -gt $((60 * 1024)) ]; then
    echo "gpu_check: the bundle is $((size_kib / 1024)) MiB, over the 60 MiB budget (the device" \
      "tool carries at most 64 MiB); strip debug info or drop a target" >&2
    exit 1
  fi
  [ "${#missing[@]}" -eq 0 ] || echo "gpu_check: NOT BUILT (left out): ${missing[*]}" >&2
  cat <<'MSG'

Built. On a GPU session, make this one device call (about 9 minutes of GPU time at most):

  run(command="tools/gpu_check.sh run", carry=[".gpu_check"], timeout_s=590)

It writes gpu_check.md (summary and benchmark tables) and the logs under $OUT.
MSG
  exit 0
fi

if [ "$mode" != run ]; then
  echo "usage: $0 [build|run]" >&2
  exit 2
fi

out="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$out"
budget_s="${GPU_CHECK_BUDGET_S:-540}"
summary="$out/gpu_check.md"

# cuBLASLt (libcublasLt.so.13) comes from the host: the toolkit's lib64, or a pip-installed
# nvidia-cublas wheel (python site-packages nvidia/cublas/lib) as a fallback.
cublas_dirs=(/usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
if command -v python3 > /dev/null; then
  py_dir=$(python3 -c 'import os, nvidia.cublas as m; print(os.path.join(list(m.__path__)[0], "lib"))' \
    2>/dev/null || true)
  [ -n "$py_dir" ] && cublas_dirs+=("$py_dir")
fi
# CUDA 13 wheels put every library in nvidia/cu13/lib; any Python environment's site-packages.
if command -v python3 > /dev/null; then
  while read -r sp; do
    cublas_dirs+=("$sp/nvidia/cu13/lib" "$sp/nvidia/cublas/lib")
  done < <(python3 -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
fi
for d in /opt/*/.venv/lib/python3*/site-packages /opt/*/lib/python3*/site-packages; do
  cublas_dirs+=("$d/nvidia/cu13/lib" "$d/nvidia/cublas/lib")
done
# Last resort: wherever the loader cache knows the library from.
ld_dir=$(ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 / {print $NF; exit}')
[ -n "$ld_dir" ] && cublas_dirs+=("$(dirname "$ld_dir")")
cublas_dirs+=(/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib
  /usr/lib/python3*/dist-packages/nvidia/cublas/lib /usr/local/lib/python3*/site-packages/nvidia/cublas/lib
  "$HOME"/.local/lib/python3*/site-packages/nvidia/cublas/lib /opt/conda/lib/python3*/site-packages/nvidia/cublas/lib)
libpath="$PWD/$bundle/lib"
for d in "${cublas_dirs[@]}"; do
  [ -d "$d" ] && libpath="$libpath:$d"
done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TESSERA_WORKSPACE_DIR="$PWD"  # testdata/ (the golden fixture) without Bazel runfiles.

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
} > "$summary"

cublas_ok=1
if [ -x "$bundle/gemm_gpu_test" ]; then
  if ldd "$bundle/gemm_gpu_test" | grep -q 'libcublasLt.so.13 => not found'; then
    cublas_ok=0
    msg="libcublasLt.so.13 NOT FOUND on this host (searched /usr/local/cuda/lib64 and pip nvidia/cublas/lib); the GEMM test, the CUDA runner test and model_bench cannot start"
  else
    msg="cuBLASLt: $(ldd "$bundle/gemm_gpu_test" | awk '/libcublasLt.so.13/ {print $3}')"
  fi
  echo "$msg"
  echo "$msg" >> "$summary"
  echo >> "$summary"
fi
if [ -s "$bundle/not_built.txt" ]; then
  echo "Not built (left out of the bundle): $(tr '\n' ' ' < "$bundle/not_built.txt")" >> "$summary"
  echo >> "$summary"
fi
{
  echo "| step | result | seconds |"
  echo "| --- | --- | --- |"
} >> "$summary"

failures=0
t_start=$SECONDS
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  local log="$out/${name}.log" t0=$SECONDS rc left
  left=$((budget_s - (SECONDS - t_start)))
  if [ ! -x "$1" ] && [ "${1#"$bundle"/}" != "$1" ]; then
    echo "| $name | NOT BUILT | 0 |" >> "$summary"
    failures=$((failures + 1))
    return
  fi
  if [ "$left" -lt 10 ]; then
    echo "| $name | SKIPPED (the ${budget_s} s budget is spent) | 0 |" >> "$summary"
    failures=$((failures + 1))
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name: $* (limit ${limit} s)"
  timeout -k 5 "$limit" "$@" > "$log" 2>&1
  rc=$?
  local result="PASS"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then result="TIMEOUT after ${limit}s"; elif [ $rc -ne 0 ]; then result="FAIL (exit $rc)"; fi
  [ "$result" = PASS ] || failures=$((failures + 1))
  echo "| $name | $result | $((SECONDS - t0)) |" >> "$summary"
  tail -n 25 "$log"
  echo "== $name: $result in $((SECONDS - t0)) s"
}

# Most telling first: correctness, then the new end-to-end benchmark, then the sanitizers and the
# kernel benchmark (the budget clips whatever comes last).
step device_gpu_test 30 "$bundle/device_gpu_test"
step kernels_gpu_test 120 "$bundle/kernels_gpu_test"
step gemm_gpu_test 60 "$bundle/gemm_gpu_test"
step media_gpu_test 45 "$bundle/media_gpu_test"
step sampling_gpu_test 45 "$bundle/sampling_gpu_test"
step quant_gpu_test 45 "$bundle/quant_gpu_test"
step cuda_model_runner_gpu_test 60 "$bundle/cuda_model_runner_gpu_test"
step cuda_model_runner_gguf_gpu_test 60 "$bundle/cuda_model_runner_gguf_gpu_test"
step model_bench 150 "$bundle/model_bench" --out="$out/model_bench.md"
step model_bench_q4_k_m 75 "$bundle/model_bench" --weights=q4_k_m --out="$out/model_bench_q4_k_m.md"
step model_bench_q8_0 75 "$bundle/model_bench" --weights=q8_0 --out="$out/model_bench_q8_0.md"
if [ -n "$sanitizer" ]; then
  step memcheck 150 "$sanitizer" --tool memcheck --error-exitcode 1 --leak-check full "$bundle/kernels_gpu_test"
  step racecheck 90 "$sanitizer" --tool racecheck --error-exitcode 1 "$bundle/kernels_gpu_test" --gtest_filter="$race_filter"
  step memcheck_quant 60 "$sanitizer" --tool memcheck --error-exitcode 1 "$bundle/quant_gpu_test"
else
  echo "| compute-sanitizer | not found | 0 |" >> "$summary"
fi
step kernels_bench 90 "$bundle/kernels_bench" --out="$out/bench.md"

{
  echo
  echo "Failed steps: $failures; total $((SECONDS - t_start)) s"
  [ "$cublas_ok" -eq 1 ] || echo "(libcublasLt.so.13 was not found: see above)"
  for mb in model_bench model_bench_q4_k_m model_bench_q8_0; do
    if [ -f "$out/$mb.md" ]; then
      echo
      echo "## Model benchmark ($mb)"
      echo
      cat "$out/$mb.md"
    fi
  done
  if [ -f "$out/bench.md" ]; then
    echo
    echo "## Kernel benchmark (kernels_bench)"
    echo
    cat "$out/bench.md"
  fi
} >> "$summary"
echo
cat "$summary"
[ "$failures" -eq 0 ]
