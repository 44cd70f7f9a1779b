#include "runtime/cuda/memory_plan.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/cuda/quant_formats.h"
#include "runtime/cuda/sampling.h"

namespace tessera::runtime::cuda {
namespace {

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

double GiB(int64_t bytes) { return static_cast<double>(bytes) / 1073741824.0; }

}  // namespace

int64_t StepBufferBytes::total() const {
  return h + x + qkv + attn + o + gu + act + gathered + logits + attention_workspace +
         sampler_workspace + penalties + out + meta.bytes + dequant_scratch + q8_1_scratch;
}

StepBufferBytes PlanStepBuffers(const ModelConfig& config, const CudaRunnerOptions& options,
                                int32_t num_kv_groups, int32_t num_sms,
                                int64_t sampler_workspace_bytes, int64_t widest_quantized_cols) {
  const TextConfig& tc = config.text;
  const int64_t T = options.max_step_tokens, S = options.max_step_seqs;
  const int64_t H = tc.hidden_size, I = tc.intermediate_size, V = tc.vocab_size;
  const int64_t R = std::max<int64_t>(S, kLogitsChunkRows);
  int64_t max_qd = 0, max_qkv = 0, max_hd = 0;
  for (const LayerConfig& lc : tc.layers) {
    const int64_t qd = int64_t{tc.num_heads} * lc.head_dim;
    max_qd = std::max(max_qd, qd);
    max_qkv = std::max(max_qkv, qd + int64_t{lc.num_kv_heads} * lc.head_dim * (lc.k_eq_v ? 1 : 2));
    max_hd = std::max<int64_t>(max_hd, lc.head_dim);
  }
  StepBufferBytes b;
  b.h = b.x = b.o = T * H * 2;
  b.qkv = T * max_qkv * 2;
  b.attn = T * max_qd * 2;
  b.gu = T * 2 * I * 2;
  b.act = T * I * 2;
  b.gathered = R * H * 2;
  b.logits = R * V * 4;
  // Decode splits: ChooseDecodeSplits keeps splits * seqs * kv_heads near 2 * SMs, so the
  // workspace is bounded by (2 * SMs + seqs) rows of every query head.
  b.attention_workspace_floats = (2 * int64_t{num_sms} + S + 1) * tc.num_heads * (max_hd + 2);
  b.attention_workspace = b.attention_workspace_floats * 4;
  b.sampler_workspace = std::max<int64_t>(16, sampler_workspace_bytes);
  b.penalties = kMaxPenaltyEntries * int64_t{sizeof(PenaltyEntry)};
  b.out = S * 8;
  b.max_table = (options.max_seq_len + options.block_size - 1) / options.block_size;

  StepMetaLayout& m = b.meta;
  int64_t bytes = 0;
  auto carve = [&](int64_t count, int64_t elem) {
    const int64_t at = bytes;
    bytes = RoundUp(bytes + count * elem, 256);
    return at;
  };
  m.ids = carve(T, 4);
  m.positions = carve(T, 4);
  m.row_start = carve(S + 1, 4);
  m.start_pos = carve(S, 4);
  m.bidi_begin = carve(T, 4);
  m.bidi_end = carve(T, 4);
  m.sample_rows = carve(S, sizeof(SampleRowParams));
  m.gather = carve(R, 4);
  for (int32_t g = 0; g < num_kv_groups; ++g) {
    m.slots.push_back(carve(T, 8));
    m.tables.push_back(carve(S * b.max_table, 4));
  }
  m.bytes = bytes;

  if (widest_quantized_cols > 0) {
    b.dequant_scratch = std::max<int64_t>(options.quant_scratch_bytes, 2 * widest_quantized_cols);
    b.q8_1_scratch = Q8_1Bytes(kMaxQuantGemvRows, widest_quantized_cols);
  }
  return b;
}

KvCacheSpec KvGroups(const ModelConfig& config, int32_t block_size) {
  KvCacheSpec spec;
  const TextConfig& tc = config.text;
  for (LayerType type : {LayerType::kSliding, LayerType::kGlobal}) {
    const int32_t first = config.first_layer_of(type);
    if (first < 0) continue;
    KvGroupSpec g;
    g.name = type == LayerType::kSliding ? "sliding" : "global";
    g.num_layers = config.num_layers_of(type);
    g.num_kv_heads = tc.layers[first].num_kv_heads;
    g.head_dim = tc.layers[first].head_dim;
    g.window = type == LayerType::kSliding ? tc.sliding_window : 0;
    g.block_size = block_size;
    // [layers, K and V, kv_heads, block_size, head_dim] bf16 (paged_kv.h).
    g.bytes_per_block = int64_t{2} * g.num_layers * 2 * g.num_kv_heads * g.block_size * g.head_dim;
    spec.groups.push_back(g);
  }
  return spec;
}

int64_t BlocksPerSequence(const KvGroupSpec& g, int64_t tokens) {
  const int64_t len = g.window > 0 ? std::min<int64_t>(g.window, tokens) : tokens;
  return (len + g.block_size - 1) / g.block_size + (g.window > 0 ? 1 : 0);
}

absl::StatusOr<KvCacheSpec> SplitKvBudget(KvCacheSpec spec, int64_t budget,
                                          const CudaRunnerOptions& options) {
  const int64_t balance_len =
      std::max<int64_t>(1, std::min<int64_t>(options.kv_balance_seq_len, options.max_seq_len));
  // A group whose count is explicit takes its bytes off the budget first.
  auto explicit_count = [&](const KvGroupSpec& gs) -> int64_t {
    return gs.name == "sliding" ? options.num_blocks_sliding : options.num_blocks_global;
  };
  const size_t G = spec.groups.size();
  int64_t weight_sum = 0;
  std::vector<int64_t> per_seq(G);
  for (size_t g = 0; g < G; ++g) {
    const KvGroupSpec& gs = spec.groups[g];
    per_seq[g] = BlocksPerSequence(gs, balance_len);
    if (explicit_count(gs) > 0) {
      budget -= (explicit_count(gs) + 1) * gs.bytes_per_block;
    } else {
      weight_sum += per_seq[g] * gs.bytes_per_block;
    }
  }
  budget = std::max<int64_t>(budget, 0);
  for (size_t g = 0; g < G; ++g) {
    KvGroupSpec& gs = spec.groups[g];
    int64_t n = explicit_count(gs);
    if (n == 0) {
      n = static_cast<int64_t>(static_cast<double>(budget) * per_seq[g] /
                               static_cast<double>(std::max<int64_t>(1, weight_sum)));
      n = std::max<int64_t>(n, 0);
    }
    // At least one full sequence of the step's largest chunk must fit.
    const int64_t need = (options.max_step_tokens + gs.block_size - 1) / gs.block_size + 1;
    if (n < std::min<int64_t>(need, per_seq[g]) || n > std::numeric_limits<int32_t>::max() - 1) {
      return absl::ResourceExhaustedError(
          absl::StrCat("CUDA runner: the KV pool of group ", gs.name, " would have ", n,
                       " blocks of ", gs.bytes_per_block, " bytes (budget ", budget,
                       " bytes); raise --gpu_memory_fraction or lower --max_model_len"));
    }
    gs.num_blocks = static_cast<int32_t>(n);
  }
  return spec;
}

MemoryPlan PlanMemory(const ModelConfig& config, int64_t weight_bytes, int64_t gpu_memory_bytes,
                      const CudaRunnerOptions& options, int32_t num_sms,
                      int64_t sampler_workspace_bytes, int64_t widest_quantized_cols) {
  MemoryPlan p;
  p.gpu_bytes = gpu_memory_bytes;
  p.reserve_bytes = kCudaRuntimeReserveBytes;
  p.weight_bytes = weight_bytes;
  KvCacheSpec spec = KvGroups(config, options.block_size);
  p.step_buffer_bytes = PlanStepBuffers(config, options, static_cast<int32_t>(spec.groups.size()),
                                        num_sms, sampler_workspace_bytes, widest_quantized_cols)
                            .total();
  const int64_t free = gpu_memory_bytes - p.reserve_bytes - weight_bytes - p.step_buffer_bytes;
  if (free <= 0) {
    p.status = absl::ResourceExhaustedError(absl::StrFormat(
        "the weights (%.2f GiB), step buffers (%.2f GiB) and CUDA runtime (%.2f GiB) need more "
        "than the GPU's %.2f GiB",
        GiB(weight_bytes), GiB(p.step_buffer_bytes), GiB(p.reserve_bytes), GiB(gpu_memory_bytes)));
    return p;
  }
  p.kv_budget_bytes =
      options.kv_memory_bytes > 0
          ? options.kv_memory_bytes
          : static_cast<int64_t>(static_cast<double>(free) * options.gpu_memory_fraction);
  absl::StatusOr<KvCacheSpec> kv = SplitKvBudget(spec, p.kv_budget_bytes, options);
  if (!kv.ok()) {
    p.status = kv.status();
    return p;
  }
  p.kv = *std::move(kv);
  p.sequences_8k = std::numeric_limits<int64_t>::max();
  p.longest_sequence = options.max_seq_len;
  for (const KvGroupSpec& g : p.kv.groups) {
    p.kv_bytes += (int64_t{g.num_blocks} + 1) * g.bytes_per_block;
    const int64_t per_seq = BlocksPerSequence(g, 8192);
    p.bytes_per_8k_sequence += per_seq * g.bytes_per_block;
    p.sequences_8k = std::min<int64_t>(p.sequences_8k, g.num_blocks / per_seq);
    if (g.window == 0) {
      p.longest_sequence =
          std::min<int64_t>(p.longest_sequence, int64_t{g.num_blocks} * g.block_size);
    } else if (g.num_blocks < BlocksPerSequence(g, g.window)) {
      p.longest_sequence = std::min<int64_t>(p.longest_sequence, (g.num_blocks - 1) * g.block_size);
    }
  }
  if (p.kv_bytes > free) {
    p.status = absl::ResourceExhaustedError(absl::StrFormat(
        "the KV pools (%.2f GiB) need more than the %.2f GiB left after the weights and buffers",
        GiB(p.kv_bytes), GiB(free)));
  }
  return p;
}

std::string MemoryPlan::Describe() const {
  std::string s = absl::StrFormat(
      "GPU memory %.2f GiB: weights %.2f GiB, step buffers %.2f GiB, CUDA runtime allowance "
      "%.2f GiB, KV %.2f GiB",
      GiB(gpu_bytes), GiB(weight_bytes), GiB(step_buffer_bytes), GiB(reserve_bytes), GiB(kv_bytes));
  if (!status.ok()) return absl::StrCat(s, "\ndoes not fit: ", status.message());
  for (const KvGroupSpec& g : kv.groups) {
    absl::StrAppendFormat(&s, "\n  KV %s: %d blocks of %d tokens (%.1f MiB each)", g.name,
                          g.num_blocks, g.block_size, g.bytes_per_block / 1048576.0);
  }
  absl::StrAppendFormat(&s,
                        "\n  %lld concurrent 8192-token sequences (%.0f MiB of KV each); one "
                        "sequence can reach %lld tokens",
                        static_cast<long long>(sequences_8k), bytes_per_8k_sequence / 1048576.0,
                        static_cast<long long>(longest_sequence));
  return s;
}

}  // namespace tessera::runtime::cuda
