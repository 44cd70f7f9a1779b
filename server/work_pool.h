// A bounded pool of worker threads for the edge's blocking work (prompt building: image decoding,
// resampling, tokenizing; remote image fetches), so that gRPC callback threads never block and the
// work in flight is bounded. A full queue is refused at once with ResourceExhausted (429 /
// RESOURCE_EXHAUSTED), never waited on. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tessera::server {

struct WorkPoolOptions {
  // Worker threads (--prompt_threads). More: more prompts built at once, more CPU taken from the
  // engine's step on a CPU server.
  int threads = 4;
  // Tasks that may wait for a thread (--prompt_queue_length); beyond it Submit refuses.
  int max_queued = 256;
};

class WorkPool {
 public:
  explicit WorkPool(WorkPoolOptions options = {});
  // Runs what is queued, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `task` for a worker; ResourceExhausted (naming the limit) when max_queued tasks wait.
  absl::Status Submit(std::function<void()> task);
  // Submit, then wait until `task` has run: for callers that may block (HTTP handler threads).
  absl::Status Run(std::function<void()> task);
  // Tasks waiting for a busy thread.
  int64_t queued();

 private:
  void Work();

  const WorkPoolOptions options_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t idle_ ABSL_GUARDED_BY(mu_) = 0;  // Threads not running a task.
  std::vector<std::thread> threads_;
};

}  // namespace tessera::server
