// A test double for Backend: "generates" the words of the prompt's text back, one token each,
// with a fixed delay per token, so the edge can be tested without a model. Tracks how many
// requests are live so tests can check that cancellation reaches it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/backend.h"

namespace tessera::server {

class FakeBackend : public Backend {
 public:
  FakeBackend();
  ~FakeBackend() override;

  const v1::ModelInfo& model_info() const override { return info_; }
  absl::StatusOr<std::unique_ptr<ReplyStream>> Generate(const v1::GenerateRequest& request,
                                                        absl::Time deadline) override;
  bool Abort(const std::string& request_id) override;
  absl::StatusOr<v1::CountTokensResponse> CountTokens(const v1::CountTokensRequest& r) override;
  absl::StatusOr<std::unique_ptr<Session>> OpenSession(const v1::SessionStart& start) override;
  std::string TokenText(int32_t token_id) const override;
  EngineSnapshot Snapshot() override;

  int live() const { return live_.load(); }
  // Delay between generated tokens.
  absl::Duration token_delay = absl::Milliseconds(2);
  // Queue capacity: more live requests than this get ResourceExhausted.
  int max_live = 1000;
  // Runs first in every Generate, on the thread that builds the prompt (tests make builds slow).
  std::function<void(const v1::GenerateRequest&)> before_generate;
  // Where finished requests are counted (as the real backend does from the engine's observer).
  ServingMetrics* metrics = nullptr;

 private:
  v1::ModelInfo info_;
  std::atomic<int> live_{0};
  std::atomic<int64_t> next_id_{0};
};

}  // namespace tessera::server
