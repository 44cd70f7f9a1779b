#include "server/inference_service.h"

#include <algorithm>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "server/reply_parser.h"
#include "server/status_mapping.h"

namespace tessera::server {
namespace {

absl::Status Authenticate(ServingState* state, grpc::CallbackServerContext* context) {
  if (!state->keys().enabled()) return absl::OkStatus();
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError(
        "missing API key: send the metadata 'authorization: Bearer <key>'");
  }
  return state->keys().Check(absl::string_view(it->second.data(), it->second.size()));
}

absl::Time Deadline(grpc::CallbackServerContext* context) {
  const auto d = context->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

// Ties engine notifications to a reactor that may already be gone: the notify callback holds this
// and checks `alive` under the lock.
template <typename Reactor>
struct NotifyLink {
  absl::Mutex mu;
  Reactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  void Fire() {
    absl::MutexLock lock(&mu);
    if (reactor != nullptr) reactor->OnEvents();
  }
  void Detach() {
    absl::MutexLock lock(&mu);
    reactor = nullptr;
  }
};

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

v1::FinishReason ToProto(scheduler::FinishReason r) {
  switch (r) {
    case scheduler::FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case scheduler::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case scheduler::FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case scheduler::FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_ERROR;
}

// ---------------------------------------------------------------------------------------------
// Generate
// ---------------------------------------------------------------------------------------------

// The prompt is built on the state's worker pool (Backend::Generate decodes images, resamples and
// tokenizes), never on a gRPC callback thread. While that job runs the call is not finished (a
// cancel or failed write defers Finish until the job is back), so OnDone never races it; OnDone
// itself never waits: a request still running is cancelled and released to end from its
// Completion (ReleaseWhenComplete), which ends the in-flight count and touches no reactor.
class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(ServingState* state, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest* request)
      : state_(state),
        link_(std::make_shared<NotifyLink<GenerateReactor>>()),
        request_(request),
        deadline_(Deadline(context)) {
    absl::Status s = Authenticate(state, context);
    if (s.ok()) s = state->BeginRequest();
    if (!s.ok()) {
      state->Rejected(s);
      Finish(ToGrpcStatus(s));
      return;
    }
    counted_ = true;
    {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = this;
    }
    absl::MutexLock lock(&mu_);
    building_ = true;
    s = state->prompt_pool().Submit([this] { Build(); });
    if (!s.ok()) {
      building_ = false;
      state->Rejected(s);
      FinishOnceLocked(ToGrpcStatus(s));
    }
  }

  // From the engine thread (through the link) or from OnWriteDone: starts the next write if none
  // is in flight. Never blocks.
  void OnEvents() {
    absl::MutexLock lock(&mu_);
    MaybeWriteLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {  // The client is gone; OnCancel follows or has run.
      stream_->Cancel();
      FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    if (final_written_) {
      FinishOnceLocked(final_status_);
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    // The request's KV is freed at the next step boundary.
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (stream_) stream_->Cancel();
    if (!writing_) FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    link_->Detach();
    std::unique_ptr<ReplyStream> stream;
    {
      absl::MutexLock lock(&mu_);
      if (!final_seen_) stream = std::move(stream_);
    }
    if (stream != nullptr) {
      ServingState* state = state_;
      ReleaseWhenComplete(std::move(stream), [state] { state->EndRequest(); });
    } else if (counted_) {
      state_->EndRequest();
    }
    delete this;
  }

 private:
  // On the pool: builds the prompt and submits; then streams from the engine's notifications.
  void Build() {
    auto stream = state_->backend()->Generate(*request_, deadline_);
    ReplyStream* raw = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!stream.ok()) {
        state_->Rejected(stream.status());
        building_ = false;
        FinishOnceLocked(ToGrpcStatus(stream.status()));
        return;
      }
      stream_ = *std::move(stream);
      raw = stream_.get();
      if (cancelled_) stream_->Cancel();
    }
    // Outside mu_: the stream may notify at once, and OnEvents takes mu_. The call cannot finish
    // meanwhile (building_), so the stream is still ours.
    auto link = link_;
    raw->SetNotify([link] { link->Fire(); });
    absl::MutexLock lock(&mu_);
    building_ = false;
    if (deferred_finish_) FinishOnceLocked(deferred_status_);
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || final_written_ || finished_ || stream_ == nullptr) return;
    std::vector<ReplyEvent> events;
    stream_->Drain(&events);
    pending_.insert(pending_.end(), std::make_move_iterator(events.begin()),
                    std::make_move_iterator(events.end()));
    if (pending_.empty()) return;
    response_.Clear();
    response_.set_request_id(stream_->request_id());
    // One response carries one reply (index): events are taken while they are of the same reply,
    // up to and including its `finished`.
    int32_t index = -1;
    while (!pending_.empty()) {
      ReplyEvent& e = pending_.front();
      const int32_t event_index = std::visit([](const auto& x) { return x.index; }, e);
      if (index >= 0 && event_index != index) break;
      index = event_index;
      response_.set_index(static_cast<uint32_t>(index));
      if (auto* d = std::get_if<scheduler::TokenDelta>(&e)) {
        AppendTokens(*d, &response_);
        // For chat requests the text is parsed: answer, reasoning, tool calls.
        AppendPiece(parser_.Push(index, d->text), &response_);
        pending_.pop_front();
        continue;
      }
      const auto& c = std::get<scheduler::Completion>(e);
      AppendPiece(parser_.Finish(index), &response_);
      if (c.reason == scheduler::FinishReason::kError && final_status_.ok()) {
        final_status_ =
            ToGrpcStatus(c.status.ok() ? absl::InternalError("generation failed") : c.status);
      }
      SetFinished(c, &response_);
      response_.mutable_finished()->set_reason(
          ChoiceFinishReasonProto(c, parser_.num_tool_calls(index)));
      pending_.pop_front();
      if (++choices_finished_ == num_choices_) {
        final_seen_ = true;
        final_written_ = true;
      }
      break;
    }
    if (final_written_ && !final_status_.ok() && response_.token_ids_size() == 0) {
      FinishOnceLocked(final_status_);  // Nothing to deliver: just the error.
      return;
    }
    writing_ = true;
    StartWrite(&response_);
  }

  // While the prompt job runs, Finish waits for it (so OnDone never runs under it).
  void FinishOnceLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (building_) {
      if (!deferred_finish_) deferred_status_ = status;
      deferred_finish_ = true;
      return;
    }
    finished_ = true;
    Finish(status);
  }

  static void AppendPiece(ReplyPiece piece, v1::GenerateResponse* out) {
    out->mutable_text()->append(piece.content);
    out->mutable_reasoning()->append(piece.reasoning);
    for (v1::ToolCall& call : piece.tool_calls) *out->add_tool_calls() = std::move(call);
  }

  ServingState* const state_;
  std::shared_ptr<NotifyLink<GenerateReactor>> link_;
  const v1::GenerateRequest* const request_;  // gRPC's, valid until OnDone.
  const int32_t num_choices_ = request_->n() > 1 ? static_cast<int32_t>(request_->n()) : 1;
  ReplyParser parser_{*request_};
  int32_t choices_finished_ = 0;
  const absl::Time deadline_;
  bool counted_ = false;
  absl::Mutex mu_;
  std::unique_ptr<ReplyStream> stream_ ABSL_GUARDED_BY(mu_);
  std::deque<ReplyEvent> pending_ ABSL_GUARDED_BY(mu_);
  v1::GenerateResponse response_ ABSL_GUARDED_BY(mu_);
  bool building_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool deferred_finish_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status deferred_status_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool final_written_ ABSL_GUARDED_BY(mu_) = false;
  bool final_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------------------------
// Converse
// ---------------------------------------------------------------------------------------------

class ConverseReactor final
    : public grpc::ServerBidiReactor<v1::ConverseRequest, v1::ConverseResponse> {
 public:
  ConverseReactor(ServingState* state, grpc::CallbackServerContext* context)
      : state_(state), link_(std::make_shared<NotifyLink<ConverseReactor>>()) {
    absl::Status s = Authenticate(state, context);
    if (s.ok()) s = state->BeginRequest();
    if (!s.ok()) {
      state->Rejected(s);
      Finish(ToGrpcStatus(s));
      return;
    }
    counted_ = true;
    {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = this;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (!ok) {  // Half-close: finish once the reply in progress (if any) is written.
      half_closed_ = true;
      MaybeFinishLocked();
      return;
    }
    // Images and frames are decoded on the worker pool; the next message is read only after this
    // one was handled, so input stays in order.
    if (session_ && (request_.has_image() || request_.has_frame()) && !(reply_ && !reply_done_)) {
      busy_ = true;
      absl::Status s = state_->prompt_pool().Submit([this] { DecodeOnPool(); });
      if (!s.ok()) {
        busy_ = false;
        FailLocked(s);
      }
      return;
    }
    ReplyStream* arm = nullptr;
    absl::Status s = HandleLocked(request_, &arm);
    if (!s.ok()) {
      FailLocked(s);
      return;
    }
    if (arm == nullptr) {
      StartRead(&request_);
      return;
    }
    // The reply's notification may fire at once and OnEvents takes mu_: set it unlocked, with the
    // call held open (busy_) so the reply stays ours.
    busy_ = true;
    mu_.Unlock();
    auto link = link_;
    arm->SetNotify([link] { link->Fire(); });
    mu_.Lock();
    busy_ = false;
    if (deferred_finish_) {
      FinishOnceLocked(deferred_status_);
    } else if (!finished_) {
      StartRead(&request_);
    }
  }

  void OnEvents() {
    absl::MutexLock lock(&mu_);
    PumpRepliesLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      if (reply_) reply_->Cancel();
      FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (reply_) reply_->Cancel();
    if (!writing_) FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    link_->Detach();
    std::unique_ptr<ReplyStream> reply;
    std::unique_ptr<Session> session;
    {
      absl::MutexLock lock(&mu_);
      if (reply_ && !reply_done_) reply = std::move(reply_);
      session = std::move(session_);
    }
    if (reply != nullptr) {
      // A reply still running ends from its Completion, without waiting here.
      ServingState* state = state_;
      ReleaseWhenComplete(std::move(reply), [state] { state->EndRequest(); });
    } else if (counted_) {
      state_->EndRequest();
    }
    session.reset();  // Closes the session: its blocks go to the prefix cache.
    delete this;
  }

 private:
  // On the pool: an image or frame event. The call does not finish meanwhile (busy_), so
  // the session and request_ stay valid.
  void DecodeOnPool() {
    Session* session;
    {
      absl::MutexLock lock(&mu_);
      session = session_.get();
    }
    const absl::Status s = request_.has_image() ? session->AddImage(request_.image())
                                                : session->AddVideoFrame(request_.frame());
    absl::MutexLock lock(&mu_);
    busy_ = false;
    if (deferred_finish_) {
      FinishOnceLocked(deferred_status_);
    } else if (!s.ok()) {
      FailLocked(s);
    } else if (!finished_) {
      StartRead(&request_);
    }
  }

  // `*arm` is set to a new reply whose notification the caller must set up.
  absl::Status HandleLocked(const v1::ConverseRequest& r, ReplyStream** arm)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (r.has_start()) {
      if (session_) return absl::InvalidArgumentError("'start' may only be the first message");
      auto session = state_->backend()->OpenSession(r.start());
      if (!session.ok()) return session.status();
      session_ = *std::move(session);
      v1::ConverseResponse out;
      out.set_session_id(session_->session_id());
      *out.mutable_started()->mutable_model() = state_->backend()->model_info();
      QueueLocked(std::move(out));
      return absl::OkStatus();
    }
    if (!session_) return absl::InvalidArgumentError("the first message must be 'start'");
    if (r.has_interrupt()) {
      if (reply_) reply_->Cancel();
      session_->Interrupt();
      return absl::OkStatus();
    }
    if (reply_ && !reply_done_) {
      return absl::FailedPreconditionError(
          "input arrived while the reply is being generated; send 'interrupt' first");
    }
    if (r.has_audio()) {
      const std::vector<float> samples(r.audio().samples().begin(), r.audio().samples().end());
      if (auto s = session_->AddAudio(samples, static_cast<int>(r.audio().sample_rate()));
          !s.ok()) {
        return s;
      }
      v1::ConverseResponse out;
      out.set_session_id(session_->session_id());
      *out.mutable_progress() = session_->Progress();
      QueueLocked(std::move(out));
      return absl::OkStatus();
    }
    if (r.event_case() == v1::ConverseRequest::kText) return session_->AddText(r.text());
    // (Images and frames are decoded on the pool: OnReadDone.)
    if (r.has_end_turn()) {
      auto reply = session_->EndTurn();
      if (!reply.ok()) return reply.status();
      reply_ = *std::move(reply);
      reply_done_ = false;
      *arm = reply_.get();  // Its notification is set outside mu_ (it may fire at once).
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError("empty ConverseRequest: set one event");
  }

  void PumpRepliesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!reply_ || reply_done_ || finished_) return;
    std::vector<ReplyEvent> events;
    reply_->Drain(&events);
    if (events.empty()) return;
    v1::ConverseResponse out;
    out.set_session_id(session_->session_id());
    v1::GenerateResponse* delta = out.mutable_delta();
    delta->set_request_id(reply_->request_id());
    for (const ReplyEvent& e : events) {
      if (auto* d = std::get_if<scheduler::TokenDelta>(&e)) {
        AppendDelta(*d, delta);
      } else {
        const auto& c = std::get<scheduler::Completion>(e);
        if (c.reason == scheduler::FinishReason::kError) {
          FailLocked(c.status.ok() ? absl::InternalError("generation failed") : c.status);
          return;
        }
        SetFinished(c, delta);
        reply_done_ = true;
      }
    }
    QueueLocked(std::move(out));
    MaybeFinishLocked();
  }

  void QueueLocked(v1::ConverseResponse out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outbox_.push_back(std::move(out));
    WriteNextLocked();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (outbox_.empty()) {
      MaybeFinishLocked();
      return;
    }
    current_ = std::move(outbox_.front());
    outbox_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!half_closed_ || writing_ || !outbox_.empty()) return;
    if (reply_ && !reply_done_) return;  // Deliver the reply being generated first.
    FinishOnceLocked(grpc::Status::OK);
  }

  void FailLocked(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reply_ && !reply_done_) reply_->Cancel();
    FinishOnceLocked(ToGrpcStatus(s));
  }

  // While an image is being decoded on the pool, Finish waits for it.
  void FinishOnceLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (busy_) {
      if (!deferred_finish_) deferred_status_ = status;
      deferred_finish_ = true;
      return;
    }
    finished_ = true;
    Finish(status);
  }

  ServingState* const state_;
  std::shared_ptr<NotifyLink<ConverseReactor>> link_;
  bool counted_ = false;
  v1::ConverseRequest request_;  // Owned by the read in flight (or the decode on the pool).
  absl::Mutex mu_;
  std::unique_ptr<Session> session_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ReplyStream> reply_ ABSL_GUARDED_BY(mu_);
  bool reply_done_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool deferred_finish_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status deferred_status_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::ConverseResponse> outbox_ ABSL_GUARDED_BY(mu_);
  v1::ConverseResponse current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void AppendDelta(const scheduler::TokenDelta& d, v1::GenerateResponse* out) {
  AppendTokens(d, out);
  out->mutable_text()->append(d.text);
}

void AppendTokens(const scheduler::TokenDelta& d, v1::GenerateResponse* out) {
  for (int32_t id : d.token_ids) out->add_token_ids(static_cast<uint32_t>(id));
  for (const auto& lp : d.logprobs) {
    v1::TokenLogprob* p = out->add_logprobs();
    p->set_token_id(static_cast<uint32_t>(lp.token));
    p->set_logprob(lp.logprob);
    for (const auto& t : lp.top) {
      v1::TopLogprob* top = p->add_top();
      top->set_token_id(static_cast<uint32_t>(t.token));
      top->set_logprob(t.logprob);
    }
  }
}

void SetFinished(const scheduler::Completion& c, v1::GenerateResponse* out) {
  v1::Finished* f = out->mutable_finished();
  f->set_reason(ToProto(c.reason));
  v1::Usage* u = f->mutable_usage();
  u->set_prompt_tokens(static_cast<uint32_t>(c.usage.prompt_tokens));
  u->set_cached_prompt_tokens(static_cast<uint32_t>(c.usage.cached_prompt_tokens));
  u->set_completion_tokens(static_cast<uint32_t>(c.usage.completion_tokens));
  auto seconds = [](absl::Duration d) {
    return static_cast<float>(std::max(0.0, absl::ToDoubleSeconds(d)));
  };
  u->set_time_to_first_token_s(seconds(c.usage.time_to_first_token));
  u->set_queue_time_s(seconds(c.usage.queue_time));
  u->set_total_time_s(seconds(c.usage.total_time));
  if (c.stop_string) f->set_stop_string(*c.stop_string);
  if (c.stop_token) f->set_stop_token_id(static_cast<uint32_t>(*c.stop_token));
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateReactor(state_, context, request);
}

grpc::ServerBidiReactor<v1::ConverseRequest, v1::ConverseResponse>* InferenceService::Converse(
    grpc::CallbackServerContext* context) {
  return new ConverseReactor(state_, context);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* context,
                                                  const v1::AbortRequest* request,
                                                  v1::AbortResponse* response) {
  if (absl::Status s = Authenticate(state_, context); !s.ok()) return FinishUnary(context, s);
  if (request->request_id().empty()) {
    return FinishUnary(context, absl::InvalidArgumentError("request_id is required"));
  }
  if (state_->backend() == nullptr || !state_->backend()->Abort(request->request_id())) {
    return FinishUnary(context, absl::NotFoundError(absl::StrCat("no running request has id '",
                                                                 request->request_id(), "'")));
  }
  response->set_aborted(true);
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::CountTokens(grpc::CallbackServerContext* context,
                                                        const v1::CountTokensRequest* request,
                                                        v1::CountTokensResponse* response) {
  absl::Status s = Authenticate(state_, context);
  if (s.ok() && (!state_->ready() || state_->backend() == nullptr)) {
    s = absl::UnavailableError("the model is still loading, or the server is draining");
  }
  if (!s.ok()) return FinishUnary(context, s);
  // Counting builds the prompt (images decoded): on the pool. The call is not finished until the
  // job is done, so `request` and `response` stay valid.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Backend* backend = state_->backend();
  s = state_->prompt_pool().Submit([reactor, backend, request, response] {
    auto counted = backend->CountTokens(*request);
    if (!counted.ok()) {
      reactor->Finish(ToGrpcStatus(counted.status()));
      return;
    }
    *response = *std::move(counted);
    reactor->Finish(grpc::Status::OK);
  });
  if (!s.ok()) reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetModelInfoRequest*,
                                                         v1::GetModelInfoResponse* response) {
  if (absl::Status s = Authenticate(state_, context); !s.ok()) return FinishUnary(context, s);
  Backend* backend = state_->backend();
  if (backend == nullptr) {
    return FinishUnary(context, absl::UnavailableError("the model is still loading"));
  }
  *response->mutable_model() = backend->model_info();
  return FinishUnary(context, absl::OkStatus());
}

}  // namespace tessera::server
