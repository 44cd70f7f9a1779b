// End to end over loopback: the real server binary on the built-in default model (random weights,
// real tokenizer), driven by clients nobody here wrote: the `openai` npm package and
// @grpc/grpc-js (tests/node/*.js). Also: promtool on a real scrape, and SIGTERM drain.
#include <signal.h>

#include <thread>

#include "absl/strings/match.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/node_clients.h"
#include "tests/server_process.h"

namespace tessera::testing {
namespace {

constexpr char kApiKey[] = "sk-tessera-test-key";

class ServingE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string keys =
        WriteTempFile("api_keys.txt", std::string("# test keys\n") + kApiKey + "\nsk-second-key\n");
    auto server = ServerProcess::Start(
        Runfile("tessera/server/tessera"),
        {"--grpc_host=127.0.0.1", "--grpc_port=0", "--http_host=127.0.0.1", "--http_port=0",
         "--api_key_file=" + keys, "--max_request_bytes=2097152", "--emit_vllm_metrics"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = new ServerProcess(*std::move(server));
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      auto code = server_->Terminate();
      EXPECT_TRUE(code.ok() && *code == 0);
      delete server_;
      server_ = nullptr;
    }
  }
  static void RunScript(const std::string& script) {
    ASSERT_NE(server_, nullptr);
    const NodeResult r = RunNodeScript(script, server_->ports(), kApiKey);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::printf("%s\n", r.output.c_str());
  }
  static ServerProcess* server_;
};

ServerProcess* ServingE2eTest::server_ = nullptr;

TEST_F(ServingE2eTest, OpenAiClientStreamsChatWithImageAndAudio) {
  RunScript("openai_client_test.js");
}

TEST_F(ServingE2eTest, GrpcClientGenerateConverseAbortHealthReflection) {
  RunScript("grpc_client_test.js");
}

TEST_F(ServingE2eTest, BadRequestsGetDocumentedErrorsAndServerKeepsServing) {
  RunScript("bad_requests_test.js");
}

TEST_F(ServingE2eTest, AgentsToolCallsStructuredOutputsReasoningAndChoices) {
  RunScript("agents_test.js");
}

TEST_F(ServingE2eTest, DisconnectedClientsLeaveNoRunningRequestOrBlock) {
  RunScript("cancel_test.js");
}

TEST_F(ServingE2eTest, ProbesAndMetricsScrapePassPromtool) {
  ASSERT_NE(server_, nullptr);
  const int port = server_->ports().http;
  EXPECT_EQ(HttpGet(port, "/health").status, 200);
  EXPECT_EQ(HttpGet(port, "/ready").status, 200);
  EXPECT_EQ(HttpGet(port, "/v1/models").status, 401);
  EXPECT_EQ(HttpGet(port, "/v1/models", kApiKey).status, 200);
  // A request so that histograms have samples.
  const HttpReply r =
      HttpPost(port, "/v1/chat/completions",
               R"({"messages":[{"role":"user","content":"hello"}],"max_tokens":3})", kApiKey);
  EXPECT_EQ(r.status, 200) << r.body;
  const HttpReply m = HttpGet(port, "/metrics");
  ASSERT_EQ(m.status, 200);
  for (const char* name : {"tessera:num_requests_running",
                           "tessera:num_requests_waiting",
                           "tessera:kv_cache_usage_perc",
                           "tessera:prefix_cache_queries_total",
                           "tessera:prefix_cache_hits_total",
                           "tessera:num_preemptions_total",
                           "tessera:prompt_tokens_total",
                           "tessera:generation_tokens_total",
                           "tessera:request_success_total",
                           "tessera:time_to_first_token_seconds_bucket",
                           "tessera:inter_token_latency_seconds_bucket",
                           "tessera:e2e_request_latency_seconds_bucket",
                           "tessera:request_queue_time_seconds_bucket",
                           "tessera:request_prefill_time_seconds_bucket",
                           "tessera:request_decode_time_seconds_bucket",
                           "tessera:media_images_total",
                           "tessera:media_audio_seconds_total",
                           "tessera:model_info",
                           "vllm:num_requests_waiting",
                           "vllm:kv_cache_usage_perc"}) {
    EXPECT_TRUE(absl::StrContains(m.body, name)) << name;
  }
  EXPECT_EQ(PromtoolProblems(m.body), "") << m.body;
}

// Its own server: SIGTERM flips readiness, refuses new work, lets the in-flight request finish,
// then exits 0.
TEST(ServingDrainTest, SigtermDrainsThenExitsZero) {
  auto server =
      ServerProcess::Start(Runfile("tessera/server/tessera"),
                           {"--grpc_host=127.0.0.1", "--grpc_port=0", "--http_host=127.0.0.1",
                            "--http_port=0", "--drain_grace_s=30"});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = server->ports().http;
  HttpReply inflight;
  std::thread t([&] {
    inflight = HttpPost(port, "/v1/chat/completions",
                        R"({"messages":[{"role":"user","content":"a long one"}],"max_tokens":64,
                            "ignore_eos":true})");
  });
  absl::SleepFor(absl::Milliseconds(150));
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server->ports().grpc), grpc::InsecureChannelCredentials()));
  auto check = [&health](grpc::health::v1::HealthCheckResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("tessera.v1.Inference");
    return health->Check(&ctx, req, out);
  };
  grpc::health::v1::HealthCheckResponse before, during;
  ASSERT_TRUE(check(&before).ok());
  EXPECT_EQ(before.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  kill(server->pid(), SIGTERM);
  absl::SleepFor(absl::Milliseconds(100));
  const grpc::Status during_status = check(&during);
  const HttpReply ready = HttpGet(port, "/ready");
  const HttpReply refused =
      HttpPost(port, "/v1/chat/completions", R"({"messages":[{"role":"user","content":"new"}]})");
  t.join();
  EXPECT_EQ(inflight.status, 200) << inflight.body;
  EXPECT_TRUE(absl::StrContains(inflight.body, R"("completion_tokens":64)")) << inflight.body;
  // Between SIGTERM and exit, readiness is off and new work is refused (if the in-flight request
  // already finished and the server exited, there is no answer at all, which is also fine).
  if (ready.status != 0) EXPECT_EQ(ready.status, 503) << ready.body;
  if (during_status.ok()) {
    EXPECT_EQ(during.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  if (refused.status != 0) {
    EXPECT_EQ(refused.status, 503) << refused.body;
    EXPECT_TRUE(absl::StrContains(refused.body, "shutting down")) << refused.body;
  }
  auto code = server->Terminate(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace tessera::testing
