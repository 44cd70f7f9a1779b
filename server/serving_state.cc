#include "server/serving_state.h"

#include "server/openai_api.h"
#include "server/status_mapping.h"

namespace tessera::server {

void ServingState::SetReady(bool ready) {
  ready_.store(ready);
  metrics_->SetReady(this->ready());
}

void ServingState::StartDraining() {
  draining_.store(true);
  metrics_->SetReady(false);
}

absl::Status ServingState::BeginRequest() {
  if (draining_.load()) {
    return absl::UnavailableError("the server is shutting down; retry on another replica");
  }
  if (!ready_.load()) return absl::UnavailableError("the model is still loading; retry shortly");
  absl::MutexLock lock(&mu_);
  ++in_flight_;
  return absl::OkStatus();
}

void ServingState::EndRequest() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

bool ServingState::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

int64_t ServingState::in_flight() {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

void ServingState::Rejected(const absl::Status& status) {
  metrics_->RecordRejected(StatusCodeLabel(status));
}

std::string ServingState::ScrapeMetrics() {
  metrics_->UpdateEngine(backend_->Snapshot());
  return metrics_->Serialize();
}

void ReplyTimer::OnDelta(const scheduler::TokenDelta& delta) {
  const int64_t n = static_cast<int64_t>(delta.token_ids.size());
  if (n == 0) return;
  const absl::Time now = absl::Now();
  if (tokens_ > 0) {
    metrics_->RecordInterToken(now - last_token_, n);
  } else if (n > 1) {
    // The first token's gap is TTFT, not inter-token; the rest of a first chunk came together.
    metrics_->RecordInterToken(absl::ZeroDuration(), n - 1);
  }
  last_token_ = now;
  tokens_ += n;
}

void ReplyTimer::OnCompletion(const scheduler::Completion& c) {
  RequestRecord r;
  r.finished_reason = FinishReasonName(c.reason);
  r.prompt_tokens = c.usage.prompt_tokens;
  r.generation_tokens = c.usage.completion_tokens;
  r.queue_time = c.usage.queue_time;
  r.time_to_first_token = c.usage.time_to_first_token;
  r.total_time = c.usage.total_time;
  metrics_->RecordFinished(r);
}

}  // namespace tessera::server
