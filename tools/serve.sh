#!/usr/bin/env bash
# Sets up (tools/setup.sh) and starts the server on its built-in default model. Extra arguments go
# to the server, e.g. ./tools/serve.sh --grpc_port=50052.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
exec bazel-bin/server/tessera "$@"
