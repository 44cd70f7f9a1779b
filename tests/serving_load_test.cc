// Bounded load on the real server (tiny default model): 200 concurrent streaming chat completions
// mixing text, image and audio (tests/node/load.js). Every stream must complete without error and
// the engine must return to idle (no running request, no KV block held).
//
// The suite runs a short version (one request per client, 4 tokens each); the minute-long run is
// `bazel test --test_tag_filters=manual //tests:serving_load_manual_test`. The summary (p50/p99
// TTFT and inter-token latency from /metrics) is printed.
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/node_clients.h"
#include "tests/server_process.h"

namespace tessera::testing {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  int out = fallback;
  if (v != nullptr && absl::SimpleAtoi(v, &out)) return out;
  return fallback;
}

TEST(ServingLoadTest, ConcurrentMixedStreamsAllCompleteAndKvReturnsToIdle) {
  auto server =
      ServerProcess::Start(Runfile("tessera/server/tessera"),
                           {"--grpc_host=127.0.0.1", "--grpc_port=0", "--http_host=127.0.0.1",
                            "--http_port=0", "--log_level=warning"});
  ASSERT_TRUE(server.ok()) << server.status();
  const NodeResult r =
      RunNodeScript("load.js", server->ports(), "",
                    {"--concurrency=" + std::to_string(EnvInt("LOAD_CONCURRENCY", 200)),
                     "--duration_s=" + std::to_string(EnvInt("LOAD_DURATION_S", 0)),
                     "--max_tokens=" + std::to_string(EnvInt("LOAD_MAX_TOKENS", 4))});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::printf("%s\n", r.output.c_str());
  auto code = server->Terminate();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace tessera::testing
