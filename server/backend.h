// What the edge (HTTP and gRPC) needs from the model side, as one interface: the real
// implementation (engine_backend.h) builds prompts and submits to the scheduler's Engine; tests
// substitute a fake so the edge is tested without a model.
//
// Requests arrive as the public proto (both APIs translate into it first), so validation of the
// content lives in one path for HTTP and gRPC alike.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/request.h"
#include "server/metrics.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

// One item of a reply: a delta, then exactly one Completion last.
using ReplyEvent = std::variant<scheduler::TokenDelta, scheduler::Completion>;

// The caller's end of one running request. Thread-safe.
class ReplyStream {
 public:
  virtual ~ReplyStream() = default;
  virtual const std::string& request_id() const = 0;
  // Waits up to `timeout` for the next event; false on timeout or after the Completion was taken.
  virtual bool Next(ReplyEvent* event, absl::Duration timeout) = 0;
  // Moves every queued event into `out`; true once the stream has ended.
  virtual bool Drain(std::vector<ReplyEvent>* out) = 0;
  // `notify` runs (on an engine thread; it must not block) whenever events are queued.
  virtual void SetNotify(std::function<void()> notify) = 0;
  // Stops the request in the engine (client gone, deadline); its Completion still follows.
  virtual void Cancel() = 0;
};

// Lets go of a request whose caller is gone without waiting for it: cancels it and keeps `stream`
// alive until the engine delivers its Completion, then runs `on_complete` (on the thread that
// delivers it; it must not block) and frees the stream. Nothing here refers to the caller.
void ReleaseWhenComplete(std::unique_ptr<ReplyStream> stream, std::function<void()> on_complete);

// A real-time Converse session (see inference.proto).
class Session {
 public:
  virtual ~Session() = default;
  virtual const std::string& session_id() const = 0;
  // Input of the current user turn; audio is prefilled as complete frames arrive.
  virtual absl::Status AddAudio(const std::vector<float>& samples, int sample_rate) = 0;
  virtual absl::Status AddText(const std::string& text) = 0;
  virtual absl::Status AddImage(const v1::Image& image) = 0;
  // A video frame: "mm:ss" + the frame's soft tokens (at most 70) as <|video|> placeholders.
  virtual absl::Status AddVideoFrame(const v1::VideoFrame& frame) = 0;
  virtual v1::InputProgress Progress() = 0;
  // Ends the user's turn and starts the reply.
  virtual absl::StatusOr<std::unique_ptr<ReplyStream>> EndTurn() = 0;
  // Stops the reply being generated; what was generated stays in the context.
  virtual void Interrupt() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const v1::ModelInfo& model_info() const = 0;
  // Validates, builds the prompt and submits. InvalidArgument for bad input, ResourceExhausted when
  // the queue is full, Unavailable when stopping.
  virtual absl::StatusOr<std::unique_ptr<ReplyStream>> Generate(const v1::GenerateRequest& request,
                                                                absl::Time deadline) = 0;
  // True if a running request was aborted; false if none had that id.
  virtual bool Abort(const std::string& request_id) = 0;
  virtual absl::StatusOr<v1::CountTokensResponse> CountTokens(
      const v1::CountTokensRequest& request) = 0;
  virtual absl::StatusOr<std::unique_ptr<Session>> OpenSession(const v1::SessionStart& start) = 0;
  // The vocabulary string of a token, for logprobs.
  virtual std::string TokenText(int32_t token_id) const = 0;
  virtual EngineSnapshot Snapshot() = 0;
};

}  // namespace tessera::server
