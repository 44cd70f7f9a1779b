// Sessions for the Converse API: a context that stays in KV blocks between turns (engine.h).
#include <algorithm>

#include "scheduler/engine_impl.h"

namespace tessera::scheduler {

absl::StatusOr<std::string> EngineImpl::OpenSession(const SessionOptions& options) {
  SessionOptions opts = options;
  if (opts.ttl <= absl::ZeroDuration()) opts.ttl = options_.session_ttl;
  if (opts.max_tokens <= 0) opts.max_tokens = options_.max_session_tokens;
  opts.max_tokens = std::min({opts.max_tokens, options_.max_context_length, kv_capacity_tokens_});
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::UnavailableError("the engine is shutting down");
    if (static_cast<int32_t>(session_info_.size()) >= options_.max_sessions) {
      return absl::ResourceExhaustedError(absl::StrCat(session_info_.size(),
                                                       " sessions are open; the limit "
                                                       "(max_sessions) is ",
                                                       options_.max_sessions));
    }
    if (opts.session_id.empty()) opts.session_id = absl::StrCat("session-", next_request_number_++);
    if (session_info_.contains(opts.session_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("session id \"", opts.session_id, "\" is already open"));
    }
    session_info_[opts.session_id] = SessionInfo{0, opts.max_tokens, false};
    ops_.push_back([this, opts] {
      auto s = std::make_unique<SessionState>();
      s->options = opts;
      s->last_active = clock_->Now();
      s->state = std::make_unique<RequestState>();
      RequestState* r = s->state.get();
      r->session = s.get();
      r->seq.owner = r;
      r->turn_id = opts.session_id;
      r->seq.request_id = opts.session_id;
      r->seq.id = next_seq_id_++;
      r->seq.priority = opts.priority;
      r->seq.arrival = clock_->Now();
      r->seq.arrival_order = next_arrival_++;
      r->seq.is_session = true;
      r->seq.generating = false;
      r->seq.root_key = RootKey(options_.model_identity, opts.cache_salt);
      kv_.InitSequence(&r->seq);
      sessions_[opts.session_id] = std::move(s);
    });
  }
  return opts.session_id;
}

absl::Status EngineImpl::AppendToSession(const std::string& id, std::vector<int32_t> tokens,
                                         std::vector<runtime::MediaRun> media) {
  if (absl::Status s = ValidateMedia(media, static_cast<int32_t>(tokens.size())); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = session_info_.find(id);
  if (it == session_info_.end()) {
    return absl::NotFoundError(absl::StrCat("no open session \"", id, "\""));
  }
  SessionInfo& info = it->second;
  if (info.generating) {
    return absl::InvalidArgumentError(
        absl::StrCat("session \"", id, "\" is generating a reply; append after it completes"));
  }
  const int32_t total = info.tokens + static_cast<int32_t>(tokens.size());
  if (total >= info.max_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat("session \"", id, "\" would hold ", total,
                                                     " tokens; its limit is ", info.max_tokens,
                                                     " (leaving room for a reply)"));
  }
  info.tokens = total;
  ops_.push_back([this, id, tokens = std::move(tokens), media = std::move(media)]() mutable {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    SessionState* s = it->second.get();
    Sequence& seq = s->state->seq;
    const int32_t offset = seq.num_tokens();
    for (auto& run : media) {
      run.start += offset;
      seq.media.push_back(std::move(run));
    }
    seq.prompt.insert(seq.prompt.end(), tokens.begin(), tokens.end());
    s->last_active = clock_->Now();
    if (seq.state == SequenceState::kNew || seq.state == SequenceState::kDone) {
      scheduler_.AddWaiting(&seq);
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RequestHandle>> EngineImpl::GenerateInSession(
    const std::string& id, const runtime::SamplingParams& sampling,
    const StoppingParams& stopping) {
  std::shared_ptr<RequestHandle> handle;
  absl::MutexLock lock(&mu_);
  auto it = session_info_.find(id);
  if (it == session_info_.end()) {
    return absl::NotFoundError(absl::StrCat("no open session \"", id, "\""));
  }
  SessionInfo& info = it->second;
  if (info.generating) {
    return absl::InvalidArgumentError(
        absl::StrCat("session \"", id, "\" is already generating a reply"));
  }
  if (info.tokens == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("session \"", id, "\" has no context to reply to"));
  }
  if (info.tokens >= info.max_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat("session \"", id, "\" holds ", info.tokens,
                                                     " tokens, its limit: no room for a reply"));
  }
  info.generating = true;
  const std::string turn_id = absl::StrCat(id, "/", next_request_number_++);
  live_ids_.insert(turn_id);
  handle = std::make_shared<RequestHandle>(turn_id);
  ops_.push_back([this, id, turn_id, handle, sampling, stopping] {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    SessionState* s = it->second.get();
    RequestState* r = s->state.get();
    r->handle = handle;
    r->turn_id = turn_id;
    r->arrival = clock_->Now();
    r->deadline = absl::InfiniteFuture();
    ++s->turns;
    InitTurn(r, sampling, stopping, s->options.max_tokens);
    r->seq.generating = true;
    if (r->seq.state == SequenceState::kNew || r->seq.state == SequenceState::kDone) {
      scheduler_.AddWaiting(&r->seq);
    }
  });
  return handle;
}

absl::Status EngineImpl::CloseSession(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (session_info_.erase(id) == 0) {
    return absl::NotFoundError(absl::StrCat("no open session \"", id, "\""));
  }
  ops_.push_back([this, id] { CloseSessionNow(id); });
  return absl::OkStatus();
}

void EngineImpl::CloseSessionNow(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  RequestState* r = it->second->state.get();
  if (r->handle != nullptr) {
    Finish(r, FinishReason::kAbort, absl::CancelledError("the session was closed"));
  }
  // Its full blocks stay in the prefix cache (freed tail first).
  if (r->seq.state != SequenceState::kNew) scheduler_.Remove(&r->seq);
  sessions_.erase(it);
  absl::MutexLock lock(&mu_);
  session_info_.erase(id);
}

}  // namespace tessera::scheduler
