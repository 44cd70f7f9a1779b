// The engine's internals (engine.h has the public face): per-request and per-session state and the
// EngineImpl class, split over engine.cc (admission, the step, finishing) and engine_sessions.cc
// (the Converse sessions). Not for use outside //scheduler:engine.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "runtime/prompt/tokenizer.h"
#include "runtime/structured/grammar_matcher.h"
#include "scheduler/engine.h"
#include "scheduler/kv_cache_manager.h"
#include "scheduler/scheduler.h"
#include "scheduler/stop_matcher.h"

namespace tessera::scheduler {

namespace engine_internal {

struct SessionState;
struct ChoiceGroup;

// Everything the engine keeps about one live request (or one session and its current turn, or one
// choice of a request with several). Engine thread only, except `handle`.
struct RequestState {
  Sequence seq;
  SessionState* session = nullptr;
  std::shared_ptr<RequestHandle> handle;  // Null for a session between turns.
  // Key in live_: the request id, "<session>/<turn>", or "<request id>#<index>" for choices > 0.
  std::string turn_id;
  int32_t index = 0;                   // The choice.
  std::shared_ptr<ChoiceGroup> group;  // Set when the request has several choices.
  // Constrained decoding: the matcher of this choice's output so far, and its mask buffer.
  std::optional<runtime::structured::GrammarMatcher> grammar;
  std::vector<uint64_t> mask;
  std::vector<int32_t> visible_special_tokens;
  runtime::SamplingParams sampling;
  StoppingParams stopping;
  std::vector<int32_t> stop_ids;  // Sorted.
  absl::Time deadline = absl::InfiniteFuture();
  int32_t max_output = 0;  // Output tokens allowed this turn.
  int32_t turn_prompt_tokens = 0;
  int32_t turn_cached_tokens = 0;  // Session turns: context already in KV when the turn began.
  std::unique_ptr<runtime::IncrementalDecoder> decoder;  // Null without a tokenizer.
  std::unique_ptr<StopStringMatcher> matcher;
  // Timings of the current turn.
  absl::Time arrival;
  absl::Time first_scheduled = absl::InfiniteFuture();
  absl::Time first_token = absl::InfiniteFuture();
  absl::Time last_token = absl::InfiniteFuture();
  std::vector<absl::Duration> itl;
};

// The choices of a request with num_choices > 1. Choice 0 runs first; the others wait in
// `pending` until it has computed the prompt (its first sample), then start with its full blocks
// through the prefix cache.
struct ChoiceGroup {
  std::string request_id;
  std::vector<std::unique_ptr<RequestState>> pending;
  std::vector<RequestState*> live;  // Choices in live_.
  bool done() const { return pending.empty() && live.empty(); }
};

struct SessionState {
  SessionOptions options;
  std::unique_ptr<RequestState> state;
  absl::Time last_active;
  int32_t turns = 0;
};

// What callers know about a session, kept under the engine mutex for synchronous validation.
struct SessionInfo {
  int32_t tokens = 0;
  int32_t max_tokens = 0;
  bool generating = false;
};

}  // namespace engine_internal

using engine_internal::ChoiceGroup;
using engine_internal::RequestState;
using engine_internal::SessionInfo;
using engine_internal::SessionState;

class EngineImpl {
 public:
  EngineImpl(const EngineOptions& options, runtime::ModelRunner* runner,
             const runtime::Tokenizer* tokenizer, Clock* clock, EngineObserver* observer)
      : options_(options),
        runner_(runner),
        tokenizer_(tokenizer),
        clock_(clock),
        observer_(observer),
        kv_(runner->kv_spec(), options.enable_prefix_caching),
        scheduler_({options.max_num_seqs, options.max_num_batched_tokens}, &kv_) {
    eos_ids_ = options_.eos_token_ids;
    std::sort(eos_ids_.begin(), eos_ids_.end());
    // A lone sequence must always fit: output is capped by the smallest full-attention pool.
    kv_capacity_tokens_ = options_.max_context_length;
    for (const auto& g : runner->kv_spec().groups) {
      if (g.window <= 0) {
        kv_capacity_tokens_ = std::min(kv_capacity_tokens_, g.num_blocks * g.block_size);
      }
    }
    UpdateStatsLocked();
  }

  ~EngineImpl() { Shutdown(); }

  void Start() {
    if (options_.start_loop_thread) thread_ = std::thread([this] { Loop(); });
  }

  void Shutdown() {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    if (thread_.joinable()) thread_.join();
    // Abort everything still live.
    const absl::Status status = absl::UnavailableError("the engine shut down");
    std::vector<std::unique_ptr<RequestState>> incoming;
    {
      absl::MutexLock lock(&mu_);
      incoming.swap(incoming_);
    }
    for (auto& r : incoming) {
      if (r->handle == nullptr) continue;
      Completion c;
      c.reason = FinishReason::kAbort;
      c.status = status;
      r->handle->Push(c);
      if (r->group) FinishPendingChoices(r->group.get(), FinishReason::kAbort, status, 0);
    }
    std::vector<RequestState*> live;
    for (auto& [id, r] : live_) live.push_back(r.get());
    for (RequestState* r : live) Finish(r, FinishReason::kAbort, status);
    for (auto& [id, s] : sessions_) {
      if (s->state->handle != nullptr) Finish(s->state.get(), FinishReason::kAbort, status);
      if (s->state->seq.state != SequenceState::kNew) scheduler_.Remove(&s->state->seq);
    }
  }

  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerateRequest request);
  absl::Status Abort(const std::string& id) {
    absl::MutexLock lock(&mu_);
    if (!live_ids_.contains(id)) {
      return absl::NotFoundError(absl::StrCat("no live request with id \"", id, "\""));
    }
    aborts_.push_back(id);
    return absl::OkStatus();
  }
  EngineStats Stats() const {
    absl::MutexLock lock(&mu_);
    return stats_;
  }
  absl::StatusOr<std::string> OpenSession(const SessionOptions& options);
  absl::Status AppendToSession(const std::string& id, std::vector<int32_t> tokens,
                               std::vector<runtime::MediaRun> media);
  absl::StatusOr<std::shared_ptr<RequestHandle>> GenerateInSession(
      const std::string& id, const runtime::SamplingParams& sampling,
      const StoppingParams& stopping);
  absl::Status CloseSession(const std::string& id);

  // One step boundary plus one model step. False when there was nothing to run.
  bool StepOnce();
  absl::Status CheckConsistency() const;
  bool loop_thread() const { return options_.start_loop_thread; }
  bool ManualStep() {
    if (options_.start_loop_thread) return false;  // The loop thread owns the steps.
    return StepOnce();
  }

 private:
  void Loop();
  absl::Status ValidateMedia(const std::vector<runtime::MediaRun>& media, int32_t num_tokens) const;
  void InitTurn(RequestState* r, const runtime::SamplingParams& sampling,
                const StoppingParams& stopping, int32_t context_limit);
  void ApplyBoundary(absl::Time now);
  void HandleToken(RequestState* r, const runtime::SampleResult& sampled, absl::Time now);
  // Choice 0 has computed the prompt: the pending choices of its group start.
  void StartPendingChoices(RequestState* first);
  // Ends the choices that never started (their first choice was aborted or failed).
  void FinishPendingChoices(ChoiceGroup* group, FinishReason reason, const absl::Status& status,
                            int32_t prompt_tokens);
  // Ends the current turn (or request): pushes `delta` if non-empty and the completion.
  void Finish(RequestState* r, FinishReason reason, absl::Status status,
              TokenDelta* delta = nullptr, std::optional<std::string> stop_string = std::nullopt,
              std::optional<int32_t> stop_token = std::nullopt);
  void CloseSessionNow(const std::string& id);
  void UpdateStatsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const EngineOptions options_;
  runtime::ModelRunner* const runner_;
  const runtime::Tokenizer* const tokenizer_;
  Clock* const clock_;
  EngineObserver* const observer_;
  std::vector<int32_t> eos_ids_;
  int32_t kv_capacity_tokens_ = 0;

  // Engine thread only.
  KvCacheManager kv_;
  Scheduler scheduler_;
  absl::flat_hash_map<std::string, std::unique_ptr<RequestState>> live_;  // By turn id.
  absl::flat_hash_map<std::string, std::unique_ptr<SessionState>> sessions_;
  // Requests with several choices, by request id, while any choice is pending or live.
  absl::flat_hash_map<std::string, std::shared_ptr<ChoiceGroup>> groups_;
  absl::flat_hash_set<RequestState*> with_deadline_;
  uint64_t next_seq_id_ = 1;
  uint64_t next_arrival_ = 1;
  int64_t steps_ = 0;
  int64_t prompt_tokens_computed_ = 0;
  int64_t generation_tokens_ = 0;
  int64_t requests_finished_ = 0;
  std::thread thread_;
  runtime::BatchPlan plan_;
  runtime::StepOutput out_;
  std::vector<RequestState*> owners_;

  // Shared with callers.
  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<RequestState>> incoming_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> aborts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> ops_ ABSL_GUARDED_BY(mu_);  // Session ops, in call order.
  absl::flat_hash_set<std::string> live_ids_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, SessionInfo> session_info_ ABSL_GUARDED_BY(mu_);
  uint64_t next_request_number_ ABSL_GUARDED_BY(mu_) = 1;
  int32_t waiting_snapshot_ ABSL_GUARDED_BY(mu_) = 0;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::scheduler
