#include "runtime/cuda/step_planner.h"

#include <algorithm>
#include <utility>

#include "runtime/cuda/attention_shapes.h"
#include "runtime/sampler.h"

namespace tessera::runtime::cuda {

StepPlanner::StepPlanner(StepPlannerConfig config) : config_(std::move(config)) {}

const StepShape& StepPlanner::Plan(const BatchPlan& plan, const StepArrays& arrays) {
  StepShape& s = shape_;
  const int32_t S = static_cast<int32_t>(plan.seqs.size());
  s.plan_seqs = S;
  s.decode = true;
  s.bidi = false;
  s.max_rows_per_seq = 1;
  s.max_media_rows = 0;
  max_table_ = 1;
  max_kv_ = 1;
  bool any_logits_rows = false;
  for (const SequencePlan& sp : plan.seqs) {
    const int32_t n = static_cast<int32_t>(sp.token_ids.size());
    s.decode = s.decode && n == 1 && sp.media.empty();
    s.bidi = s.bidi || !sp.bidirectional.empty();
    any_logits_rows = any_logits_rows || !sp.logits_rows.empty();
    s.max_rows_per_seq = std::max(s.max_rows_per_seq, n);
    max_kv_ = std::max(max_kv_, sp.start_pos + n);
    for (const auto& t : sp.block_tables) {
      max_table_ = std::max(max_table_, static_cast<int32_t>(t.size()));
    }
    for (const MediaRows& m : sp.media) {
      s.max_media_rows = std::max<int64_t>(s.max_media_rows, m.count);
    }
  }
  max_table_ = std::min(max_table_, config_.max_table_width);

  PlanSampling(plan, arrays);
  s.graph = config_.graphs && s.decode && !s.bidi && !any_logits_rows &&
            static_cast<int32_t>(s.gpu_sample_seqs.size()) == S && S <= config_.max_graph_batch;
  PlanGraph();
  LayOutRows(plan, arrays);
  PlanSplits();
  WriteSampleRows(plan, arrays);
  PlanHostRows(plan);
  return s;
}

// Which sequences sample where, and the penalty entries of the GPU-sampled ones.
void StepPlanner::PlanSampling(const BatchPlan& plan, const StepArrays& arrays) {
  StepShape& s = shape_;
  const int32_t S = s.plan_seqs;
  s.gpu_sample_seqs.clear();
  s.cpu_sample.assign(S, false);
  pen_begin_.assign(S, 0);
  pen_end_.assign(S, 0);
  int64_t count = 0;
  for (int32_t si = 0; si < S; ++si) {
    const SequencePlan& sp = plan.seqs[si];
    if (!sp.sample) continue;
    // The GPU sampler does not compute top_logprobs, nor apply a constrained-decoding mask.
    if (sp.sampling.top_logprobs > 0 || sp.sampling_context.allowed_tokens != nullptr) {
      s.cpu_sample[si] = true;
      continue;
    }
    const int64_t begin = count;
    if (!AddPenaltyEntries(sp, arrays, &count)) {
      count = begin;  // Too many distinct context tokens this step: this row samples on the CPU.
      s.cpu_sample[si] = true;
      continue;
    }
    pen_begin_[si] = static_cast<int32_t>(begin);
    pen_end_[si] = static_cast<int32_t>(count);
    s.gpu_sample_seqs.push_back(si);
  }
  s.penalty_entries = count;
}

bool StepPlanner::AddPenaltyEntries(const SequencePlan& sp, const StepArrays& arrays,
                                    int64_t* count) {
  const int32_t V = config_.vocab_size;
  const SamplingParams& p = sp.sampling;
  const SamplingContext& c = sp.sampling_context;
  if (penalty_slot_.size() != static_cast<size_t>(V)) {
    penalty_slot_.assign(V, 0);
    penalty_stamp_.assign(V, 0);
  }
  if (++stamp_ == 0) {  // Wrapped: forget every old stamp.
    std::fill(penalty_stamp_.begin(), penalty_stamp_.end(), 0);
    stamp_ = 1;
  }
  PenaltyEntry* entries = arrays.penalties;
  // The entry of `tok` for this sequence, made on first sight; null when the buffer is full.
  auto entry = [&](int32_t tok) -> PenaltyEntry* {
    if (penalty_stamp_[tok] != stamp_) {
      if (*count >= arrays.penalty_capacity) return nullptr;
      penalty_stamp_[tok] = stamp_;
      penalty_slot_[tok] = static_cast<int32_t>(*count);
      entries[*count] = PenaltyEntry{tok, 0, 0, 0};
      ++*count;
    }
    return &entries[penalty_slot_[tok]];
  };
  auto add_context = [&](const std::vector<int32_t>* tokens, bool output) {
    if (tokens == nullptr) return true;
    for (int32_t t : *tokens) {
      if (t < 0 || t >= V) continue;
      PenaltyEntry* e = entry(t);
      if (e == nullptr) return false;
      e->in_context = 1;
      if (output) ++e->output_count;
    }
    return true;
  };
  if (p.repetition_penalty != 1.0f && !add_context(c.prompt_tokens, false)) return false;
  if ((p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) &&
      !add_context(c.output_tokens, true)) {
    return false;
  }
  for (int32_t t : c.banned_tokens) {
    if (t < 0 || t >= V) continue;
    PenaltyEntry* e = entry(t);
    if (e == nullptr) return false;
    e->banned = 1;
  }
  return true;
}

// The padded batch and table width of a graph step; the plan's own otherwise.
void StepPlanner::PlanGraph() {
  StepShape& s = shape_;
  s.seqs = s.plan_seqs;
  s.table_width = max_table_;
  if (!s.graph) return;
  int32_t padded = s.plan_seqs;
  for (int32_t b : kGraphBatches) {
    if (b >= s.plan_seqs) {
      padded = b;
      break;
    }
  }
  if (padded < s.plan_seqs || padded > config_.max_step_seqs) padded = s.plan_seqs;
  int32_t width = 16;
  while (width < max_table_) width *= 2;
  s.seqs = padded;
  s.table_width = std::min(width, config_.max_table_width);
  // The graph is replayed for any table up to its width: plan the splits for the longest.
  max_kv_ = s.table_width * config_.spec.groups.front().block_size;
}

// Per-row metadata of the plan's sequences and, past them, the padding sequences of a graph step.
void StepPlanner::LayOutRows(const BatchPlan& plan, const StepArrays& a) {
  StepShape& s = shape_;
  const int32_t S = s.plan_seqs, width = s.table_width;
  const std::vector<KvGroupSpec>& groups = config_.spec.groups;
  const int32_t G = static_cast<int32_t>(groups.size());
  s.seq_row0.assign(s.seqs, 0);
  int32_t row = 0;
  for (int32_t si = 0; si < s.seqs; ++si) {
    s.seq_row0[si] = row;
    a.row_start[si] = row;
    if (si >= S) {
      a.ids[row] = 0;
      a.positions[row] = 0;
      a.bidi_begin[row] = a.bidi_end[row] = 0;
      a.start_pos[si] = 0;
      for (int32_t g = 0; g < G; ++g) {
        a.slots[g][row] = -1;
        std::fill_n(a.tables[g] + int64_t{si} * width, width, groups[g].num_blocks);
      }
      ++row;
      continue;
    }
    const SequencePlan& sp = plan.seqs[si];
    a.start_pos[si] = sp.start_pos;
    const int32_t n = static_cast<int32_t>(sp.token_ids.size());
    media_row_.assign(n, false);
    for (const MediaRows& m : sp.media) {
      std::fill(media_row_.begin() + m.seq_row, media_row_.begin() + m.seq_row + m.count, true);
    }
    for (int32_t i = 0; i < n; ++i) {
      const int32_t pos = sp.start_pos + i;
      a.ids[row + i] = media_row_[i] ? -1 : sp.token_ids[i];
      a.positions[row + i] = pos;
      int32_t bb = 0, be = 0;
      for (const BidirectionalSpan& span : sp.bidirectional) {
        if (pos >= span.begin && pos < span.end) {
          bb = span.begin;
          be = span.end;
        }
      }
      a.bidi_begin[row + i] = bb;
      a.bidi_end[row + i] = be;
      for (int32_t g = 0; g < G; ++g) {
        const int32_t bs = groups[g].block_size;
        a.slots[g][row + i] = int64_t{sp.block_tables[g][pos / bs]} * bs + pos % bs;
      }
    }
    for (int32_t g = 0; g < G; ++g) {
      int32_t* t = a.tables[g] + int64_t{si} * width;
      const auto& src = sp.block_tables[g];
      const int32_t n_copy = std::min<int32_t>(width, static_cast<int32_t>(src.size()));
      std::copy_n(src.begin(), n_copy, t);
      // Entries no query reads (released, or past the table) point at the spare block.
      for (int32_t j = 0; j < width; ++j) {
        if (j >= n_copy || t[j] < 0) t[j] = groups[g].num_blocks;
      }
    }
    row += n;
  }
  a.row_start[s.seqs] = row;
  s.rows = row;
}

void StepPlanner::PlanSplits() {
  StepShape& s = shape_;
  s.splits.clear();
  for (const KvGroupSpec& g : config_.spec.groups) {
    // A sliding-window layer reads at most `window` keys, however long the sequence.
    const int32_t keys = g.window > 0 ? std::min(max_kv_, g.window) : max_kv_;
    int32_t splits =
        s.decode ? ChooseDecodeSplits(s.seqs, g.num_kv_heads, keys, config_.num_sms) : 1;
    if (AttentionWorkspaceFloats(s.seqs, config_.num_q_heads, g.head_dim, splits) >
        config_.attention_workspace_floats) {
      splits = 1;
    }
    s.splits.push_back(splits);
  }
}

// Sample rows: the GPU-sampled sequences' last rows first, in order, then graph padding (greedy).
void StepPlanner::WriteSampleRows(const BatchPlan& plan, const StepArrays& a) {
  StepShape& s = shape_;
  const int32_t n_gpu = static_cast<int32_t>(s.gpu_sample_seqs.size());
  s.sample_rows = s.graph ? s.seqs : n_gpu;
  s.gathered = !s.decode || n_gpu != s.plan_seqs;
  s.sample_src.clear();
  for (int32_t i = 0; i < s.sample_rows; ++i) {
    SampleRowParams& rp = a.sample_rows[i];
    rp = SampleRowParams();
    if (i >= n_gpu) {
      rp.temperature = 0.0f;  // Padding.
      continue;
    }
    const int32_t si = s.gpu_sample_seqs[i];
    const SequencePlan& sp = plan.seqs[si];
    const SamplingParams& p = sp.sampling;
    rp.temperature = p.temperature;
    rp.top_k = p.top_k;
    rp.top_p = p.top_p;
    rp.min_p = p.min_p;
    rp.repetition_penalty = p.repetition_penalty;
    rp.presence_penalty = p.presence_penalty;
    rp.frequency_penalty = p.frequency_penalty;
    rp.penalty_begin = pen_begin_[si];
    rp.penalty_end = pen_end_[si];
    rp.uniform = UniformForStep(p.seed, sp.sampling_context.step);
    if (s.gathered) {
      s.sample_src.push_back(static_cast<int32_t>(s.seq_row0[si]) +
                             static_cast<int32_t>(sp.token_ids.size()) - 1);
    }
  }
}

void StepPlanner::PlanHostRows(const BatchPlan& plan) {
  StepShape& s = shape_;
  s.host_rows.clear();
  for (int32_t si = 0; si < s.plan_seqs; ++si) {
    const SequencePlan& sp = plan.seqs[si];
    const int32_t row0 = static_cast<int32_t>(s.seq_row0[si]);
    for (size_t i = 0; i < sp.logits_rows.size(); ++i) {
      s.host_rows.push_back({si, row0 + sp.logits_rows[i], static_cast<int32_t>(i)});
    }
    if (s.cpu_sample[si]) {
      s.host_rows.push_back({si, row0 + static_cast<int32_t>(sp.token_ids.size()) - 1, -1});
    }
  }
}

}  // namespace tessera::runtime::cuda
