#include "scheduler/engine.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "scheduler/engine_impl.h"

namespace tessera::scheduler {

absl::Status EngineImpl::ValidateMedia(const std::vector<runtime::MediaRun>& media,
                                       int32_t num_tokens) const {
  int32_t prev_end = 0;
  for (size_t i = 0; i < media.size(); ++i) {
    const auto& run = media[i];
    if (run.item == nullptr || run.item->num_rows <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("media run ", i, " has no rows"));
    }
    if (run.start < prev_end || run.end() > num_tokens) {
      return absl::InvalidArgumentError(
          absl::StrCat("media run ", i, " at [", run.start, ", ", run.end(),
                       ") overlaps another or lies outside the ", num_tokens, " tokens"));
    }
    if (run.item->num_rows > options_.max_num_batched_tokens) {
      return absl::InvalidArgumentError(
          absl::StrCat("media item ", i, " has ", run.item->num_rows,
                       " rows; a step computes at most max_num_batched_tokens = ",
                       options_.max_num_batched_tokens, " and a media run is never split"));
    }
    prev_end = run.end();
  }
  return absl::OkStatus();
}

void EngineImpl::InitTurn(RequestState* r, const runtime::SamplingParams& sampling,
                          const StoppingParams& stopping, int32_t context_limit) {
  r->sampling = sampling;
  r->stopping = stopping;
  r->stop_ids = stopping.stop_token_ids;
  if (!stopping.ignore_eos) r->stop_ids.insert(r->stop_ids.end(), eos_ids_.begin(), eos_ids_.end());
  std::sort(r->stop_ids.begin(), r->stop_ids.end());
  r->stop_ids.erase(std::unique(r->stop_ids.begin(), r->stop_ids.end()), r->stop_ids.end());
  const int32_t room = std::min(context_limit, kv_capacity_tokens_) - r->seq.num_tokens();
  r->max_output = stopping.max_tokens > 0 ? std::min(stopping.max_tokens, room) : room;
  r->turn_prompt_tokens = r->seq.num_tokens();
  r->turn_cached_tokens = r->seq.num_computed;
  r->decoder = tokenizer_ == nullptr
                   ? nullptr
                   : std::make_unique<runtime::IncrementalDecoder>(
                         tokenizer_, /*skip_special=*/true, r->visible_special_tokens);
  r->matcher = std::make_unique<StopStringMatcher>(stopping.stop_strings);
  r->first_scheduled = r->first_token = r->last_token = absl::InfiniteFuture();
  r->itl.clear();
  r->itl.reserve(std::clamp(r->max_output, 0, 256));
  r->seq.output.clear();
}

absl::StatusOr<std::shared_ptr<RequestHandle>> EngineImpl::Submit(GenerateRequest request) {
  const int32_t n = request.prompt.size();
  if (n == 0) return absl::InvalidArgumentError("the prompt is empty");
  if (n >= options_.max_context_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", n, " tokens; the context length is ",
                     options_.max_context_length, " and at least one output token must fit"));
  }
  if (n >= kv_capacity_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", n,
                                                   " tokens; the KV cache holds at most ",
                                                   kv_capacity_tokens_, " tokens of one sequence"));
  }
  if (absl::Status s = ValidateMedia(request.prompt.media, n); !s.ok()) return s;
  if (request.num_choices < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_choices is ", request.num_choices, "; it must be at least 1"));
  }
  if (request.grammar != nullptr && request.stopping.ignore_eos) {
    return absl::InvalidArgumentError(
        "ignore_eos cannot be combined with constrained decoding: the grammar ends the output with "
        "a stop token");
  }
  const absl::Time now = clock_->Now();
  auto r = std::make_unique<RequestState>();
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::UnavailableError("the engine is shutting down");
    if (request.request_id.empty()) {
      request.request_id = absl::StrCat("req-", next_request_number_++);
    }
    if (live_ids_.contains(request.request_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("request id \"", request.request_id, "\" is already in use"));
    }
    const int32_t waiting = waiting_snapshot_ + static_cast<int32_t>(incoming_.size());
    if (waiting >= options_.max_queue_length) {
      return absl::ResourceExhaustedError(
          absl::StrCat(waiting, " requests are waiting; the queue limit (max_queue_length) is ",
                       options_.max_queue_length));
    }
    live_ids_.insert(request.request_id);
  }
  r->seq.owner = r.get();
  r->turn_id = request.request_id;
  r->handle = std::make_shared<RequestHandle>(request.request_id, request.num_choices);
  r->seq.request_id = request.request_id;
  r->seq.priority = request.priority;
  r->seq.arrival = request.arrival == absl::InfinitePast() ? now : request.arrival;
  r->arrival = r->seq.arrival;
  r->deadline = request.deadline;
  r->seq.prompt = std::move(request.prompt.token_ids);
  r->seq.media = std::move(request.prompt.media);
  r->seq.root_key = RootKey(options_.model_identity, request.cache_salt);
  r->visible_special_tokens = std::move(request.visible_special_tokens);
  InitTurn(r.get(), request.sampling, request.stopping, options_.max_context_length);
  if (request.grammar != nullptr) r->grammar.emplace(request.grammar, r->stop_ids, 0);
  if (request.num_choices > 1) {
    r->group = std::make_shared<ChoiceGroup>();
    r->group->request_id = request.request_id;
    for (int32_t i = 1; i < request.num_choices; ++i) {
      auto c = std::make_unique<RequestState>();
      c->seq.owner = c.get();
      c->index = i;
      c->group = r->group;
      c->turn_id = absl::StrCat(request.request_id, "#", i);
      c->handle = r->handle;
      c->seq.request_id = c->turn_id;
      c->seq.priority = r->seq.priority;
      c->seq.arrival = r->seq.arrival;
      c->arrival = r->arrival;
      c->deadline = r->deadline;
      c->seq.prompt = r->seq.prompt;
      c->seq.media = r->seq.media;
      c->seq.root_key = r->seq.root_key;
      c->visible_special_tokens = r->visible_special_tokens;
      runtime::SamplingParams sampling = request.sampling;
      sampling.seed = ChoiceSeed(request.sampling.seed, i);
      InitTurn(c.get(), sampling, request.stopping, options_.max_context_length);
      if (r->grammar) c->grammar = r->grammar;  // A copy: each choice matches on its own.
      r->group->pending.push_back(std::move(c));
    }
  }
  auto handle = r->handle;
  {
    absl::MutexLock lock(&mu_);
    incoming_.push_back(std::move(r));
  }
  return handle;
}

void EngineImpl::ApplyBoundary(absl::Time now) {
  std::vector<std::unique_ptr<RequestState>> incoming;
  std::vector<std::string> aborts;
  std::vector<std::function<void()>> ops;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(incoming_);
    aborts.swap(aborts_);
    ops.swap(ops_);
  }
  for (auto& r : incoming) {
    RequestState* raw = r.get();
    raw->seq.id = next_seq_id_++;
    raw->seq.arrival_order = next_arrival_++;
    if (raw->group != nullptr) {
      // The other choices keep their place in the queue from now on.
      for (auto& c : raw->group->pending) c->seq.arrival_order = next_arrival_++;
      raw->group->live.push_back(raw);
      groups_[raw->group->request_id] = raw->group;
    }
    if (raw->grammar && observer_ != nullptr) {
      observer_->OnConstrainedRequest(
          raw->group ? 1 + static_cast<int32_t>(raw->group->pending.size()) : 1);
    }
    kv_.InitSequence(&raw->seq);
    if (raw->deadline != absl::InfiniteFuture()) with_deadline_.insert(raw);
    live_[raw->turn_id] = std::move(r);
    scheduler_.AddWaiting(&raw->seq);
  }
  for (auto& op : ops) op();
  for (const std::string& id : aborts) {
    if (auto g = groups_.find(id); g != groups_.end()) {
      const std::shared_ptr<ChoiceGroup> group = g->second;  // Finish may erase the entry.
      const std::vector<RequestState*> members = group->live;
      for (RequestState* m : members) {
        Finish(m, FinishReason::kAbort, absl::CancelledError("aborted"));
      }
      continue;
    }
    auto it = live_.find(id);
    if (it != live_.end()) {
      Finish(it->second.get(), FinishReason::kAbort, absl::CancelledError("aborted"));
      continue;
    }
    // A session turn: "<session>/<n>".
    for (auto& [sid, s] : sessions_) {
      if (s->state->handle != nullptr && s->state->turn_id == id) {
        Finish(s->state.get(), FinishReason::kAbort, absl::CancelledError("aborted"));
        break;
      }
    }
  }
  if (!with_deadline_.empty()) {
    std::vector<RequestState*> expired;
    for (RequestState* r : with_deadline_) {
      if (r->deadline <= now) expired.push_back(r);
    }
    for (RequestState* r : expired) {
      Finish(r, FinishReason::kAbort,
             absl::DeadlineExceededError(absl::StrCat("the request's deadline passed after ",
                                                      absl::FormatDuration(now - r->arrival))));
    }
  }
  std::vector<std::string> idle;
  for (auto& [sid, s] : sessions_) {
    if (s->state->handle == nullptr && s->last_active + s->options.ttl <= now) idle.push_back(sid);
  }
  for (const auto& sid : idle) {
    TESSERA_LOG(INFO) << "session " << sid << " expired after its TTL";
    CloseSessionNow(sid);
  }
}

void EngineImpl::Finish(RequestState* r, FinishReason reason, absl::Status status,
                        TokenDelta* delta, std::optional<std::string> stop_string,
                        std::optional<int32_t> stop_token) {
  const absl::Time now = clock_->Now();
  if (reason == FinishReason::kStop || reason == FinishReason::kLength) {
    // Whatever text is still held back is final now.
    TokenDelta local;
    TokenDelta* d = delta != nullptr ? delta : &local;
    if (!stop_string.has_value()) {
      std::optional<std::string> matched;
      d->text += r->matcher->Append(r->decoder ? r->decoder->Flush() : "", &matched);
      if (matched) {
        stop_string = matched;
      } else {
        d->text += r->matcher->Flush();
      }
    }
    if (!d->token_ids.empty() || !d->text.empty()) r->handle->Push(std::move(*d));
  } else if (delta != nullptr && !delta->token_ids.empty()) {
    r->handle->Push(std::move(*delta));
  }
  Completion c;
  c.index = r->index;
  c.reason = reason;
  c.status = status;
  c.stop_string = stop_string;
  c.stop_token = stop_token;
  c.usage.prompt_tokens = r->turn_prompt_tokens;
  c.usage.cached_prompt_tokens =
      r->session == nullptr ? r->seq.cached_prompt_tokens : r->turn_cached_tokens;
  c.usage.completion_tokens = static_cast<int32_t>(r->seq.output.size());
  const bool scheduled = r->first_scheduled != absl::InfiniteFuture();
  const bool has_token = r->first_token != absl::InfiniteFuture();
  c.usage.queue_time = (scheduled ? r->first_scheduled : now) - r->arrival;
  c.usage.time_to_first_token = has_token ? r->first_token - r->arrival : absl::ZeroDuration();
  c.usage.total_time = now - r->arrival;
  if (observer_ != nullptr) {
    RequestTimings t;
    t.request_id = r->turn_id;
    t.reason = reason;
    // The prompt is shared by the choices: counted with the first only.
    t.prompt_tokens = r->index == 0 ? c.usage.prompt_tokens : 0;
    t.cached_prompt_tokens = r->index == 0 ? c.usage.cached_prompt_tokens : 0;
    t.completion_tokens = c.usage.completion_tokens;
    t.queue_time = c.usage.queue_time;
    t.time_to_first_token = c.usage.time_to_first_token;
    t.prefill_time =
        scheduled && has_token ? r->first_token - r->first_scheduled : absl::ZeroDuration();
    t.decode_time = has_token ? r->last_token - r->first_token : absl::ZeroDuration();
    t.e2e_time = c.usage.total_time;
    t.inter_token_latencies = r->itl;
    observer_->OnRequestFinished(t);
  }
  ++requests_finished_;
  const std::string turn_id = r->turn_id;
  // The request id stays live until its last choice ends.
  std::string ended_id = turn_id;
  std::shared_ptr<ChoiceGroup> group = r->group;
  if (group != nullptr) {
    auto& live = group->live;
    live.erase(std::remove(live.begin(), live.end(), r), live.end());
    if (reason == FinishReason::kAbort || reason == FinishReason::kError) {
      // Choice 0 ended before the others started: they end the same way.
      FinishPendingChoices(group.get(), reason, status, c.usage.prompt_tokens);
    }
    ended_id = group->done() ? group->request_id : "";
    if (group->done()) groups_.erase(group->request_id);
  }
  // The state callers can see changes before the Completion is delivered: whoever takes it may at
  // once append to the session or reuse the request id.
  {
    absl::MutexLock lock(&mu_);
    if (!ended_id.empty()) live_ids_.erase(ended_id);
    if (r->session != nullptr) {
      auto it = session_info_.find(r->session->options.session_id);
      if (it != session_info_.end()) {
        it->second.generating = false;
        it->second.tokens += static_cast<int32_t>(r->seq.output.size());
      }
    }
  }
  r->handle->Push(std::move(c));
  if (r->session != nullptr) {
    // The reply joins the context; the session keeps its blocks (unless the step failed: then
    // nothing is known about the KV it wrote and it is recomputed when it next runs).
    Sequence& seq = r->seq;
    seq.prompt.insert(seq.prompt.end(), seq.output.begin(), seq.output.end());
    seq.output.clear();
    seq.generating = false;
    r->handle = nullptr;
    r->session->last_active = now;
    if (reason == FinishReason::kError) scheduler_.Remove(&seq);
    return;
  }
  scheduler_.Remove(&r->seq);
  with_deadline_.erase(r);
  live_.erase(turn_id);  // Destroys r.
}

void EngineImpl::FinishPendingChoices(ChoiceGroup* group, FinishReason reason,
                                      const absl::Status& status, int32_t prompt_tokens) {
  for (auto& pending : group->pending) {
    Completion c;
    c.index = pending->index;
    c.reason = reason;
    c.status = status;
    c.usage.prompt_tokens = prompt_tokens;
    pending->handle->Push(std::move(c));
  }
  group->pending.clear();
}

void EngineImpl::StartPendingChoices(RequestState* first) {
  ChoiceGroup* group = first->group.get();
  for (auto& c : group->pending) {
    RequestState* raw = c.get();
    raw->seq.id = next_seq_id_++;
    kv_.InitSequence(&raw->seq);
    if (raw->deadline != absl::InfiniteFuture()) with_deadline_.insert(raw);
    group->live.push_back(raw);
    live_[raw->turn_id] = std::move(c);
    scheduler_.AddWaiting(&raw->seq);
  }
  group->pending.clear();
}

void EngineImpl::HandleToken(RequestState* r, const runtime::SampleResult& sampled,
                             absl::Time now) {
  Sequence& seq = r->seq;
  const int32_t token = sampled.token;
  // The first sample means the prompt is computed (and its full blocks are in the prefix cache):
  // the other choices start now, before this one can finish.
  if (seq.output.empty() && r->group != nullptr && !r->group->pending.empty()) {
    StartPendingChoices(r);
  }
  seq.output.push_back(token);
  ++generation_tokens_;
  if (r->first_token == absl::InfiniteFuture()) {
    r->first_token = now;
  } else {
    r->itl.push_back(now - r->last_token);
  }
  r->last_token = now;
  TokenDelta delta;
  delta.index = r->index;
  delta.token_ids.push_back(token);
  if (r->sampling.logprobs || r->sampling.top_logprobs > 0) {
    delta.logprobs.push_back(TokenLogprob{token, sampled.logprob, sampled.top});
  }
  if (r->grammar) {
    // The token was sampled under the matcher's mask; only a grammar too ambiguous for the
    // matcher's stack limit fails here.
    if (absl::Status s = r->grammar->AcceptToken(token); !s.ok()) {
      Finish(r, FinishReason::kError,
             absl::Status(s.code(), absl::StrCat("constrained decoding: ", s.message())), &delta);
      return;
    }
  }
  const int32_t count = static_cast<int32_t>(seq.output.size());
  const bool is_stop = std::binary_search(r->stop_ids.begin(), r->stop_ids.end(), token);
  // With a grammar, a stop token is sampled only where the grammar ends (min_tokens yields).
  if (is_stop && (count > r->stopping.min_tokens - 1 || r->grammar)) {
    Finish(r, FinishReason::kStop, absl::OkStatus(), &delta, std::nullopt, token);
    return;
  }
  std::optional<std::string> matched;
  delta.text = r->matcher->Append(r->decoder ? r->decoder->Push(token) : "", &matched);
  if (matched) {
    Finish(r, FinishReason::kStop, absl::OkStatus(), &delta, matched);
    return;
  }
  if (r->grammar && r->grammar->IsCompleted()) {
    // Nothing but a stop token may follow: end now rather than spend a step sampling it.
    Finish(r, FinishReason::kStop, absl::OkStatus(), &delta);
    return;
  }
  if (count >= r->max_output) {
    Finish(r, FinishReason::kLength, absl::OkStatus(), &delta);
    return;
  }
  r->handle->Push(std::move(delta));
}

bool EngineImpl::StepOnce() {
  const absl::Time now = clock_->Now();
  ApplyBoundary(now);
  StepSchedule step = scheduler_.Schedule();
  if (observer_ != nullptr) {
    for (Sequence* s : step.preempted) observer_->OnPreemption(s->request_id);
  }
  if (step.empty()) {
    absl::MutexLock lock(&mu_);
    UpdateStatsLocked();
    return false;
  }
  // The owner of each scheduled sequence: a plain request or a session. The plan and output are
  // members reused step to step so that their vectors keep their capacity.
  // NOTE: rebuilding them from scratch cost ~1300 allocations per step at 256 sequences.
  std::vector<RequestState*>& owners = owners_;
  owners.clear();
  runtime::BatchPlan& plan = plan_;
  plan.seqs.resize(step.chunks.size());
  int32_t prefill_tokens = 0, decode_tokens = 0;
  for (size_t i = 0; i < step.chunks.size(); ++i) {
    const ScheduledChunk& ch = step.chunks[i];
    Sequence* seq = ch.seq;
    RequestState* r = static_cast<RequestState*>(seq->owner);
    owners.push_back(r);
    if (r->handle != nullptr && r->first_scheduled == absl::InfiniteFuture()) {
      r->first_scheduled = now;
    }
    runtime::SequencePlan& sp = plan.seqs[i];
    sp.seq_id = seq->id;
    sp.start_pos = ch.start;
    const int32_t end = ch.start + ch.num_tokens;
    sp.token_ids.resize(ch.num_tokens);
    for (int32_t p = ch.start; p < end; ++p) sp.token_ids[p - ch.start] = seq->TokenAt(p);
    sp.media.clear();
    sp.bidirectional.clear();
    sp.logits_rows.clear();
    if (!seq->media.empty()) {
      auto it = std::upper_bound(
          seq->media.begin(), seq->media.end(), ch.start,
          [](int32_t pos, const runtime::MediaRun& run) { return pos < run.end(); });
      for (; it != seq->media.end() && it->start < end; ++it) {
        const int32_t b = std::max(ch.start, it->start);
        const int32_t e = std::min(end, it->end());
        sp.media.push_back({it->item.get(), b - it->start, b - ch.start, e - b});
        if (it->bidirectional()) sp.bidirectional.push_back({it->start, it->end()});
      }
    }
    // Lent, not copied: swapped back right after Execute (nothing else reads them meanwhile).
    // NOTE: copying them cost ~1.6 KB of memmove per sequence per step at 2.5k-token contexts.
    sp.block_tables.swap(seq->block_tables);
    sp.sample = ch.sample;
    sp.sampling_context = runtime::SamplingContext{};
    if (ch.sample) {
      sp.sampling = r->sampling;
      sp.sampling_context.prompt_tokens = &seq->prompt;
      sp.sampling_context.output_tokens = &seq->output;
      sp.sampling_context.step = seq->output.size();
      if (r->grammar) {
        // NOTE: computed here, on the engine thread, per sampled row (p99 ~8 us on Gemma 4's
        // vocabulary, docs/performance.md); the runner applies it before sampling.
        r->mask.resize(r->grammar->mask_words());
        const absl::Time mask_start = absl::Now();
        r->grammar->FillNextTokenMask(r->mask.data());
        if (observer_ != nullptr) observer_->OnMaskComputed(absl::Now() - mask_start);
        sp.sampling_context.allowed_tokens = r->mask.data();
        sp.sampling_context.allowed_tokens_vocab = r->grammar->vocab_size();
      }
      // min_tokens holds stop tokens back, unless a grammar allows nothing else.
      if (static_cast<int32_t>(seq->output.size()) < r->stopping.min_tokens &&
          !(r->grammar && r->grammar->IsCompleted())) {
        sp.sampling_context.banned_tokens = r->stop_ids;
      }
    }
    if (ch.num_tokens == 1 && !seq->output.empty()) {
      ++decode_tokens;
    } else {
      prefill_tokens += ch.num_tokens;
    }
  }
  runtime::StepOutput& out = out_;
  const absl::Status status = runner_->Execute(plan, &out);
  for (size_t i = 0; i < owners.size(); ++i) {
    plan.seqs[i].block_tables.swap(owners[i]->seq.block_tables);
  }
  const absl::Time done = clock_->Now();
  ++steps_;
  prompt_tokens_computed_ += prefill_tokens;
  if (!status.ok()) {
    TESSERA_LOG(ERROR) << "step " << steps_ << " failed for " << owners.size()
                       << " sequences: " << status;
    for (RequestState* r : owners) {
      if (r->handle != nullptr) {
        Finish(r, FinishReason::kError, status);
      } else {
        scheduler_.Remove(&r->seq);  // An idle session's prefill: recomputed when it next runs.
      }
    }
  } else if (out.seqs.size() != plan.seqs.size()) {
    const absl::Status bad = absl::InternalError(absl::StrCat(
        "the runner returned ", out.seqs.size(), " outputs for ", plan.seqs.size(), " sequences"));
    for (RequestState* r : owners) {
      if (r->handle != nullptr) {
        Finish(r, FinishReason::kError, bad);
      } else {
        scheduler_.Remove(&r->seq);
      }
    }
  } else {
    for (size_t i = 0; i < owners.size(); ++i) {
      RequestState* r = owners[i];
      const ScheduledChunk& ch = step.chunks[i];
      r->seq.num_computed = ch.start + ch.num_tokens;
      kv_.OnComputed(&r->seq);
      if (ch.sample) HandleToken(r, out.seqs[i].sampled, done);
    }
  }
  if (observer_ != nullptr) observer_->OnStep(prefill_tokens, decode_tokens, done - now);
  absl::MutexLock lock(&mu_);
  UpdateStatsLocked();
  return true;
}

absl::Status EngineImpl::CheckConsistency() const {
  if (!kv_.CheckInvariants()) return absl::InternalError("a block pool is inconsistent");
  for (int32_t g = 0; g < kv_.num_groups(); ++g) {
    std::vector<int32_t> refs(kv_.pool(g).num_blocks(), 0);
    for (const Sequence* seq : scheduler_.running()) {
      for (int32_t b : seq->block_tables[g]) {
        if (b != runtime::kReleasedBlock) ++refs[b];
      }
    }
    for (int32_t b = 0; b < kv_.pool(g).num_blocks(); ++b) {
      if (refs[b] != kv_.pool(g).ref_count(b)) {
        return absl::InternalError(absl::StrCat("group ", g, " block ", b, " has ref count ",
                                                kv_.pool(g).ref_count(b), " but ", refs[b],
                                                " table entries"));
      }
    }
  }
  for (const auto& [id, r] : live_) {
    if (r->seq.state != SequenceState::kWaiting && r->seq.state != SequenceState::kRunning) {
      return absl::InternalError(
          absl::StrCat("live request ", id, " is neither queued nor running"));
    }
    if (r->seq.state == SequenceState::kWaiting && r->seq.num_computed != 0) {
      return absl::InternalError(absl::StrCat("waiting request ", id, " holds KV"));
    }
  }
  return absl::OkStatus();
}

void EngineImpl::UpdateStatsLocked() {
  stats_.running = scheduler_.num_running();
  stats_.waiting = scheduler_.num_waiting();
  waiting_snapshot_ = stats_.waiting;
  stats_.sessions = static_cast<int32_t>(session_info_.size());
  stats_.kv.resize(kv_.num_groups());
  for (int32_t g = 0; g < kv_.num_groups(); ++g) {
    stats_.kv[g].name = kv_.group(g).name;
    stats_.kv[g].num_blocks = kv_.pool(g).num_blocks();
    stats_.kv[g].used_blocks = kv_.pool(g).num_used();
    stats_.kv[g].cached_blocks = kv_.pool(g).num_cached_free();
  }
  stats_.prefix_query_tokens = scheduler_.prefix_query_tokens();
  stats_.prefix_hit_tokens = scheduler_.prefix_hit_tokens();
  stats_.preemptions = scheduler_.preemptions();
  stats_.steps = steps_;
  stats_.prompt_tokens_computed = prompt_tokens_computed_;
  stats_.generation_tokens = generation_tokens_;
  stats_.requests_finished = requests_finished_;
}

void EngineImpl::Loop() {
  bool busy = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!busy) {
        // Sleep until a caller hands over work, or briefly (deadlines and session TTLs).
        auto has_input = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopped_ || !incoming_.empty() || !aborts_.empty() || !ops_.empty();
        };
        mu_.AwaitWithTimeout(absl::Condition(&has_input), absl::Milliseconds(10));
      }
      if (stopped_) return;
    }
    busy = StepOnce();
  }
}

// ---------------------------------------------------------------------------------------------
// Engine

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options,
                                                       runtime::ModelRunner* runner,
                                                       const runtime::Tokenizer* tokenizer,
                                                       Clock* clock, EngineObserver* observer) {
  if (runner == nullptr) return absl::InvalidArgumentError("the engine needs a ModelRunner");
  const auto& spec = runner->kv_spec();
  if (spec.groups.empty()) return absl::InvalidArgumentError("the runner has no KV groups");
  if (options.max_num_seqs <= 0 || options.max_num_batched_tokens <= 0 ||
      options.max_context_length <= 1 || options.max_queue_length < 0) {
    return absl::InvalidArgumentError(
        "max_num_seqs, max_num_batched_tokens and max_context_length must be positive");
  }
  for (const auto& g : spec.groups) {
    if (g.block_size <= 0 || g.num_blocks <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("KV group ", g.name, " has ", g.num_blocks,
                                                     " blocks of ", g.block_size, " tokens"));
    }
    if (g.window > 0) {
      // One sequence's chunk must fit: the window behind it plus the chunk itself.
      const int64_t need =
          (static_cast<int64_t>(g.window) + options.max_num_batched_tokens) / g.block_size + 2;
      if (g.num_blocks < need) {
        return absl::InvalidArgumentError(
            absl::StrCat("sliding KV group ", g.name, " has ", g.num_blocks,
                         " blocks; one sequence needs up to ", need, " (window ", g.window,
                         " + max_num_batched_tokens ", options.max_num_batched_tokens, ")"));
      }
    }
  }
  if (clock == nullptr) clock = RealClock::Get();
  auto impl = std::make_unique<EngineImpl>(options, runner, tokenizer, clock, observer);
  impl->Start();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<EngineImpl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() { impl_->Shutdown(); }

absl::StatusOr<std::shared_ptr<RequestHandle>> Engine::Submit(GenerateRequest request) {
  return impl_->Submit(std::move(request));
}
absl::Status Engine::Abort(const std::string& request_id) { return impl_->Abort(request_id); }
EngineStats Engine::Stats() const { return impl_->Stats(); }
absl::StatusOr<std::string> Engine::OpenSession(const SessionOptions& options) {
  return impl_->OpenSession(options);
}
absl::Status Engine::AppendToSession(const std::string& session_id, std::vector<int32_t> tokens,
                                     std::vector<runtime::MediaRun> media) {
  return impl_->AppendToSession(session_id, std::move(tokens), std::move(media));
}
absl::StatusOr<std::shared_ptr<RequestHandle>> Engine::GenerateInSession(
    const std::string& session_id, const runtime::SamplingParams& sampling,
    const StoppingParams& stopping) {
  return impl_->GenerateInSession(session_id, sampling, stopping);
}
absl::Status Engine::CloseSession(const std::string& session_id) {
  return impl_->CloseSession(session_id);
}
bool Engine::Step() { return impl_->ManualStep(); }
absl::Status Engine::CheckConsistency() {
  if (impl_->loop_thread()) {
    return absl::FailedPreconditionError("CheckConsistency needs start_loop_thread = false");
  }
  return impl_->CheckConsistency();
}

}  // namespace tessera::scheduler
