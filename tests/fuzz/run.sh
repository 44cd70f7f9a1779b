#!/usr/bin/env bash
# Builds libFuzzer targets with clang-14 (-fsanitize=fuzzer,address,undefined) outside Bazel and runs
# each for a bounded time.
#
#   tests/fuzz/run.sh [-t SECONDS] [TARGET...]      default: every target, 60 s each
#
# TARGET is the NAME of tests/fuzz/NAME_fuzz.cc. Seeds and kept inputs live in
# tests/fuzz/corpus/NAME/ (committed); the growing work corpus and the binaries in .cache/fuzz/.
# A crashing input is written to tests/fuzz/corpus/NAME/crash-<sha1>: fix the bug, keep the file;
# each target's regression test replays that folder under `bazel test`.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=60
while getopts "t:" opt; do
  case "$opt" in
    t) seconds="$OPTARG" ;;
    *) echo "usage: $0 [-t SECONDS] [TARGET...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

# Sources and libraries of each target, beside its NAME_fuzz.cc.
target_sources() {
  case "$1" in
    tokenizer) echo "runtime/tokenizer.cc" ;;
    image) echo "runtime/image.cc runtime/media_hash.cc" ;;
    wav) echo "runtime/audio.cc runtime/media_hash.cc" ;;
    gguf) echo "runtime/model/gguf.cc runtime/model/gguf_model.cc runtime/model/gguf_tokenizer.cc \
runtime/model/gguf_writer.cc runtime/model/model_config.cc runtime/model/weights.cc \
runtime/model/safetensors.cc runtime/quant/ggml_type.cc runtime/quant/dequantize.cc \
runtime/prompt/tokenizer.cc" ;;
    *) echo "run.sh: unknown fuzz target $1" >&2; return 1 ;;
  esac
}
target_libs() {
  case "$1" in
    tokenizer) grep -o '"-labsl_[a-z0-9_]*"' third_party/BUILD | tr -d '"' | sort -u | tr '\n' ' ' ;;
    image) echo "$(target_libs tokenizer) -lpng16 -ljpeg -lxxhash" ;;
    wav) echo "$(target_libs tokenizer) -lsoxr -lxxhash" ;;
    gguf) target_libs tokenizer ;;
  esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$f" _fuzz.cc)"); done
fi

CXX=${CXX:-clang++-14}
status=0
for t in "${targets[@]}"; do
  srcs=$(target_sources "$t")
  out=.cache/fuzz/$t
  mkdir -p "$out/corpus" "tests/fuzz/corpus/$t"
  echo "fuzz: building $t"
  # shellcheck disable=SC2086
  "$CXX" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I. "tests/fuzz/${t}_fuzz.cc" $srcs -o "$out/${t}_fuzz" \
    -Wl,--as-needed $(target_libs "$t") -lpthread
  echo "fuzz: running $t for ${seconds}s"
  if ! "$out/${t}_fuzz" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
      -artifact_prefix="tests/fuzz/corpus/$t/" -print_final_stats=1 \
      "$out/corpus" "tests/fuzz/corpus/$t" 2>"$out/log.txt"; then
    status=1
    tail -40 "$out/log.txt"
    echo "fuzz: $t FAILED; the input is in tests/fuzz/corpus/$t/ (crash-*, timeout-*, leak-*, oom-*)" >&2
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$out/log.txt" | tail -3
    echo "fuzz: $t passed"
  fi
done
exit $status
