// State shared by the HTTP and gRPC edges: readiness and drain, the in-flight count, API keys,
// metrics, and the worker pool that builds prompts off the transports' threads.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/api_keys.h"
#include "server/backend.h"
#include "server/metrics.h"
#include "server/work_pool.h"

namespace tessera::server {

class ServingState {
 public:
  // `backend` may be null while the model loads (then SetBackend before SetReady(true)).
  ServingState(Backend* backend, ServingMetrics* metrics, ApiKeys keys, bool open_probes,
               WorkPoolOptions prompt_pool = {})
      : backend_(backend),
        metrics_(metrics),
        keys_(std::move(keys)),
        open_probes_(open_probes),
        prompt_pool_(prompt_pool) {}

  // Null until the model is loaded; callers that passed BeginRequest always see it set.
  Backend* backend() const { return backend_.load(); }
  void SetBackend(Backend* backend) { backend_.store(backend); }
  ServingMetrics* metrics() const { return metrics_; }
  const ApiKeys& keys() const { return keys_; }
  // Health, readiness and metrics are reachable without a key.
  bool open_probes() const { return open_probes_; }
  // Where prompts are built (Backend::Generate, CountTokens, session images): never on a gRPC
  // callback thread.
  WorkPool& prompt_pool() { return prompt_pool_; }

  bool ready() const { return ready_.load() && !draining_.load(); }
  bool draining() const { return draining_.load(); }
  void SetReady(bool ready);
  void StartDraining();

  // Admits a new request: Unavailable while loading or draining. On OK the caller must call
  // EndRequest() once when the request is over.
  absl::Status BeginRequest();
  void EndRequest();
  // Waits until no request is in flight or `deadline` passes; true if none is left.
  bool WaitIdle(absl::Time deadline);
  int64_t in_flight();

  // Counts a refused request in the metrics.
  void Rejected(const absl::Status& status);
  // Fresh snapshot of the engine into the metrics, then the exposition text.
  std::string ScrapeMetrics();

 private:
  std::atomic<Backend*> backend_;
  ServingMetrics* const metrics_;
  const ApiKeys keys_;
  const bool open_probes_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: its threads stop (finishing what is queued) before the rest goes.
  WorkPool prompt_pool_;
};

}  // namespace tessera::server
