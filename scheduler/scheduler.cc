#include "scheduler/scheduler.h"

#include <algorithm>

#include "base/logging.h"

namespace tessera::scheduler {

Scheduler::Scheduler(const SchedulerOptions& options, KvCacheManager* kv)
    : options_(options), kv_(kv) {}

void Scheduler::AddWaiting(Sequence* seq) {
  TESSERA_CHECK(seq->num_computed == 0) << "waiting sequence " << seq->request_id << " holds KV";
  seq->state = SequenceState::kWaiting;
  waiting_.insert(seq);
}

void Scheduler::InsertRunning(Sequence* seq) {
  seq->state = SequenceState::kRunning;
  running_.insert(std::upper_bound(running_.begin(), running_.end(), seq, Order()), seq);
}

void Scheduler::Remove(Sequence* seq) {
  if (seq->state == SequenceState::kWaiting) {
    waiting_.erase(seq);
  } else if (seq->state == SequenceState::kRunning) {
    auto it = std::find(running_.begin(), running_.end(), seq);
    if (it != running_.end()) running_.erase(it);
  }
  kv_->Free(seq);
  seq->state = SequenceState::kDone;
}

int32_t Scheduler::ChunkEnd(const Sequence& seq, int32_t start, int32_t budget) {
  int32_t end = std::min(seq.ComputeLimit(), start + budget);
  if (end <= start) return start;
  // The run (if any) that `end` falls strictly inside: the first run ending after `end`.
  auto it =
      std::upper_bound(seq.media.begin(), seq.media.end(), end,
                       [](int32_t pos, const runtime::MediaRun& run) { return pos < run.end(); });
  if (it != seq.media.end() && it->start < end) end = it->start;
  return std::max(end, start);
}

void Scheduler::Preempt(Sequence* seq, StepSchedule* out) {
  auto it = std::find(running_.begin(), running_.end(), seq);
  TESSERA_CHECK(it != running_.end()) << "preempting a sequence that is not running";
  running_.erase(it);
  kv_->Free(seq);
  seq->preempted_step = step_;
  AddWaiting(seq);
  ++preemptions_;
  out->preempted.push_back(seq);
}

bool Scheduler::ScheduleRunning(size_t i, int32_t* budget, StepSchedule* out) {
  Sequence* seq = running_[i];
  const int32_t start = seq->num_computed;
  const int32_t end = ChunkEnd(*seq, start, *budget);
  if (end <= start) return true;
  while (!kv_->CanAllocate(*seq, end)) {
    // The worst running sequence not yet scheduled this step; everything after `seq` is worse.
    Sequence* victim = seq;
    for (size_t j = running_.size(); j-- > i + 1;) {
      if (running_[j]->scheduled_step != step_) {
        victim = running_[j];
        break;
      }
    }
    Preempt(victim, out);
    if (victim == seq) return false;
  }
  kv_->AllocateChecked(seq, end);
  seq->scheduled_step = step_;
  const bool sample = seq->generating && end == seq->num_tokens();
  out->chunks.push_back({seq, start, end - start, sample});
  out->num_tokens += end - start;
  *budget -= end - start;
  return true;
}

StepSchedule Scheduler::Schedule() {
  StepSchedule out;
  out.step = ++step_;
  out.chunks.reserve(std::min(running_.size() + waiting_.size(), max_num_seqs_reserve()));
  int32_t budget = options_.max_num_batched_tokens;
  const size_t max_seqs = static_cast<size_t>(options_.max_num_seqs);

  // Passes 1 and 2: running decodes, then running prefill chunks.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < running_.size();) {
      if (budget <= 0 || out.chunks.size() >= max_seqs) break;
      Sequence* seq = running_[i];
      const int32_t remaining = seq->ComputeLimit() - seq->num_computed;
      const bool is_decode = remaining == 1;
      if (remaining <= 0 || seq->scheduled_step == step_ || is_decode != (pass == 0)) {
        ++i;
        continue;
      }
      if (ScheduleRunning(i, &budget, &out)) ++i;
    }
  }

  // Pass 3: admit waiting sequences in order while they fit.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (budget <= 0 || out.chunks.size() >= max_seqs || running_.size() >= max_seqs) break;
    Sequence* seq = *it;
    if (seq->preempted_step == step_) break;  // Do not undo this step's preemption.
    if (seq->ComputeLimit() <= 0) {
      ++it;  // An idle session with nothing to prefill yet.
      continue;
    }
    PrefixMatch match = kv_->FindPrefix(seq);
    const int32_t start = match.num_tokens;
    const int32_t end = ChunkEnd(*seq, start, budget);
    if (end <= start) {
      if (seq->ComputeLimit() <= start) {
        ++it;  // Everything it could prefill is cached; it waits for more tokens.
        continue;
      }
      break;  // Its next chunk (a media run) needs more budget than is left.
    }
    if (!kv_->CanAllocate(*seq, end, &match)) break;
    it = waiting_.erase(it);
    kv_->AttachPrefix(seq, match);
    kv_->AllocateChecked(seq, end);
    if (!seq->ever_admitted && kv_->prefix_caching()) {
      seq->cached_prompt_tokens = start;
      prefix_query_tokens_ += seq->num_tokens();
      prefix_hit_tokens_ += start;
    }
    seq->ever_admitted = true;
    InsertRunning(seq);
    seq->scheduled_step = step_;
    const bool sample = seq->generating && end == seq->num_tokens();
    out.chunks.push_back({seq, start, end - start, sample});
    out.num_tokens += end - start;
    budget -= end - start;
  }
  return out;
}

}  // namespace tessera::scheduler
