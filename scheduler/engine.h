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
#include "scheduler/request.h"

namespace tessera::scheduler {

// One item of a request's output stream: a delta, then exactly one completion last.
using RequestEvent = std::variant<TokenDelta, Completion>;

// The caller's end of a submitted request. Events are queued by the engine; the caller either polls
// (Next) or is notified (the callback runs on the engine thread and must not block: it should only
// schedule work, e.g. start a gRPC write).
class RequestHandle {
 public:
  const std::string& request_id() const { return request_id_; }

  // Waits up to `timeout` for the next event. False on timeout. After the Completion, returns
  // false immediately.
  bool Next(RequestEvent* event, absl::Duration timeout = absl::InfiniteDuration());
  // Non-blocking: moves every queued event into `out`. Returns true if the stream has ended (the
  // Completion is in `out` or was taken before).
  bool Drain(std::vector<RequestEvent>* out);
  // Sets the notification callback (replacing any); it is invoked once per batch of new events, and
  // immediately if events are already queued.
  void SetNotify(std::function<void()> notify);

  // Engine side.
  explicit RequestHandle(std::string request_id) : request_id_(std::move(request_id)) {}
  void Push(RequestEvent event);

 private:
  const std::string request_id_;
  absl::Mutex mu_;
  std::vector<RequestEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool finished_pushed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_taken_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::scheduler
