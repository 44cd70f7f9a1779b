// The HTTP edge against a fake backend: routes, readiness, auth, the error table, streaming,
// disconnect-aborts and drain.
#include "server/http_server.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/fake_backend.h"

namespace tessera::server {
namespace {

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(ApiKeys keys = ApiKeys(), int64_t max_bytes = 1 << 20,
                   WorkPoolOptions pool = {}) {
    metrics_ = std::make_unique<ServingMetrics>(MetricsOptions{});
    backend_.metrics = metrics_.get();
    state_ = std::make_unique<ServingState>(&backend_, metrics_.get(), std::move(keys), true, pool);
    HttpServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_request_bytes = max_bytes;
    options.threads = 16;
    options.heartbeat = absl::Milliseconds(50);
    options.openai.model_id = "fake";
    auto server = HttpServer::Start(options, state_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  FakeBackend backend_;
  std::unique_ptr<ServingMetrics> metrics_;
  std::unique_ptr<ServingState> state_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

constexpr char kChat[] =
    R"({"model":"fake","messages":[{"role":"user","content":"one two three four"}]})";

TEST_F(HttpServerTest, ReadinessFollowsStateAndHealthIsLive) {
  StartServer();
  EXPECT_EQ(client_->Get("/health")->status, 200);
  EXPECT_EQ(client_->Get("/ready")->status, 503);
  auto refused = client_->Post("/v1/chat/completions", kChat, "application/json");
  EXPECT_EQ(refused->status, 503);
  EXPECT_TRUE(absl::StrContains(refused->body, "still loading"));
  state_->SetReady(true);
  EXPECT_EQ(client_->Get("/ready")->status, 200);
  auto models = client_->Get("/v1/models");
  ASSERT_EQ(models->status, 200);
  EXPECT_TRUE(absl::StrContains(models->body, R"("id":"fake")"));
}

TEST_F(HttpServerTest, ChatNonStreamingAndStreaming) {
  StartServer();
  state_->SetReady(true);
  auto res = client_->Post("/v1/chat/completions", kChat, "application/json");
  ASSERT_EQ(res->status, 200) << res->body;
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "one two three four");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);

  std::string sse;
  httplib::Headers headers;
  auto stream = client_->Post("/v1/chat/completions",
                              R"({"messages":[{"role":"user","content":"a b c"}],"stream":true,
          "stream_options":{"include_usage":true},"max_tokens":2})",
                              "application/json");
  ASSERT_EQ(stream->status, 200);
  EXPECT_EQ(stream->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_TRUE(absl::StrContains(stream->body, R"("content":"a")"));
  EXPECT_TRUE(absl::StrContains(stream->body, R"("finish_reason":"length")"));
  EXPECT_TRUE(absl::StrContains(stream->body, R"("completion_tokens":2)"));
  EXPECT_TRUE(absl::EndsWith(stream->body, "data: [DONE]\n\n"));

  const std::string metrics = client_->Get("/metrics")->body;
  EXPECT_TRUE(
      absl::StrContains(metrics, "tessera:generation_tokens_total{model_name=\"default\"} 6"))
      << metrics;
}

TEST_F(HttpServerTest, ErrorTableKeepsServing) {
  StartServer(ApiKeys(), /*max_bytes=*/4096);
  state_->SetReady(true);
  struct Case {
    std::string path, body;
    int status;
    const char* message_part;
  };
  const Case cases[] = {
      {"/v1/chat/completions", "{oops", 400, "not valid JSON"},
      {"/v1/chat/completions", R"({"messages":"hi"})", 400, "non-empty array"},
      {"/v1/chat/completions", R"({"messages":[{"role":"robot","content":"x"}]})", 400,
       "role 'robot' is unknown"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,%%%"}}]}]})",
       400, "not valid base64"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]})",
       400, "not a PNG or JPEG"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})",
       400, "'max_tokens' is 0"},
      {"/v1/chat/completions", std::string(5000, ' '), 413, "--max_request_bytes (4096 bytes)"},
      {"/v1/completions", R"({"prompt":7})", 400, "'prompt' must be a string"},
      {"/v1/nothing", "{}", 404, "no route"},
  };
  for (const Case& c : cases) {
    auto res = client_->Post(c.path, c.body, "application/json");
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, c.status) << c.body << " -> " << res->body;
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << res->body;
    EXPECT_TRUE(j["error"]["message"].is_string()) << res->body;
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("param") &&
                j["error"].contains("code"))
        << res->body;
    EXPECT_TRUE(absl::StrContains(res->body, c.message_part)) << c.body << " -> " << res->body;
  }
  EXPECT_EQ(client_->Post("/v1/chat/completions", kChat, "application/json")->status, 200);
  backend_.max_live = 0;
  auto full = client_->Post("/v1/chat/completions", kChat, "application/json");
  EXPECT_EQ(full->status, 429);
  EXPECT_TRUE(absl::StrContains(full->body, "queue is full"));
}

TEST_F(HttpServerTest, ApiKeysGuardTheApiButNotTheProbes) {
  StartServer(ApiKeys::FromKeys({"sk-good"}));
  state_->SetReady(true);
  EXPECT_EQ(client_->Get("/health")->status, 200);
  EXPECT_EQ(client_->Get("/metrics")->status, 200);
  auto none = client_->Post("/v1/chat/completions", kChat, "application/json");
  EXPECT_EQ(none->status, 401);
  EXPECT_TRUE(absl::StrContains(none->body, "missing API key"));
  auto wrong = client_->Post("/v1/chat/completions", {{"Authorization", "Bearer sk-bad"}}, kChat,
                             "application/json");
  EXPECT_EQ(wrong->status, 401);
  EXPECT_TRUE(absl::StrContains(wrong->body, "invalid API key"));
  EXPECT_EQ(client_->Get("/v1/models")->status, 401);
  auto ok = client_->Post("/v1/chat/completions", {{"Authorization", "Bearer sk-good"}}, kChat,
                          "application/json");
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, ClientDisconnectMidStreamStopsTheRequest) {
  backend_.token_delay = absl::Milliseconds(20);
  StartServer();
  state_->SetReady(true);
  std::string words;
  for (int i = 0; i < 500; ++i) words += "w ";
  const std::string body =
      R"({"messages":[{"role":"user","content":")" + words + R"("}],"stream":true})";
  int chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  auto res = client_->send(req);
  EXPECT_GE(chunks, 3);
  EXPECT_EQ(backend_.live(), 1);  // Still generating its 500 words when the client left.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (backend_.live() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(backend_.live(), 0);
  while (state_->in_flight() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(state_->in_flight(), 0);
  EXPECT_TRUE(absl::StrContains(client_->Get("/metrics")->body,
                                "request_success_total{finished_reason=\"abort\","));
}

TEST_F(HttpServerTest, DrainRefusesNewRequestsAndLetsInFlightFinish) {
  backend_.token_delay = absl::Milliseconds(20);
  StartServer();
  state_->SetReady(true);
  std::thread inflight([&] {
    httplib::Client c("127.0.0.1", server_->port());
    auto res = c.Post("/v1/chat/completions",
                      R"({"messages":[{"role":"user","content":"a b c d e f g h i j"}]})",
                      "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_TRUE(absl::StrContains(res->body, "a b c d e f g h i j"));
  });
  while (state_->in_flight() == 0) absl::SleepFor(absl::Milliseconds(5));
  state_->StartDraining();
  EXPECT_EQ(client_->Get("/ready")->status, 503);
  auto refused = client_->Post("/v1/chat/completions", kChat, "application/json");
  EXPECT_EQ(refused->status, 503);
  EXPECT_TRUE(absl::StrContains(refused->body, "shutting down"));
  EXPECT_TRUE(state_->WaitIdle(absl::Now() + absl::Seconds(10)));
  inflight.join();
}

// HTTP builds prompts on the same bounded pool as gRPC: full, it answers 429 at once.
TEST_F(HttpServerTest, FullPromptPoolAnswers429) {
  std::atomic<bool> started{false};
  absl::Notification release;
  backend_.before_generate = [&](const v1::GenerateRequest& r) {
    if (!absl::StrContains(r.messages(0).parts(0).text(), "slow")) return;
    started = true;
    release.WaitForNotification();
  };
  StartServer(ApiKeys(), 1 << 20, {/*threads=*/1, /*max_queued=*/0});
  state_->SetReady(true);
  int slow_status = 0;
  std::thread slow([&] {
    httplib::Client c("127.0.0.1", server_->port());
    auto res =
        c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"slow words"}]})",
               "application/json");
    slow_status = res ? res->status : -1;
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!started && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_TRUE(started);
  auto full = client_->Post("/v1/chat/completions", kChat, "application/json");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429) << full->body;
  EXPECT_TRUE(absl::StrContains(full->body, "--prompt_queue_length")) << full->body;
  release.Notify();
  slow.join();
  EXPECT_EQ(slow_status, 200);
  EXPECT_EQ(client_->Post("/v1/chat/completions", kChat, "application/json")->status, 200);
}

}  // namespace
}  // namespace tessera::server
