// The batching policy: one decision per step over the running and waiting sequences
// (ARCHITECTURE.md, "The life of a request", step 4; STYLE.md 5).
//
//  1. Running sequences with one token left (decodes) first, in priority order, one token each.
//  2. Running sequences still prefilling, a chunk each, as far as the token budget allows.
//  3. Waiting sequences, in priority order (lower value first, then arrival): look up the prefix
//     cache and admit with a first chunk, while the budget, max_num_seqs and the free blocks allow.
// A chunk never ends inside a media run. When a running sequence's chunk does not fit in the free
// blocks, the lowest-priority, latest-arrived running sequence not yet scheduled this step is
// preempted (its blocks freed; it is recomputed later), possibly the sequence itself. A waiting
// sequence is admitted only if its chunk fits without preempting anyone, and the head of the queue
// is never overtaken, so preemption cannot thrash.
// Engine thread only.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "scheduler/kv_cache_manager.h"
#include "scheduler/sequence.h"

namespace tessera::scheduler {

struct SchedulerOptions {
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
};

// Rows [start, start + num_tokens) of `seq` computed this step.
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t start = 0;
  int32_t num_tokens = 0;
  bool sample = false;  // The chunk reaches the end of the context of a generating sequence.
};

struct StepSchedule {
  int64_t step = 0;
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;  // Moved back to waiting this step.
  int32_t num_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, KvCacheManager* kv);

  // Queues a sequence that holds no blocks (new, or an idle session whose blocks were freed).
  void AddWaiting(Sequence* seq);
  // Adopts a sequence that already holds blocks covering [0, num_computed) as running (tests).
  void AddRunning(Sequence* seq) { InsertRunning(seq); }
  // Forgets a sequence wherever it is and frees its blocks (finish, abort, error).
  void Remove(Sequence* seq);
  // Decides the next step: allocates the blocks of every scheduled chunk.
  StepSchedule Schedule();

  // Where the next chunk of `seq` starting at `start` must end under `budget` tokens: never past
  // its compute limit, never inside a media run. <= start when nothing can be scheduled.
  static int32_t ChunkEnd(const Sequence& seq, int32_t start, int32_t budget);

  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  const std::vector<Sequence*>& running() const { return running_; }
  int64_t preemptions() const { return preemptions_; }
  int64_t prefix_query_tokens() const { return prefix_query_tokens_; }
  int64_t prefix_hit_tokens() const { return prefix_hit_tokens_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Order {
    bool operator()(const Sequence* a, const Sequence* b) const {
      if (a->priority != b->priority) return a->priority < b->priority;
      return a->arrival_order < b->arrival_order;
    }
  };
  // Schedules running[i]'s next chunk, preempting as needed. Returns false if running[i] itself
  // was preempted (it is no longer at index i).
  bool ScheduleRunning(size_t i, int32_t* budget, StepSchedule* out);
  void Preempt(Sequence* seq, StepSchedule* out);
  void InsertRunning(Sequence* seq);
  size_t max_num_seqs_reserve() const { return static_cast<size_t>(options_.max_num_seqs); }

  SchedulerOptions options_;
  KvCacheManager* kv_;
  int64_t step_ = 0;
  std::vector<Sequence*> running_;  // Sorted by Order.
  std::set<Sequence*, Order> waiting_;
  int64_t preemptions_ = 0;
  int64_t prefix_query_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace tessera::scheduler
