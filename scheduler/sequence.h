// One sequence as the scheduler and the KV cache manager see it: its tokens, media runs, how much
// of it is in KV, and its block tables. The engine owns each Sequence (inside its per-request
// state); the scheduler and the KV cache manager hold pointers while it is live. Engine thread
// only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "runtime/media/media.h"
#include "scheduler/block_key.h"

namespace tessera::scheduler {

enum class SequenceState { kNew, kWaiting, kRunning, kDone };

struct Sequence {
  uint64_t id = 0;
  std::string request_id;
  int32_t priority = 0;        // Lower runs first.
  uint64_t arrival_order = 0;  // Ties on priority go to the earlier arrival.
  absl::Time arrival;

  // The context: prompt tokens (for a session, everything before the reply being generated) then
  // the output sampled so far. Position p holds TokenAt(p).
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  // Sorted by start, non-overlapping, inside the prompt.
  std::vector<runtime::MediaRun> media;
  BlockKey root_key;

  // Positions [0, num_computed) are in KV.
  int32_t num_computed = 0;
  // Sample when the context is fully computed. False for an idle session, which is prefilled up to
  // its last token and waits for GenerateInSession.
  bool generating = true;
  bool is_session = false;
  void* owner = nullptr;  // The engine's per-request state holding this sequence.

  SequenceState state = SequenceState::kNew;
  // Set by the scheduler to the step that scheduled it (so one step never schedules it twice).
  int64_t scheduled_step = -1;
  int64_t preempted_step = -1;  // The step that last preempted it (not re-admitted in that step).
  bool ever_admitted = false;
  int32_t cached_prompt_tokens = 0;  // Prefix hit at first admission.

  // KV state, one entry per KV group. Maintained by KvCacheManager.
  std::vector<std::vector<int32_t>> block_tables;  // kReleasedBlock for released sliding blocks.
  std::vector<std::vector<BlockKey>> block_keys;   // Keys of full blocks, computed lazily.
  std::vector<int32_t> num_released;               // Leading table entries released.
  std::vector<int32_t> num_registered;             // Leading full blocks offered to the cache.

  int32_t num_tokens() const { return static_cast<int32_t>(prompt.size() + output.size()); }
  int32_t TokenAt(int32_t p) const {
    const int32_t n = static_cast<int32_t>(prompt.size());
    return p < n ? prompt[p] : output[p - n];
  }
  // How far prefill may go: everything when generating, all but the last token when idle (the last
  // token is computed by the step that samples the reply).
  int32_t ComputeLimit() const { return generating ? num_tokens() : num_tokens() - 1; }
};

}  // namespace tessera::scheduler
