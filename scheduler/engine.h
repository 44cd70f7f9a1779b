// The engine: one step-loop thread that admits requests, schedules steps over the paged KV cache,
// runs them on a ModelRunner, samples, detokenizes and streams results back (ARCHITECTURE.md).
//
// Thread-safety: every public method may be called from any thread. The step loop never blocks on a
// caller; callers never block the step loop (event delivery is a queue plus a notification).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/model_runner.h"
#include "runtime/prompt/tokenizer.h"
#include "scheduler/clock.h"
#include "scheduler/request.h"

namespace tessera::scheduler {

// One item of a request's output stream: deltas, and one Completion per choice (most requests
// have one choice: deltas, then the Completion last). Events carry their choice's index.
using RequestEvent = std::variant<TokenDelta, Completion>;

// The caller's end of a submitted request. Events are queued by the engine; the caller either polls
// (Next) or is notified (the callback runs on the engine thread and must not block: it should only
// schedule work, e.g. start a gRPC write).
class RequestHandle {
 public:
  const std::string& request_id() const { return request_id_; }

  // Waits up to `timeout` for the next event. False on timeout. After the last choice's
  // Completion, returns false immediately.
  bool Next(RequestEvent* event, absl::Duration timeout = absl::InfiniteDuration());
  // Non-blocking: moves every queued event into `out`. Returns true if the stream has ended (the
  // last Completion is in `out` or was taken before).
  bool Drain(std::vector<RequestEvent>* out);
  // Sets the notification callback (replacing any); it is invoked once per batch of new events, and
  // immediately if events are already queued.
  void SetNotify(std::function<void()> notify);

  // Engine side.
  explicit RequestHandle(std::string request_id, int32_t num_choices = 1)
      : request_id_(std::move(request_id)), num_choices_(num_choices) {}
  void Push(RequestEvent event);

 private:
  const std::string request_id_;
  const int32_t num_choices_;
  absl::Mutex mu_;
  std::vector<RequestEvent> queue_ ABSL_GUARDED_BY(mu_);
  int32_t completions_pushed_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t completions_taken_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_pushed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_taken_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
};

struct EngineOptions {
  // At most this many sequences hold KV blocks at once (running, sessions included), and at most
  // this many run in one step. More means more throughput per step and more KV memory in use.
  int32_t max_num_seqs = 256;
  // Token budget of one step: decodes (1 each) plus prefill chunks. Larger prefill chunks finish
  // prompts sooner but make the decodes that share the step wait longer. Every media run of a
  // prompt must fit in it (chunks never split one).
  int32_t max_num_batched_tokens = 2048;
  // Requests waiting to be scheduled; Submit answers ResourceExhausted beyond it.
  int32_t max_queue_length = 1024;
  // The model's context length: prompt + output never exceed it (Submit answers InvalidArgument for
  // a prompt that does not leave room for one output token).
  int32_t max_context_length = 8192;
  // The model's own stop ids (eos, end of turn); every request stops on them unless ignore_eos.
  std::vector<int32_t> eos_token_ids;
  // Share full KV blocks between requests with the same prefix (and salt).
  bool enable_prefix_caching = true;
  // Part of every prefix-cache key: a different model or revision never shares blocks.
  std::string model_identity = "default";
  // Sessions (Converse): how many may be open, how long an idle one lives, and the most tokens a
  // session's context may hold.
  int32_t max_sessions = 64;
  absl::Duration session_ttl = absl::Minutes(10);
  int32_t max_session_tokens = 32768;
  // When false the engine starts no thread and the owner drives it with Step() (tests, benchmarks).
  bool start_loop_thread = true;
};

// Per-request timings, delivered once when a request (or a session turn) ends, so that the server
// can export histograms (TTFT, inter-token latency, queue, prefill, decode, end-to-end).
struct RequestTimings {
  std::string request_id;
  FinishReason reason = FinishReason::kStop;
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  int32_t completion_tokens = 0;
  absl::Duration queue_time;                          // Arrival to first scheduled.
  absl::Duration time_to_first_token;                 // Arrival to first token (zero when none).
  absl::Duration prefill_time;                        // First scheduled to first token.
  absl::Duration decode_time;                         // First token to last token.
  absl::Duration e2e_time;                            // Arrival to completion.
  std::vector<absl::Duration> inter_token_latencies;  // Between consecutive output tokens.
};

// Implemented by the server to receive metrics. Called on the engine thread; must not block.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnRequestFinished(const RequestTimings& timings) {}
  // After every step that ran: how many prefill and decode tokens it computed, and its duration.
  virtual void OnStep(int32_t prefill_tokens, int32_t decode_tokens, absl::Duration duration) {}
  virtual void OnPreemption(const std::string& request_id) {}
  // A constrained request (GenerateRequest::grammar) was admitted, with this many choices.
  virtual void OnConstrainedRequest(int32_t num_choices) {}
  // The time to compute one constrained-decoding mask (GrammarMatcher::FillNextTokenMask).
  virtual void OnMaskComputed(absl::Duration duration) {}
};

struct KvGroupUsage {
  std::string name;
  int32_t num_blocks = 0;
  int32_t used_blocks = 0;    // Referenced by a sequence.
  int32_t cached_blocks = 0;  // Free but holding a reusable prefix (evictable).
  double usage() const { return num_blocks == 0 ? 0.0 : double(used_blocks) / num_blocks; }
};

struct EngineStats {
  int32_t running = 0;  // Sequences holding KV blocks (sessions included).
  int32_t waiting = 0;
  int32_t sessions = 0;
  std::vector<KvGroupUsage> kv;
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t prompt_tokens_computed = 0;  // Rows prefilled (recomputation included).
  int64_t generation_tokens = 0;
  int64_t requests_finished = 0;
};

struct SessionOptions {
  std::string session_id;  // Unique among open sessions; the engine assigns one when empty.
  int32_t priority = 0;
  std::string cache_salt;
  absl::Duration ttl = absl::ZeroDuration();  // Idle time-to-live; zero = EngineOptions default.
  int32_t max_tokens = 0;                     // Context cap; 0 = EngineOptions default.
};

class EngineImpl;

class Engine {
 public:
  // `runner` is required; `tokenizer` may be null (then every text is empty and stop strings never
  // match); `clock` null means RealClock; `observer` may be null. None is owned; all must outlive
  // the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                        runtime::ModelRunner* runner,
                                                        const runtime::Tokenizer* tokenizer,
                                                        Clock* clock = nullptr,
                                                        EngineObserver* observer = nullptr);
  // Stops the loop; every live request ends with kAbort / Unavailable.
  ~Engine();

  // Admission: InvalidArgument (empty prompt, prompt longer than the context, a media run longer
  // than the step budget, duplicate live id), ResourceExhausted (queue full).
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerateRequest request);
  // Removes the request at the next step boundary (kAbort, Cancelled). NotFound if not live.
  absl::Status Abort(const std::string& request_id);
  EngineStats Stats() const;

  // Sessions (Converse). The context lives in KV blocks between turns and is prefilled as it
  // arrives; on close (or TTL expiry) its blocks go to the prefix cache.
  absl::StatusOr<std::string> OpenSession(const SessionOptions& options);
  // Appends tokens; media runs' `start` is relative to the first appended token. InvalidArgument
  // while a reply is being generated; ResourceExhausted past the session's token cap.
  absl::Status AppendToSession(const std::string& session_id, std::vector<int32_t> tokens,
                               std::vector<runtime::MediaRun> media = {});
  // Generates a reply after the context; the reply's tokens join the context. The handle's id is
  // "<session_id>/<turn>" and Abort accepts it.
  absl::StatusOr<std::shared_ptr<RequestHandle>> GenerateInSession(
      const std::string& session_id, const runtime::SamplingParams& sampling,
      const StoppingParams& stopping);
  absl::Status CloseSession(const std::string& session_id);

  // Runs one step on the calling thread (only when start_loop_thread is false). Returns false
  // when there was nothing to do.
  bool Step();
  // Checks the engine's bookkeeping (only when start_loop_thread is false): every block's ref count
  // equals the number of live block-table entries naming it, the pools are consistent, and every
  // live request is queued or running. Internal naming the first violation.
  absl::Status CheckConsistency();

 private:
  explicit Engine(std::unique_ptr<EngineImpl> impl);
  std::unique_ptr<EngineImpl> impl_;
};

}  // namespace tessera::scheduler
