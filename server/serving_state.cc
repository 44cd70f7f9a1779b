#include "server/serving_state.h"

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
  if (!ready_.load() || backend() == nullptr) {
    return absl::UnavailableError("the model is still loading; retry shortly");
  }
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
  if (Backend* b = backend()) metrics_->UpdateEngine(b->Snapshot());
  return metrics_->Serialize();
}

}  // namespace tessera::server
