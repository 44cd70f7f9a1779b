#include "runtime/cpu/cpu_model_runner.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cpu/media_embedder.h"
#include "runtime/model/safetensors.h"
#include "runtime/plan_validation.h"
#include "runtime/sampler.h"

namespace tessera::runtime {

using cpu::Dot;
using cpu::MatMul;
using cpu::RmsNorm;

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CreateCpuModelRunner(
    std::shared_ptr<const LoadedModel> model, const CpuRunnerOptions& options) {
  if (model == nullptr || model->weights == nullptr) {
    return absl::InvalidArgumentError("CreateCpuModelRunner: no model");
  }
  if (options.block_size < 1 || options.block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size ", options.block_size, " is outside [1, 4096]"));
  }
  const ModelConfig& c = model->config;
  std::unique_ptr<CpuModelRunner> r(new CpuModelRunner());
  r->model_ = model;
  r->layer_group_.assign(c.text.num_layers, -1);
  r->layer_in_group_.assign(c.text.num_layers, -1);
  int64_t bytes_per_block_all = 0;
  for (LayerType type : {LayerType::kSliding, LayerType::kGlobal}) {
    const int32_t first = c.first_layer_of(type);
    if (first < 0) continue;
    KvGroupSpec g;
    g.name = type == LayerType::kSliding ? "sliding" : "global";
    g.num_layers = c.num_layers_of(type);
    g.num_kv_heads = c.text.layers[first].num_kv_heads;
    g.head_dim = c.text.layers[first].head_dim;
    g.window = type == LayerType::kSliding ? c.text.sliding_window : 0;
    g.block_size = options.block_size;
    g.bytes_per_block = cpu::KvPool::BytesPerBlock(g);
    bytes_per_block_all += g.bytes_per_block;
    const int32_t gid = static_cast<int32_t>(r->spec_.groups.size());
    int32_t in_group = 0;
    for (int32_t l = 0; l < c.text.num_layers; ++l) {
      if (c.text.layers[l].type != type) continue;
      r->layer_group_[l] = gid;
      r->layer_in_group_[l] = in_group++;
    }
    r->spec_.groups.push_back(g);
  }
  for (KvGroupSpec& g : r->spec_.groups) {
    int64_t n = g.name == "sliding" ? options.num_blocks_sliding : options.num_blocks_global;
    if (n == 0) n = options.kv_memory_bytes / std::max<int64_t>(1, bytes_per_block_all);
    if (n < 1 || n > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KV pool for group ", g.name, " would have ", n, " blocks of ", g.bytes_per_block,
          " bytes; raise kv_memory_bytes (", options.kv_memory_bytes, ") or set the count"));
    }
    g.num_blocks = static_cast<int32_t>(n);
    r->pools_.push_back(std::make_unique<cpu::KvPool>(g));
  }
  const bool bf16 = model->weights->bf16_constants;
  for (const LayerConfig& l : c.text.layers) {
    // As transformers: inv_freq = 1 / theta^(2i / head_dim) in fp32, 0 past the rotated pairs.
    // transformers keeps inv_freq as a buffer in the model's dtype, so a bf16 model rotates by
    // bf16-rounded frequencies; the fixture confirms it (3e-4 relative error on text and 1e-2 on
    // image rows without the rounding, 5e-7 and 1e-5 with it).
    std::vector<float> f(l.head_dim / 2, 0.0f);
    for (int32_t i = 0; i < l.rope_pairs; ++i) {
      f[i] =
          1.0f / std::pow(l.rope_theta, static_cast<float>(2 * i) / static_cast<float>(l.head_dim));
      if (bf16) f[i] = Bf16ToFloat(FloatToBf16(f[i]));
    }
    r->inv_freq_.push_back(std::move(f));
  }
  if (!cpu::PathSupported(options.kernel_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kernel path ", cpu::KernelPathName(options.kernel_path), " is not supported by this CPU"));
  }
  r->path_ = options.kernel_path;
  r->pool_ = std::make_unique<cpu::ThreadPool>(options.num_threads);
  return r;
}

void CpuModelRunner::RunLayer(int32_t l) {
  const ModelConfig& c = model_->config;
  const TextConfig& tc = c.text;
  const LayerConfig& lc = tc.layers[l];
  const LayerWeights& lw = model_->weights->layers[l];
  const int64_t T = static_cast<int64_t>(row_seq_.size());
  const int64_t H = tc.hidden_size;
  const int32_t nh = tc.num_heads, nkv = lc.num_kv_heads, hd = lc.head_dim;
  const int64_t qd = static_cast<int64_t>(nh) * hd, kd = static_cast<int64_t>(nkv) * hd;
  const float eps = tc.rms_norm_eps;
  const int32_t group = layer_group_[l];
  const int32_t gl = layer_in_group_[l];
  cpu::KvPool& kv = *pools_[group];
  const int32_t bs = kv.spec().block_size;
  const bool sliding = lc.type == LayerType::kSliding;
  cpu::ThreadPool* pool = pool_.get();

  pool->ParallelFor(T, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) RmsNorm(&h_[r * H], H, lw.input_norm.data(), eps, &x_[r * H]);
  });
  std::vector<cpu::MatMulJob> qkv = {{&lw.q_proj, q_.data(), qd}, {&lw.k_proj, k_.data(), kd}};
  if (!lc.k_eq_v) qkv.push_back({&lw.v_proj, v_.data(), kd});
  cpu::MatMulMany(x_.data(), T, qkv, pool, path_);

  // Per-head norms, RoPE, and the K/V writes into the paged cache.
  const float* inv_freq = inv_freq_[l].data();
  pool->ParallelFor(T, 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int32_t pos = row_pos_[r];
      const SequencePlan& sp = plan_->seqs[row_seq_[r]];
      const int32_t block = sp.block_tables[group][pos / bs];
      const int32_t slot = pos % bs;
      for (int32_t h = 0; h < nh; ++h) {
        float* q = &q_[r * qd + h * hd];
        RmsNorm(q, hd, lw.q_norm.data(), eps, q);
        cpu::ApplyRope(q, hd, lc.rope_pairs, inv_freq, pos);
      }
      for (int32_t h = 0; h < nkv; ++h) {
        float* k = &k_[r * kd + h * hd];
        float* v = &v_[r * kd + h * hd];
        if (lc.k_eq_v) std::copy(k, k + hd, v);  // V is the raw k_proj output.
        RmsNorm(k, hd, lw.k_norm.data(), eps, k);
        cpu::ApplyRope(k, hd, lc.rope_pairs, inv_freq, pos);
        RmsNorm(v, hd, nullptr, eps, v);
        std::copy(k, k + hd, kv.Tile(block, gl, 0, h) + slot * hd);
        std::copy(v, v + hd, kv.Tile(block, gl, 1, h) + slot * hd);
      }
    }
  });

  // Attention: one task per (row, query head). Scale 1.0 (the k_norm weights carry it).
  const int32_t group_size = nh / nkv;
  const int32_t window = lc.window;
  pool->ParallelFor(T * nh, 4, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> scores;
    for (int64_t task = b; task < e; ++task) {
      const int64_t r = task / nh;
      const int32_t h = static_cast<int32_t>(task % nh);
      const int32_t kvh = h / group_size;
      const int32_t pos = row_pos_[r];
      const SequencePlan& sp = plan_->seqs[row_seq_[r]];
      const std::vector<int32_t>& table = sp.block_tables[group];
      int32_t lo = 0, hi = pos;
      // Rows of one image (or video frame) see each other in both directions, in every layer:
      // the reference (transformers 5.17, the fixture) applies the bidirectional block to global
      // layers too, although MODEL.md says sliding layers only; the fixture wins.
      for (const BidirectionalSpan& span : sp.bidirectional) {
        if (pos >= span.begin && pos < span.end) hi = span.end - 1;
      }
      if (sliding) lo = std::max(0, pos - window + 1);
      const float* q = &q_[r * qd + h * hd];
      scores.resize(hi - lo + 1);
      float max_score = -std::numeric_limits<float>::infinity();
      // NOTE: four keys per pass share the loads of q (Dot4 gives Dot's bits); attention was ~15%
      // of a 512-token prefill.
      int32_t k = lo;
      for (; k + 4 <= hi + 1; k += 4) {
        const float* keys[4];
        for (int i = 0; i < 4; ++i) {
          keys[i] = kv.Tile(table[(k + i) / bs], gl, 0, kvh) + ((k + i) % bs) * hd;
        }
        cpu::Dot4(q, keys, hd, &scores[k - lo]);
      }
      for (; k <= hi; ++k) {
        scores[k - lo] = Dot(q, kv.Tile(table[k / bs], gl, 0, kvh) + (k % bs) * hd, hd);
      }
      for (int32_t i = 0; i <= hi - lo; ++i) max_score = std::max(max_score, scores[i]);
      const float sum = cpu::ExpShiftSum(scores.data(), hi - lo + 1, max_score);
      float* out = &attn_[r * qd + h * hd];
      std::fill(out, out + hd, 0.0f);
      for (int32_t k = lo; k <= hi; ++k) {
        const float* val = kv.Tile(table[k / bs], gl, 1, kvh) + (k % bs) * hd;
        cpu::Axpy(scores[k - lo], val, out, hd);
      }
      const float inv = 1.0f / sum;
      for (int32_t d = 0; d < hd; ++d) out[d] *= inv;
    }
  });

  MatMul(attn_.data(), T, lw.o_proj, o_.data(), H, pool, path_);
  pool->ParallelFor(T, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* o = &o_[r * H];
      float* h = &h_[r * H];
      RmsNorm(o, H, lw.post_attention_norm.data(), eps, o);
      for (int64_t i = 0; i < H; ++i) h[i] += o[i];
      RmsNorm(h, H, lw.pre_feedforward_norm.data(), eps, &x_[r * H]);
    }
  });
  const int64_t I = tc.intermediate_size;
  cpu::MatMulMany(x_.data(), T, {{&lw.gate_proj, gate_.data(), I}, {&lw.up_proj, up_.data(), I}},
                  pool, path_);
  pool->ParallelFor(T, 4, [&](int64_t b, int64_t e) {
    cpu::GeluTanhMul(&gate_[b * I], &up_[b * I], (e - b) * I);
  });
  MatMul(gate_.data(), T, lw.down_proj, o_.data(), H, pool, path_);
  const float scalar = lw.layer_scalar;
  pool->ParallelFor(T, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* o = &o_[r * H];
      float* h = &h_[r * H];
      RmsNorm(o, H, lw.post_feedforward_norm.data(), eps, o);
      for (int64_t i = 0; i < H; ++i) h[i] = (h[i] + o[i]) * scalar;
    }
  });
}

absl::Status CpuModelRunner::Execute(const BatchPlan& plan, StepOutput* out) {
  if (out == nullptr) return absl::InvalidArgumentError("Execute: null output");
  absl::Status valid = ValidateBatchPlan(plan, spec_, model_->config,
                                         {model_->weights->has_vision, model_->weights->has_audio});
  if (!valid.ok()) return valid;
  const ModelConfig& c = model_->config;
  const ModelWeights& w = *model_->weights;
  const TextConfig& tc = c.text;
  const int64_t H = tc.hidden_size;
  plan_ = &plan;

  // Rows of all sequences, concatenated.
  row_seq_.clear();
  row_pos_.clear();
  seq_row0_.clear();
  for (size_t s = 0; s < plan.seqs.size(); ++s) {
    seq_row0_.push_back(static_cast<int64_t>(row_seq_.size()));
    const SequencePlan& sp = plan.seqs[s];
    for (size_t i = 0; i < sp.token_ids.size(); ++i) {
      row_seq_.push_back(static_cast<int32_t>(s));
      row_pos_.push_back(sp.start_pos + static_cast<int32_t>(i));
    }
  }
  const int64_t T = static_cast<int64_t>(row_seq_.size());
  int64_t qd = 0, kd = 0;
  for (const LayerConfig& l : tc.layers) {
    qd = std::max<int64_t>(qd, static_cast<int64_t>(tc.num_heads) * l.head_dim);
    kd = std::max<int64_t>(kd, static_cast<int64_t>(l.num_kv_heads) * l.head_dim);
  }
  h_.resize(T * H);
  x_.resize(T * H);
  o_.resize(T * H);
  q_.resize(T * qd);
  attn_.resize(T * qd);
  k_.resize(T * kd);
  v_.resize(T * kd);
  gate_.resize(T * tc.intermediate_size);
  up_.resize(T * tc.intermediate_size);

  // Embeddings: tokens scaled by sqrt(hidden) (in the weight dtype); media rows unscaled.
  pool_->ParallelFor(T, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const SequencePlan& sp = plan.seqs[row_seq_[r]];
      const int32_t id = sp.token_ids[row_pos_[r] - sp.start_pos];
      if (id < 0 || id >= tc.vocab_size) continue;  // A media row; filled below.
      float* h = &h_[r * H];
      w.embed_tokens.RowToFloat(id, h);
      for (int64_t i = 0; i < H; ++i) h[i] *= w.embed_scale;
    }
  });
  for (size_t s = 0; s < plan.seqs.size(); ++s) {
    for (const MediaRows& m : plan.seqs[s].media) {
      cpu::EmbedMediaRows(c, w, *m.item, m.item_row, m.count, &h_[(seq_row0_[s] + m.seq_row) * H],
                          H, pool_.get());
    }
  }

  for (int32_t l = 0; l < tc.num_layers; ++l) RunLayer(l);

  // Logits for the requested rows and for each sampled row.
  struct Want {
    int64_t row;
    size_t seq;
  };
  std::vector<Want> wants;
  std::vector<std::vector<int64_t>> seq_logit_index(plan.seqs.size());
  std::vector<int64_t> sample_index(plan.seqs.size(), -1);
  for (size_t s = 0; s < plan.seqs.size(); ++s) {
    const SequencePlan& sp = plan.seqs[s];
    for (int32_t r : sp.logits_rows) {
      seq_logit_index[s].push_back(static_cast<int64_t>(wants.size()));
      wants.push_back({seq_row0_[s] + r, s});
    }
    if (sp.sample) {
      const int64_t last = seq_row0_[s] + static_cast<int64_t>(sp.token_ids.size()) - 1;
      for (size_t i = 0; i < sp.logits_rows.size(); ++i) {
        if (seq_row0_[s] + sp.logits_rows[i] == last) sample_index[s] = seq_logit_index[s][i];
      }
      if (sample_index[s] < 0) {
        sample_index[s] = static_cast<int64_t>(wants.size());
        wants.push_back({last, s});
      }
    }
  }
  const int64_t R = static_cast<int64_t>(wants.size());
  const int64_t V = tc.vocab_size;
  std::vector<float>& normed = normed_;
  std::vector<float>& logits = logits_;
  normed.resize(R * H);
  logits.resize(R * V);
  for (int64_t i = 0; i < R; ++i) {
    RmsNorm(&h_[wants[i].row * H], H, w.final_norm.data(), tc.rms_norm_eps, &normed[i * H]);
  }
  if (R > 0) MatMul(normed.data(), R, w.embed_tokens, logits.data(), V, pool_.get(), path_);
  if (tc.final_logit_softcapping > 0.0f) {
    pool_->ParallelFor(R, 1, [&](int64_t b, int64_t e) {
      cpu::Softcap(&logits[b * V], (e - b) * V, tc.final_logit_softcapping);
    });
  }

  out->seqs.clear();
  out->seqs.resize(plan.seqs.size());
  for (size_t s = 0; s < plan.seqs.size(); ++s) {
    const SequencePlan& sp = plan.seqs[s];
    SequenceOutput& so = out->seqs[s];
    so.logits.resize(seq_logit_index[s].size() * V);
    for (size_t i = 0; i < seq_logit_index[s].size(); ++i) {
      std::copy_n(&logits[seq_logit_index[s][i] * V], V, &so.logits[i * V]);
    }
    if (sp.sample) {
      so.sampled = Sample(&logits[sample_index[s] * V], static_cast<int32_t>(V), sp.sampling,
                          sp.sampling_context);
    }
  }
  plan_ = nullptr;
  return absl::OkStatus();
}

}  // namespace tessera::runtime
