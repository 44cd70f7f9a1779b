// The caller's end of a request's event stream (declared in engine.h).
#include <utility>

#include "scheduler/engine.h"

namespace tessera::scheduler {

// ---------------------------------------------------------------------------------------------
// RequestHandle

bool RequestHandle::Next(RequestEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || finished_taken_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
  if (queue_.empty()) return false;  // The last completion was taken before.
  *event = std::move(queue_.front());
  queue_.erase(queue_.begin());
  if (std::holds_alternative<Completion>(*event) && ++completions_taken_ == num_choices_) {
    finished_taken_ = true;
  }
  return true;
}

bool RequestHandle::Drain(std::vector<RequestEvent>* out) {
  absl::MutexLock lock(&mu_);
  for (auto& e : queue_) {
    if (std::holds_alternative<Completion>(e) && ++completions_taken_ == num_choices_) {
      finished_taken_ = true;
    }
    out->push_back(std::move(e));
  }
  queue_.clear();
  return finished_taken_;
}

void RequestHandle::SetNotify(std::function<void()> notify) {
  bool pending;
  std::function<void()> copy;
  {
    absl::MutexLock lock(&mu_);
    notify_ = std::move(notify);
    pending = !queue_.empty();
    copy = notify_;
  }
  if (pending && copy) copy();
}

void RequestHandle::Push(RequestEvent event) {
  std::function<void()> notify;
  {
    absl::MutexLock lock(&mu_);
    if (finished_pushed_) return;  // Nothing follows the last completion.
    if (std::holds_alternative<Completion>(event) && ++completions_pushed_ == num_choices_) {
      finished_pushed_ = true;
    }
    queue_.push_back(std::move(event));
    notify = notify_;
  }
  if (notify) notify();
}

}  // namespace tessera::scheduler
