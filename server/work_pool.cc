#include "server/work_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace tessera::server {

WorkPool::WorkPool(WorkPoolOptions options) : options_(options) {
  const int n = std::max(1, options_.threads);
  {
    absl::MutexLock lock(&mu_);
    idle_ = n;
  }
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Work(); });
}

WorkPool::~WorkPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

absl::Status WorkPool::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  // A task for an idle thread does not wait; max_queued counts the ones that would.
  if (static_cast<int64_t>(queue_.size()) >= std::max(0, options_.max_queued) + idle_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server is busy building other prompts (", queue_.size(),
        " waiting; --prompt_queue_length is ", options_.max_queued, "); retry shortly"));
  }
  queue_.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status WorkPool::Run(std::function<void()> task) {
  absl::Notification done;
  absl::Status s = Submit([&task, &done] {
    task();
    done.Notify();
  });
  if (!s.ok()) return s;
  done.WaitForNotification();
  return absl::OkStatus();
}

int64_t WorkPool::queued() {
  absl::MutexLock lock(&mu_);
  return std::max<int64_t>(0, static_cast<int64_t>(queue_.size()) - idle_);
}

void WorkPool::Work() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // Stopping, nothing left.
      task = std::move(queue_.front());
      queue_.pop_front();
      --idle_;
    }
    task();
    absl::MutexLock lock(&mu_);
    ++idle_;
  }
}

}  // namespace tessera::server
