#include "runtime/testing/fake_model_runner.h"

#include <algorithm>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/sampler.h"

namespace tessera::scheduler {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser.
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

FakeModelRunner::FakeModelRunner(runtime::KvCacheSpec spec, int32_t vocab_size, bool verify_kv)
    : spec_(std::move(spec)), vocab_size_(vocab_size), verify_kv_(verify_kv) {
  if (verify_kv_) {
    for (const auto& g : spec_.groups) {
      kv_.emplace_back(static_cast<size_t>(g.num_blocks) * g.block_size, 0);
    }
  }
}

uint64_t FakeModelRunner::RowValue(int32_t token, int32_t position, const runtime::MediaItem* item,
                                   int32_t item_row) {
  uint64_t v = item != nullptr ? Mix(item->hash[0] ^ Mix(item->hash[1] + item_row))
                               : Mix(static_cast<uint64_t>(token));
  return Mix(v ^ (static_cast<uint64_t>(position) << 32)) | 1;  // Never 0 (= unwritten).
}

int64_t FakeModelRunner::rows_for(uint64_t seq_id) const {
  auto it = rows_by_seq_.find(seq_id);
  return it == rows_by_seq_.end() ? 0 : it->second;
}

absl::StatusOr<uint64_t> FakeModelRunner::ReadState(const runtime::SequencePlan& seq,
                                                    int32_t pos) const {
  uint64_t h = 0x1234;
  for (size_t g = 0; g < spec_.groups.size(); ++g) {
    const auto& spec = spec_.groups[g];
    const auto& table = seq.block_tables[g];
    const int32_t first = spec.window > 0 ? std::max(0, pos - spec.window + 1) : 0;
    for (int32_t p = first; p <= pos; ++p) {
      const int32_t block = table[p / spec.block_size];
      if (block == runtime::kReleasedBlock) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", seq.seq_id, " group ",
                                                       spec.name,
                                                       " reads released block at position ", p));
      }
      const uint64_t v = kv_[g][static_cast<size_t>(block) * spec.block_size + p % spec.block_size];
      if (v == 0) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", seq.seq_id, " group ",
                                                       spec.name,
                                                       " reads unwritten slot at position ", p));
      }
      h = Mix(h ^ v);
    }
  }
  return h;
}

void FakeModelRunner::FillLogits(uint64_t state, float* logits) const {
  for (int32_t v = 0; v < vocab_size_; ++v) {
    // Uniform in [-8, 8): distinct enough that greedy picks are stable, soft enough to sample.
    logits[v] = static_cast<float>(Mix(state ^ (static_cast<uint64_t>(v) * 0x9e37)) >> 40) /
                    static_cast<float>(1 << 24) * 16.0f -
                8.0f;
  }
}

absl::Status FakeModelRunner::RunSequence(const runtime::SequencePlan& seq,
                                          runtime::SequenceOutput* out) {
  const int32_t n = static_cast<int32_t>(seq.token_ids.size());
  const int32_t end = seq.start_pos + n;
  if (n == 0) return absl::InvalidArgumentError("a sequence plan with no rows");
  if (seq.block_tables.size() != spec_.groups.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", seq.seq_id, " has ", seq.block_tables.size(),
                     " block tables; the model has ", spec_.groups.size(), " KV groups"));
  }
  for (size_t g = 0; g < spec_.groups.size(); ++g) {
    const int64_t covered =
        static_cast<int64_t>(seq.block_tables[g].size()) * spec_.groups[g].block_size;
    if (covered < end) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", seq.seq_id, " group ", g,
                                                     " table covers ", covered,
                                                     " positions; needs ", end));
    }
    for (int32_t b : seq.block_tables[g]) {
      if (b != runtime::kReleasedBlock && (b < 0 || b >= spec_.groups[g].num_blocks)) {
        return absl::InvalidArgumentError(absl::StrCat("block id ", b, " out of range"));
      }
    }
  }
  // Media row of each new row, if any.
  std::vector<const runtime::MediaItem*> item(n, nullptr);
  std::vector<int32_t> item_row(n, 0);
  for (const auto& m : seq.media) {
    if (m.seq_row < 0 || m.seq_row + m.count > n || m.item == nullptr) {
      return absl::InvalidArgumentError("media rows outside the chunk");
    }
    for (int32_t i = 0; i < m.count; ++i) {
      item[m.seq_row + i] = m.item;
      item_row[m.seq_row + i] = m.item_row + i;
    }
  }
  if (verify_kv_) {
    for (int32_t i = 0; i < n; ++i) {
      const int32_t p = seq.start_pos + i;
      const uint64_t value = RowValue(seq.token_ids[i], p, item[i], item_row[i]);
      for (size_t g = 0; g < spec_.groups.size(); ++g) {
        const auto& spec = spec_.groups[g];
        const int32_t block = seq.block_tables[g][p / spec.block_size];
        if (block == runtime::kReleasedBlock) {
          // A sliding block may be released only if no row of this chunk can see position p.
          if (spec.window > 0 && end - 1 - p >= spec.window) continue;
          return absl::InvalidArgumentError(
              absl::StrCat("sequence ", seq.seq_id, " writes released block at position ", p));
        }
        kv_[g][static_cast<size_t>(block) * spec.block_size + p % spec.block_size] = value;
      }
    }
  }
  auto state_at = [&](int32_t row) -> absl::StatusOr<uint64_t> {
    const int32_t p = seq.start_pos + row;
    if (verify_kv_) return ReadState(seq, p);
    return Mix(RowValue(seq.token_ids[row], p, item[row], item_row[row]));
  };
  out->logits.assign(static_cast<size_t>(seq.logits_rows.size()) * vocab_size_, 0.0f);
  for (size_t r = 0; r < seq.logits_rows.size(); ++r) {
    auto state = state_at(seq.logits_rows[r]);
    if (!state.ok()) return state.status();
    FillLogits(*state, out->logits.data() + r * vocab_size_);
  }
  if (seq.sample) {
    auto state = state_at(n - 1);
    if (!state.ok()) return state.status();
    std::vector<float> logits(vocab_size_);
    FillLogits(*state, logits.data());
    out->sampled = runtime::Sample(logits.data(), vocab_size_, seq.sampling, seq.sampling_context);
  }
  rows_computed_ += n;
  rows_by_seq_[seq.seq_id] += n;
  return absl::OkStatus();
}

absl::Status FakeModelRunner::Execute(const runtime::BatchPlan& plan, runtime::StepOutput* out) {
  ++steps_;
  if (failure_hook_) {
    absl::Status s = failure_hook_(plan);
    if (!s.ok()) return s;
  }
  out->seqs.resize(plan.seqs.size());
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    absl::Status s = RunSequence(plan.seqs[i], &out->seqs[i]);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace tessera::scheduler
