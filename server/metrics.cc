#include "server/metrics.h"

#include <algorithm>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "scheduler/request.h"

namespace tessera::server {
namespace {

constexpr char kPrefix[] = "tessera:";
constexpr char kVllmPrefix[] = "vllm:";

// vLLM's TTFT buckets.
const prometheus::Histogram::BucketBoundaries kTtftBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
    1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
// vLLM's inter-token buckets with a finer low end (the tiny CPU models decode in milliseconds).
const prometheus::Histogram::BucketBoundaries kItlBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,
    0.4,   0.5,    0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
// vLLM's request-phase buckets, with a finer low end.
const prometheus::Histogram::BucketBoundaries kPhaseBuckets = {
    0.01, 0.025, 0.05, 0.1,  0.3,  0.5,  0.8,   1.0,   1.5,   2.0,   2.5,    5.0,   10.0,
    15.0, 20.0,  30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// Constrained-decoding mask times: microseconds (docs/performance.md: p99 ~8 us on Gemma 4's
// vocabulary) to the milliseconds a pathological grammar may take.
const prometheus::Histogram::BucketBoundaries kMaskBuckets = {
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2};

double Seconds(absl::Duration d) { return std::max(0.0, absl::ToDoubleSeconds(d)); }

}  // namespace

ServingMetrics::ServingMetrics(const MetricsOptions& options)
    : options_(options), registry_(std::make_shared<prometheus::Registry>()) {
  labels_ = {{"model_name", options_.model_name}};
  auto gauge = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildGauge()
                .Name(kPrefix + name)
                .Help(help)
                .Register(*registry_)
                .Add(labels_);
  };
  auto counter = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildCounter()
                .Name(kPrefix + name)
                .Help(help)
                .Register(*registry_)
                .Add(labels_);
  };
  auto histogram = [&](const std::string& name, const std::string& help,
                       const prometheus::Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram()
                .Name(kPrefix + name)
                .Help(help)
                .Register(*registry_)
                .Add(labels_, buckets);
  };
  running_ = gauge("num_requests_running", "Requests scheduled in the engine.");
  waiting_ = gauge("num_requests_waiting", "Requests queued, not yet scheduled.");
  kv_usage_ = gauge("kv_cache_usage_perc", "Fraction of KV blocks held by live requests (0..1).");
  sessions_ = gauge("num_sessions_open", "Open Converse sessions.");
  ready_ = gauge("server_ready", "1 when ready to take requests, 0 while loading or draining.");

  prompt_tokens_ = counter("prompt_tokens_total", "Prompt tokens of finished requests.");
  generation_tokens_ = counter("generation_tokens_total", "Tokens generated.");
  request_success_ = &prometheus::BuildCounter()
                          .Name(std::string(kPrefix) + "request_success_total")
                          .Help("Requests that ended, by finished_reason.")
                          .Register(*registry_);
  for (scheduler::FinishReason reason : scheduler::kAllFinishReasons) {
    RequestSuccess(scheduler::FinishReasonName(reason));
  }
  rejected_ = &prometheus::BuildCounter()
                   .Name(std::string(kPrefix) + "request_rejected_total")
                   .Help("Requests refused at the edge, by error code.")
                   .Register(*registry_);
  prefix_queries_ =
      counter("prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
  prefix_hits_ = counter("prefix_cache_hits_total", "Prompt tokens found in the prefix cache.");
  preemptions_ = counter("num_preemptions_total", "Requests preempted.");
  images_ = counter("media_images_total", "Images and video frames received.");
  audio_seconds_ = counter("media_audio_seconds_total", "Seconds of audio received.");
  media_queries_ =
      counter("media_cache_queries_total", "Media items looked up in the prefix cache.");
  media_hits_ = counter("media_cache_hits_total", "Media items found in cached KV blocks.");

  ttft_ =
      histogram("time_to_first_token_seconds", "Arrival to first generated token.", kTtftBuckets);
  itl_ = histogram("inter_token_latency_seconds", "Gap between consecutive generated tokens.",
                   kItlBuckets);
  e2e_ = histogram("e2e_request_latency_seconds", "Arrival to completion.", kPhaseBuckets);
  queue_ =
      histogram("request_queue_time_seconds", "Arrival to first scheduled step.", kPhaseBuckets);
  prefill_ = histogram("request_prefill_time_seconds", "First scheduled step to first token.",
                       kPhaseBuckets);
  decode_ = histogram("request_decode_time_seconds", "First token to completion.", kPhaseBuckets);
  constrained_requests_ =
      counter("structured_output_requests_total",
              "Requests with constrained decoding (response_format, grammar, forced tool call).");
  mask_time_ = histogram("structured_output_mask_seconds",
                         "Time to compute one constrained-decoding token mask.", kMaskBuckets);
}

ServingMetrics::~ServingMetrics() = default;

prometheus::Counter& ServingMetrics::RequestSuccess(const std::string& reason) {
  auto labels = labels_;
  labels["finished_reason"] = reason;
  return request_success_->Add(labels);  // Returns the existing series for known labels.
}

prometheus::Counter& ServingMetrics::Rejected(const std::string& code) {
  auto labels = labels_;
  labels["code"] = code;
  return rejected_->Add(labels);
}

void ServingMetrics::RecordFinished(const RequestRecord& r) {
  RequestSuccess(r.finished_reason).Increment();
  prompt_tokens_->Increment(static_cast<double>(r.prompt_tokens));
  generation_tokens_->Increment(static_cast<double>(r.generation_tokens));
  e2e_->Observe(Seconds(r.total_time));
  queue_->Observe(Seconds(r.queue_time));
  if (r.generation_tokens > 0) {
    ttft_->Observe(Seconds(r.time_to_first_token));
    prefill_->Observe(Seconds(r.time_to_first_token - r.queue_time));
    decode_->Observe(Seconds(r.total_time - r.time_to_first_token));
  }
}

void ServingMetrics::RecordInterToken(absl::Duration gap, int64_t tokens) {
  if (tokens <= 0) return;
  const double each = Seconds(gap) / static_cast<double>(tokens);
  for (int64_t i = 0; i < tokens; ++i) itl_->Observe(each);
}

void ServingMetrics::RecordMedia(int64_t images, double audio_seconds) {
  if (images > 0) images_->Increment(static_cast<double>(images));
  if (audio_seconds > 0) audio_seconds_->Increment(audio_seconds);
}

void ServingMetrics::RecordRejected(const std::string& code) { Rejected(code).Increment(); }

void ServingMetrics::RecordConstrainedRequest() { constrained_requests_->Increment(); }

void ServingMetrics::RecordMaskTime(absl::Duration duration) {
  mask_time_->Observe(Seconds(duration));
}

void ServingMetrics::SetReady(bool ready) { ready_->Set(ready ? 1 : 0); }

void ServingMetrics::SetModelInfo(const std::string& architecture, const std::string& device,
                                  const std::string& revision, int64_t context_length) {
  std::map<std::string, std::string> labels = labels_;
  labels["architecture"] = architecture;
  labels["device"] = device;
  labels["revision"] = revision;
  labels["context_length"] = std::to_string(context_length);
  prometheus::BuildGauge()
      .Name(std::string(kPrefix) + "model_info")
      .Help("The served model; always 1.")
      .Register(*registry_)
      .Add(labels)
      .Set(1);
}

void ServingMetrics::UpdateEngine(const EngineSnapshot& s) {
  running_->Set(static_cast<double>(s.num_running));
  waiting_->Set(static_cast<double>(s.num_waiting));
  kv_usage_->Set(s.kv_cache_usage);
  sessions_->Set(static_cast<double>(s.num_sessions));
  absl::MutexLock lock(&mu_);
  auto add = [](prometheus::Counter* c, int64_t now, int64_t* before) {
    if (now > *before) c->Increment(static_cast<double>(now - *before));
    *before = std::max(*before, now);
  };
  add(prefix_queries_, s.prefix_cache_queries, &last_.prefix_cache_queries);
  add(prefix_hits_, s.prefix_cache_hits, &last_.prefix_cache_hits);
  add(preemptions_, s.num_preemptions, &last_.num_preemptions);
  add(media_queries_, s.media_cache_queries, &last_.media_cache_queries);
  add(media_hits_, s.media_cache_hits, &last_.media_cache_hits);
}

std::string ServingMetrics::Serialize() {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  if (options_.emit_vllm_names) {
    const size_t n = families.size();
    for (size_t i = 0; i < n; ++i) {
      prometheus::MetricFamily copy = families[i];
      copy.name = kVllmPrefix + copy.name.substr(sizeof(kPrefix) - 1);
      families.push_back(std::move(copy));
    }
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace tessera::server
