// tessera.v1.Inference over real gRPC on loopback, against a fake backend: streaming, auth,
// cancellation reaching the backend, Abort's NOT_FOUND, drain.
#include "server/inference_service.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/fake_backend.h"
#include "server/grpc_server.h"

namespace tessera::server {
namespace {

class InferenceServiceTest : public ::testing::Test {
 protected:
  void Start(ApiKeys keys = ApiKeys(), WorkPoolOptions pool = {}) {
    metrics_ = std::make_unique<ServingMetrics>(MetricsOptions{});
    state_ = std::make_unique<ServingState>(&backend_, metrics_.get(), std::move(keys), true, pool);
    service_ = std::make_unique<InferenceService>(state_.get());
    GrpcServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    auto server = GrpcServer::Start(options, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    state_->SetReady(true);
    stub_ = v1::Inference::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(1));
  }

  FakeBackend backend_;
  std::unique_ptr<ServingMetrics> metrics_;
  std::unique_ptr<ServingState> state_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

v1::GenerateRequest Request(const std::string& text) {
  v1::GenerateRequest r;
  v1::Message* m = r.add_messages();
  m->set_role("user");
  m->add_parts()->set_text(text);
  return r;
}

TEST_F(InferenceServiceTest, GenerateStreamsDeltasThenFinished) {
  Start();
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, Request("alpha beta gamma"));
  v1::GenerateResponse r;
  std::string text;
  bool finished = false;
  while (reader->Read(&r)) {
    text += r.text();
    if (r.has_finished()) {
      finished = true;
      EXPECT_EQ(r.finished().reason(), v1::FINISH_REASON_STOP);
      EXPECT_EQ(r.finished().usage().completion_tokens(), 3u);
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(finished);
  EXPECT_EQ(text, "alpha beta gamma");
}

TEST_F(InferenceServiceTest, CancelMidStreamStopsTheBackendRequest) {
  backend_.token_delay = absl::Milliseconds(20);
  Start();
  std::string words;
  for (int i = 0; i < 300; ++i) words += "w ";
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, Request(words));
  v1::GenerateResponse r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(backend_.live(), 1);
  ctx.TryCancel();
  while (reader->Read(&r)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while ((backend_.live() > 0 || state_->in_flight() > 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(backend_.live(), 0);
  EXPECT_EQ(state_->in_flight(), 0);
}

TEST_F(InferenceServiceTest, DeadlineStopsTheBackendRequest) {
  backend_.token_delay = absl::Milliseconds(20);
  Start();
  std::string words;
  for (int i = 0; i < 300; ++i) words += "w ";
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  auto reader = stub_->Generate(&ctx, Request(words));
  v1::GenerateResponse r;
  while (reader->Read(&r)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (backend_.live() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(backend_.live(), 0);
}

TEST_F(InferenceServiceTest, ErrorsMapToGrpcCodes) {
  Start(ApiKeys::FromKeys({"k1"}));
  {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, Request("x"));
    v1::GenerateResponse r;
    EXPECT_FALSE(reader->Read(&r));
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "authorization: Bearer"));
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer k1");
    v1::GenerateRequest bad = Request("x");
    bad.mutable_messages(0)->add_parts()->mutable_image()->set_encoded("GIF89a");
    auto reader = stub_->Generate(&ctx, bad);
    v1::GenerateResponse r;
    EXPECT_FALSE(reader->Read(&r));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer k1");
    v1::AbortRequest req;
    req.set_request_id("nope");
    v1::AbortResponse resp;
    EXPECT_EQ(stub_->Abort(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer k1");
    v1::GetModelInfoResponse resp;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &resp).ok());
    EXPECT_EQ(resp.model().id(), "fake");
  }
  state_->StartDraining();
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer k1");
    auto reader = stub_->Generate(&ctx, Request("x"));
    v1::GenerateResponse r;
    EXPECT_FALSE(reader->Read(&r));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
}

// Builds of prompts containing "slow" block until released (the test double's hook runs where the
// prompt is built).
struct SlowBuilds {
  explicit SlowBuilds(FakeBackend* backend) {
    backend->before_generate = [this](const v1::GenerateRequest& r) {
      if (r.messages_size() == 0 || !absl::StrContains(r.messages(0).parts(0).text(), "slow")) {
        return;
      }
      ++started;
      release.WaitForNotification();
    };
  }
  void WaitStarted(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (started.load() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  }
  std::atomic<int> started{0};
  absl::Notification release;
};

// A call that is streaming keeps streaming while other calls' prompt builds hang: builds run on
// the worker pool, not on gRPC's callback threads (eight stuck builds would otherwise hold as many
// callback threads).
TEST_F(InferenceServiceTest, SlowPromptBuildsDoNotDelayAnotherCallsStreaming) {
  backend_.token_delay = absl::Milliseconds(5);
  SlowBuilds slow(&backend_);
  Start(ApiKeys(), {/*threads=*/8, /*max_queued=*/8});
  grpc::ClientContext ctx;
  std::string words;
  for (int i = 0; i < 40; ++i) words += "w ";
  auto reader = stub_->Generate(&ctx, Request(words));
  v1::GenerateResponse r;
  ASSERT_TRUE(reader->Read(&r));  // Streaming.
  std::vector<std::thread> callers;
  std::atomic<int> slow_ok{0};
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&] {
      grpc::ClientContext c;
      auto slow_reader = stub_->Generate(&c, Request("slow one"));
      v1::GenerateResponse sr;
      while (slow_reader->Read(&sr)) {
      }
      if (slow_reader->Finish().ok()) ++slow_ok;
    });
  }
  slow.WaitStarted(8);
  if (slow.started.load() != 8) {  // Builds on callback threads stall after gRPC's few threads.
    ADD_FAILURE() << "only " << slow.started.load() << " of 8 prompt builds started";
    slow.release.Notify();
    ctx.TryCancel();
    for (auto& t : callers) t.join();
    return;
  }
  int tokens = r.token_ids_size();
  while (reader->Read(&r)) tokens += r.token_ids_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 40);
  EXPECT_EQ(slow.started.load(), 8);
  EXPECT_FALSE(slow.release.HasBeenNotified());  // All of it while the builds were stuck.
  slow.release.Notify();
  for (auto& t : callers) t.join();
  EXPECT_EQ(slow_ok.load(), 8);
}

// A full pool refuses at once with RESOURCE_EXHAUSTED; a call cancelled while its prompt is being
// built ends CANCELLED once the build is back, leaving nothing running.
TEST_F(InferenceServiceTest, FullPoolAnswersResourceExhaustedAndCancelWaitsForNothing) {
  SlowBuilds slow(&backend_);
  Start(ApiKeys(), {/*threads=*/1, /*max_queued=*/1});
  auto run = [&](grpc::ClientContext* c) {
    auto reader = stub_->Generate(c, Request("slow call"));
    v1::GenerateResponse r;
    while (reader->Read(&r)) {
    }
    return reader->Finish();
  };
  grpc::ClientContext c1, c2, c3;
  grpc::Status s1, s2;
  std::thread t1([&] { s1 = run(&c1); });
  slow.WaitStarted(1);
  std::thread t2([&] { s2 = run(&c2); });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (state_->prompt_pool().queued() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  const grpc::Status s3 = run(&c3);
  EXPECT_EQ(s3.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s3.error_message();
  EXPECT_TRUE(absl::StrContains(s3.error_message(), "--prompt_queue_length")) << s3.error_message();
  c1.TryCancel();  // Its build is stuck: the call ends when the build is back.
  absl::SleepFor(absl::Milliseconds(50));
  slow.release.Notify();
  t1.join();
  t2.join();
  EXPECT_EQ(s1.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(s2.ok()) << s2.error_message();
  while ((backend_.live() > 0 || state_->in_flight() > 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(backend_.live(), 0);
  EXPECT_EQ(state_->in_flight(), 0);
}

}  // namespace
}  // namespace tessera::server
