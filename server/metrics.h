// Serving metrics: one prometheus-cpp registry with the families listed in docs/metrics.md, fed by
// the edge (per-request timings it sees) and by snapshots of the engine's counters, serialized by
// prometheus::TextSerializer into the body of our own GET /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace tessera::server {

struct MetricsOptions {
  // Value of the `model_name` label on every series.
  std::string model_name = "default";
  // Also export every family under the vllm: prefix (for gateways that route on vLLM's names).
  bool emit_vllm_names = false;
};

// What the engine reports at scrape time. Counters are cumulative since start; the registry adds
// the difference from the previous snapshot.
struct EngineSnapshot {
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  double kv_cache_usage = 0.0;  // 0..1.
  int64_t num_sessions = 0;
  int64_t prefix_cache_queries = 0;  // Tokens.
  int64_t prefix_cache_hits = 0;     // Tokens.
  int64_t num_preemptions = 0;
  int64_t media_cache_queries = 0;
  int64_t media_cache_hits = 0;
};

// Timings of one finished request, as the edge saw them plus the engine's usage.
struct RequestRecord {
  std::string finished_reason;  // scheduler::FinishReasonName.
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  absl::Duration queue_time;
  absl::Duration time_to_first_token;  // Zero when no token came.
  absl::Duration total_time;
};

class ServingMetrics {
 public:
  explicit ServingMetrics(const MetricsOptions& options);
  ~ServingMetrics();
  ServingMetrics(const ServingMetrics&) = delete;
  ServingMetrics& operator=(const ServingMetrics&) = delete;

  void RecordFinished(const RequestRecord& record);
  // One gap between consecutive deltas carrying `tokens` tokens: observed `tokens` times, each
  // gap / tokens (a chunk of several tokens counts as evenly spaced).
  void RecordInterToken(absl::Duration gap, int64_t tokens);
  void RecordMedia(int64_t images, double audio_seconds);
  // A request with constrained decoding (response_format, grammar, a forced tool call) started.
  void RecordConstrainedRequest();
  // The time to compute one token mask of constrained decoding.
  void RecordMaskTime(absl::Duration duration);
  // `code`: "invalid_argument", "resource_exhausted", "unavailable", "unauthenticated" or "other".
  void RecordRejected(const std::string& code);
  void SetReady(bool ready);
  // Publishes tessera:model_info{architecture, device, revision, context_length} = 1 (once the
  // model is loaded).
  void SetModelInfo(const std::string& architecture, const std::string& device,
                    const std::string& revision, int64_t context_length);
  void UpdateEngine(const EngineSnapshot& snapshot);

  // The Prometheus text exposition of everything.
  std::string Serialize();

 private:
  prometheus::Counter& RequestSuccess(const std::string& reason);
  prometheus::Counter& Rejected(const std::string& code);

  const MetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::map<std::string, std::string> labels_;

  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* kv_usage_;
  prometheus::Gauge* sessions_;
  prometheus::Gauge* ready_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Family<prometheus::Counter>* request_success_;
  prometheus::Family<prometheus::Counter>* rejected_;
  prometheus::Counter* prefix_queries_;
  prometheus::Counter* prefix_hits_;
  prometheus::Counter* preemptions_;
  prometheus::Counter* images_;
  prometheus::Counter* audio_seconds_;
  prometheus::Counter* media_queries_;
  prometheus::Counter* media_hits_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* prefill_;
  prometheus::Histogram* decode_;
  prometheus::Counter* constrained_requests_;
  prometheus::Histogram* mask_time_;

  absl::Mutex mu_;  // Guards the previous snapshot (counter deltas).
  EngineSnapshot last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::server
