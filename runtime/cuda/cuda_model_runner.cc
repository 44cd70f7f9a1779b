// The CUDA ModelRunner (cuda_model_runner.h). One step:
//
//   host: validate the plan, lay out the step (rows, positions, slots, block tables, spans, the
//         rows whose logits are wanted) in pinned memory, copy it to the device in one go per
//         array;
//   GPU:  embed tokens, project media rows into their embedding rows, then per layer
//         QKV GEMM -> QK-norm + RoPE + V-norm + KV write -> paged attention -> O GEMM ->
//         post-attention norm + residual (+ pre-FFW norm) -> gate|up GEMM -> GeGLU -> down GEMM ->
//         post-FFW norm + residual + layer scalar (+ the next layer's input norm, or the final
//         norm after the last layer); then the logits of the wanted rows, softcap, sampling;
//   host: read back the sampled tokens (and requested logits rows) with one stream sync.
//
// Decode-only steps run the GPU part as a CUDA graph per (padded batch, block-table width).
#include "runtime/cuda/cuda_model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/media.h"
#include "runtime/cuda/norm.h"
#include "runtime/cuda/paged_kv.h"
#include "runtime/cuda/pointwise.h"
#include "runtime/cuda/random_fill.h"
#include "runtime/cuda/rope_kv.h"
#include "runtime/cuda/sampling.h"
#include "runtime/cuda/stream.h"
#include "runtime/plan_validation.h"
#include "runtime/sampler.h"

namespace tessera::runtime {

namespace cu = ::tessera::runtime::cuda;
using cu::Bf16;
using cu::DeviceBuffer;

namespace {

// Batch sizes decode graphs are captured for; a step pads up to the next one.
constexpr int32_t kGraphBatches[] = {1,  2,  4,   8,   16,  24,  32,  48, 64,
                                     80, 96, 112, 128, 160, 192, 224, 256};

// Rows of logits computed per GEMM when a plan asks for many logits rows (prompt logprobs, tests).
constexpr int32_t kLogitsChunkRows = 64;

// Penalty entries (distinct context tokens of sampled rows) the device buffer holds per step; a
// step with more samples its rows on the CPU from downloaded logits.
constexpr int64_t kMaxPenaltyEntries = int64_t{1} << 20;

// The supported attention shapes (attention.h's closed list), for a clear error at creation.
bool AttentionShapeSupported(int32_t head_dim, int32_t group) {
  return (head_dim == 256 && group == 2) || (head_dim == 512 && group == 16) ||
         (head_dim == 16 && group == 2) || (head_dim == 32 && group == 4);
}

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// A host-side array that lives at an offset of the step's pinned staging buffer and of the
// matching device buffer.
template <typename T>
struct Mirror {
  T* host = nullptr;
  T* device = nullptr;
  int64_t capacity = 0;
};

}  // namespace

struct LayerDevice {
  DeviceBuffer qkv;       // [qd + kd (+ kd), H]
  DeviceBuffer o;         // [H, qd]
  DeviceBuffer gate_up;   // [2I, H]
  DeviceBuffer down;      // [H, I]
  DeviceBuffer norms;     // input, post_attn, pre_ffw, post_ffw [4][H], q_norm, k_norm [2][hd],
                          // layer scalar [1], as bf16
  DeviceBuffer inv_freq;  // [hd / 2] fp32
  int64_t qd = 0, kd = 0, qkv_width = 0;  // Query, K (and V) widths; fused QKV width.
  void SetShape(int32_t num_heads, const LayerConfig& lc) {
    qd = int64_t{num_heads} * lc.head_dim;
    kd = int64_t{lc.num_kv_heads} * lc.head_dim;
    qkv_width = qd + kd * (lc.k_eq_v ? 1 : 2);
  }
  const Bf16* norm(int i, int64_t H) const { return norms.as<Bf16>() + i * H; }
};

class CudaModelRunner::Impl {
 public:
  absl::Status Init(const ModelConfig& config, const CudaRunnerOptions& options);
  absl::Status UploadWeights(const LoadedModel& model);
  absl::Status RandomWeights(uint64_t seed);
  absl::Status AllocateRuntime();
  // A weight buffer, counted in weight_bytes_; ResourceExhausted naming the device when full.
  absl::Status AllocateWeight(DeviceBuffer* b, int64_t bytes);
  // The layer's RoPE frequencies (rope_kv.h RopeInvFreq, as the CPU runner computes them), rounded
  // to bf16 when the model's constants are, uploaded into d->inv_freq.
  absl::Status UploadInvFreq(const LayerConfig& lc, bool bf16_constants, LayerDevice* d);
  absl::Status Execute(const BatchPlan& plan, StepOutput* out);
  absl::Status ValidatePlan(const BatchPlan& plan) const;
  absl::Status EnqueueMedia(const MediaRows& m, int64_t first_row);
  absl::Status GrowMedia(int64_t rows);

  ModelConfig config_;
  CudaRunnerOptions options_;
  std::shared_ptr<const LoadedModel>
      model_;  // Keeps the checkpoint alive (nothing reads it later).
  std::string device_name_;
  int num_sms_ = 132;
  KvCacheSpec spec_;
  std::vector<int32_t> layer_group_, layer_in_group_;
  uint64_t weight_bytes_ = 0, kv_bytes_ = 0, graph_steps_ = 0;

  // Weights.
  DeviceBuffer embed_;       // [V, H] bf16
  DeviceBuffer final_norm_;  // [H] bf16
  float embed_scale_ = 1.0f;
  std::vector<LayerDevice> layers_;
  bool has_vision_ = false, has_audio_ = false;
  DeviceBuffer v_ln1_w_, v_ln1_b_, v_dense_, v_dense_b_, v_ln2_w_, v_ln2_b_, v_pos_, v_posn_w_,
      v_posn_b_, v_proj_;  // fp32 vectors, bf16 matrices
  DeviceBuffer a_proj_;    // [H, 640] bf16

  // KV pools, one per group, each with one extra zeroed block (id num_blocks) that padding rows of
  // graph steps read.
  std::vector<DeviceBuffer> pools_;

  // Runtime.
  std::unique_ptr<cu::Stream> stream_;
  std::unique_ptr<cu::GemmRunner> gemm_;
  int64_t max_qd_ = 0, max_qkv_ = 0, max_table_ = 0;
  DeviceBuffer h_, x_, qkv_, attn_, o_, gu_, act_, gathered_, logits_, attn_ws_, sample_ws_;
  DeviceBuffer meta_dev_, penalties_dev_, out_dev_;
  cu::PinnedBuffer meta_host_, penalties_host_, out_host_;
  Mirror<int32_t> ids_, positions_, row_start_, start_pos_, bidi_begin_, bidi_end_;
  Mirror<int32_t> gather_;  // Step rows whose logits are computed, for the gather.
  std::vector<Mirror<int64_t>> slots_;
  std::vector<Mirror<int32_t>> tables_;
  Mirror<cu::SampleRowParams> sample_rows_;
  int32_t* out_tokens_dev_ = nullptr;
  float* out_logprobs_dev_ = nullptr;
  int64_t attn_ws_floats_ = 0;
  // Media staging, grown on demand (eager steps only).
  DeviceBuffer media_in_, media_a_, media_d_, media_e_, media_pos_;

  // Graphs by (padded batch, table width); a key is captured the second time it is seen (the
  // first run is eager and warms the GEMM algorithm cache for its shapes).
  std::map<std::pair<int32_t, int32_t>, std::unique_ptr<cu::Graph>> graphs_;
  // Keys whose capture failed once run eagerly from then on (the failure is logged once).
  enum class GraphState { kCold, kWarm, kEager };
  std::map<std::pair<int32_t, int32_t>, GraphState> graph_state_;
  // Penalty entry index per token, valid where stamp == the current sequence's stamp.
  std::vector<int32_t> penalty_slot_;
  std::vector<uint32_t> penalty_stamp_;
  uint32_t stamp_ = 0;

 private:
  struct StepShape {
    int32_t rows = 0;
    int32_t seqs = 0;
    int32_t table_width = 0;
    int32_t max_rows_per_seq = 1;
    bool decode = false;
    bool bidi = false;
    int32_t sample_rows = 0;          // Rows sampled on the GPU: logits rows [0, sample_rows).
    bool gathered = false;            // Sample rows are gathered (else rows [0, sample_rows) of x).
    std::vector<int32_t> sample_src;  // Source row of each sample row when gathered.
    std::vector<int32_t> splits;      // Decode splits per group.
  };

  int32_t LayOutRows(const BatchPlan& plan, int32_t S_run, int32_t width,
                     std::vector<int64_t>* seq_row0);
  int64_t BuildPenaltyEntries(const BatchPlan& plan, std::vector<int32_t>* gpu_sample_seqs,
                              std::vector<bool>* cpu_sample, std::vector<int32_t>* pen_begin,
                              std::vector<int32_t>* pen_end);
  absl::Status UploadMeta(int32_t rows, int32_t seqs, int32_t table_width, int64_t penalties);
  absl::Status EnqueueForward(const StepShape& shape, const BatchPlan* plan,
                              const std::vector<int64_t>& seq_row0);
  // out[m, n] = x[m, k] w[n, k]^T on the step's stream (gemm.h).
  absl::Status Gemm(const Bf16* x, int64_t ldx, const Bf16* w, int64_t ldw, void* out, int64_t ldo,
                    int64_t m, int64_t n, int64_t k, bool out_fp32 = false);
  absl::Status EnqueueLogits(const std::vector<int32_t>& rows, int32_t count);
  cu::PagedKvView View(int32_t layer) const;
};

namespace {

// Widens a WeightMatrix into bf16 rows starting at row `row0_out` of `dst` (device), through a
// host buffer of about 64 MiB. The copies are from pageable memory on the legacy stream, so each
// returns once its source has been staged and the buffer may be refilled.
absl::Status UploadMatrixRows(const WeightMatrix& m, Bf16* dst, int64_t row0_out) {
  const int64_t cols = m.cols;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(1, cols));
  std::vector<Bf16> host;
  std::vector<float> row(cols);
  for (int64_t r0 = 0; r0 < m.rows; r0 += chunk) {
    const int64_t n = std::min(chunk, m.rows - r0);
    host.resize(n * cols);
    if (m.type == WeightMatrix::Type::kBF16) {
      std::memcpy(host.data(), static_cast<const char*>(m.data) + r0 * cols * 2, n * cols * 2);
    } else {
      for (int64_t r = 0; r < n; ++r) {
        m.RowToFloat(r0 + r, row.data());
        for (int64_t c = 0; c < cols; ++c) host[r * cols + c] = cu::FloatToBf16(row[c]);
      }
    }
    TESSERA_RETURN_IF_ERROR(cu::CopyToDeviceAsync(dst + (row0_out + r0) * cols, host.data(),
                                                  n * cols * sizeof(Bf16), nullptr));
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceBuffer> UploadBf16(const std::vector<float>& v) {
  std::vector<Bf16> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = cu::FloatToBf16(v[i]);
  return cu::Upload(b);
}

}  // namespace

absl::Status CudaModelRunner::Impl::Init(const ModelConfig& config,
                                         const CudaRunnerOptions& options) {
  config_ = config;
  options_ = options;
  const TextConfig& tc = config.text;
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (options.block_size < 1 || options.block_size > 256) {
    return bad(absl::StrCat("CUDA runner: block_size ", options.block_size,
                            " is outside [1, 256] (the attention kernels' limit)"));
  }
  if (options.max_step_tokens < 1 || options.max_step_seqs < 1 ||
      options.max_step_seqs > options.max_step_tokens) {
    return bad(absl::StrCat("CUDA runner: max_step_tokens ", options.max_step_tokens,
                            " and max_step_seqs ", options.max_step_seqs,
                            " must be >= 1 with seqs <= tokens"));
  }
  if (options.max_seq_len < 1) return bad("CUDA runner: max_seq_len must be >= 1");
  if (!(options.gpu_memory_fraction > 0.0 && options.gpu_memory_fraction < 1.0)) {
    return bad(absl::StrCat("CUDA runner: gpu_memory_fraction ", options.gpu_memory_fraction,
                            " is outside (0, 1)"));
  }
  if (tc.hidden_activation != "gelu_pytorch_tanh" && !tc.hidden_activation.empty()) {
    return bad(absl::StrCat("CUDA runner: hidden_activation ", tc.hidden_activation,
                            " is not supported (gelu_pytorch_tanh)"));
  }
  for (int32_t l = 0; l < tc.num_layers; ++l) {
    const LayerConfig& lc = tc.layers[l];
    if (lc.num_kv_heads < 1 || tc.num_heads % lc.num_kv_heads != 0 ||
        !AttentionShapeSupported(lc.head_dim, tc.num_heads / lc.num_kv_heads)) {
      return bad(absl::StrCat("CUDA runner: layer ", l, " has head_dim ", lc.head_dim, " with ",
                              tc.num_heads, " query and ", lc.num_kv_heads,
                              " KV heads; the CUDA kernels support head_dim/group 256/2, 512/16 "
                              "(Gemma 4 12B) and 16/2, 32/4 (gemma4-tiny)"));
    }
  }
  // QueryDevices visits every device (making each current in turn), so ours is set after it.
  auto devices = cu::QueryDevices();
  if (!devices.ok()) return devices.status();
  if (options.device < 0 || options.device >= static_cast<int>(devices->size())) {
    return bad(absl::StrCat("CUDA runner: device ", options.device, " does not exist; ",
                            devices->size(), " visible"));
  }
  TESSERA_RETURN_IF_ERROR(cu::SetDevice(options.device));
  device_name_ = (*devices)[options.device].name;  // QueryDevices lists ordinals in order.
  num_sms_ = (*devices)[options.device].multiprocessors;
  auto stream = cu::Stream::Create();
  if (!stream.ok()) return stream.status();
  stream_ = std::move(*stream);
  auto gemm = cu::CreateGemmRunner();
  if (!gemm.ok()) return gemm.status();
  gemm_ = std::move(*gemm);

  layer_group_.assign(tc.num_layers, -1);
  layer_in_group_.assign(tc.num_layers, -1);
  for (LayerType type : {LayerType::kSliding, LayerType::kGlobal}) {
    const int32_t first = config.first_layer_of(type);
    if (first < 0) continue;
    KvGroupSpec g;
    g.name = type == LayerType::kSliding ? "sliding" : "global";
    g.num_layers = config.num_layers_of(type);
    g.num_kv_heads = tc.layers[first].num_kv_heads;
    g.head_dim = tc.layers[first].head_dim;
    g.window = type == LayerType::kSliding ? tc.sliding_window : 0;
    g.block_size = options.block_size;
    g.bytes_per_block = int64_t{2} * g.num_layers * 2 * g.num_kv_heads * g.block_size * g.head_dim;
    const int32_t gid = static_cast<int32_t>(spec_.groups.size());
    int32_t in_group = 0;
    for (int32_t l = 0; l < tc.num_layers; ++l) {
      if (tc.layers[l].type != type) continue;
      if (tc.layers[l].head_dim != g.head_dim || tc.layers[l].num_kv_heads != g.num_kv_heads) {
        return bad(absl::StrCat("CUDA runner: the ", g.name,
                                " layers differ in head_dim or KV heads; one pool per group "
                                "needs them equal"));
      }
      layer_group_[l] = gid;
      layer_in_group_[l] = in_group++;
    }
    spec_.groups.push_back(g);
  }
  for (const LayerConfig& lc : tc.layers) {
    max_qd_ = std::max<int64_t>(max_qd_, int64_t{tc.num_heads} * lc.head_dim);
    max_qkv_ = std::max<int64_t>(max_qkv_,
                                 int64_t{tc.num_heads} * lc.head_dim +
                                     int64_t{lc.num_kv_heads} * lc.head_dim * (lc.k_eq_v ? 1 : 2));
  }
  max_table_ = (options.max_seq_len + options.block_size - 1) / options.block_size;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::AllocateWeight(DeviceBuffer* b, int64_t bytes) {
  auto buf = DeviceBuffer::Allocate(bytes);
  if (!buf.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("CUDA runner: the weights do not fit on ", device_name_, " (", weight_bytes_,
                     " bytes so far, then ", bytes, " more): ", buf.status().message()));
  }
  *b = std::move(*buf);
  weight_bytes_ += bytes;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::UploadInvFreq(const LayerConfig& lc, bool bf16_constants,
                                                  LayerDevice* d) {
  std::vector<float> f = cu::RopeInvFreq(lc.head_dim, lc.rope_theta, lc.rope_pairs);
  if (bf16_constants) {
    for (float& v : f) v = cu::RoundBf16(v);
  }
  auto ib = cu::Upload(f);
  if (!ib.ok()) return ib.status();
  d->inv_freq = std::move(*ib);
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::UploadWeights(const LoadedModel& model) {
  const ModelWeights& w = *model.weights;
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size, I = tc.intermediate_size, V = tc.vocab_size;
  auto alloc = [&](DeviceBuffer* b, int64_t bytes) { return AllocateWeight(b, bytes); };
  TESSERA_RETURN_IF_ERROR(alloc(&embed_, V * H * 2));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(w.embed_tokens, embed_.as<Bf16>(), 0));
  auto fn = UploadBf16(w.final_norm);
  if (!fn.ok()) return fn.status();
  final_norm_ = std::move(*fn);
  embed_scale_ = w.embed_scale;
  layers_.resize(tc.num_layers);
  for (int32_t l = 0; l < tc.num_layers; ++l) {
    const LayerConfig& lc = tc.layers[l];
    const LayerWeights& lw = w.layers[l];
    LayerDevice& d = layers_[l];
    d.SetShape(tc.num_heads, lc);
    TESSERA_RETURN_IF_ERROR(alloc(&d.qkv, d.qkv_width * H * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.q_proj, d.qkv.as<Bf16>(), 0));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.k_proj, d.qkv.as<Bf16>(), d.qd));
    if (!lc.k_eq_v) {
      TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.v_proj, d.qkv.as<Bf16>(), d.qd + d.kd));
    }
    TESSERA_RETURN_IF_ERROR(alloc(&d.o, H * d.qd * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.o_proj, d.o.as<Bf16>(), 0));
    TESSERA_RETURN_IF_ERROR(alloc(&d.gate_up, 2 * I * H * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.gate_proj, d.gate_up.as<Bf16>(), 0));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.up_proj, d.gate_up.as<Bf16>(), I));
    TESSERA_RETURN_IF_ERROR(alloc(&d.down, H * I * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.down_proj, d.down.as<Bf16>(), 0));
    std::vector<float> norms;
    for (const auto* v : {&lw.input_norm, &lw.post_attention_norm, &lw.pre_feedforward_norm,
                          &lw.post_feedforward_norm, &lw.q_norm, &lw.k_norm}) {
      norms.insert(norms.end(), v->begin(), v->end());
    }
    norms.push_back(lw.layer_scalar);
    auto nb = UploadBf16(norms);
    if (!nb.ok()) return nb.status();
    d.norms = std::move(*nb);
    TESSERA_RETURN_IF_ERROR(UploadInvFreq(lc, w.bf16_constants, &d));
  }
  has_vision_ = w.has_vision;
  has_audio_ = w.has_audio;
  if (has_vision_) {
    const VisionWeights& v = w.vision;
    const int64_t D = config_.vision.mm_embed_dim;
    for (auto [buf, src] : std::vector<std::pair<DeviceBuffer*, const std::vector<float>*>>{
             {&v_ln1_w_, &v.ln1_weight},
             {&v_ln1_b_, &v.ln1_bias},
             {&v_dense_b_, &v.patch_dense_bias},
             {&v_ln2_w_, &v.ln2_weight},
             {&v_ln2_b_, &v.ln2_bias},
             {&v_pos_, &v.pos_embedding},
             {&v_posn_w_, &v.pos_norm_weight},
             {&v_posn_b_, &v.pos_norm_bias}}) {
      auto b = cu::Upload(*src);
      if (!b.ok()) return b.status();
      *buf = std::move(*b);
    }
    TESSERA_RETURN_IF_ERROR(alloc(&v_dense_, D * kPatchValues * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(v.patch_dense, v_dense_.as<Bf16>(), 0));
    TESSERA_RETURN_IF_ERROR(alloc(&v_proj_, H * D * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(v.projection, v_proj_.as<Bf16>(), 0));
  }
  if (has_audio_) {
    TESSERA_RETURN_IF_ERROR(alloc(&a_proj_, H * config_.audio.audio_embed_dim * 2));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(w.audio.projection, a_proj_.as<Bf16>(), 0));
  }
  return cu::Synchronize();
}

absl::Status CudaModelRunner::Impl::RandomWeights(uint64_t seed) {
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size, I = tc.intermediate_size, V = tc.vocab_size;
  cudaStream_t s = stream_->get();
  uint64_t next_seed = seed;
  auto alloc = [&](DeviceBuffer* b, int64_t bytes) { return AllocateWeight(b, bytes); };
  // Matrices N(0, 1/fan_in) as the fixture's generator; norms near 1.
  auto matrix = [&](DeviceBuffer* b, int64_t rows, int64_t cols) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(alloc(b, rows * cols * 2));
    return cu::LaunchFillNormalBf16(b->as<Bf16>(), rows * cols, ++next_seed, 0.0f,
                                    1.0f / std::sqrt(static_cast<float>(cols)), s);
  };
  auto vec_bf16 = [&](DeviceBuffer* b, int64_t n, float mean, float sd) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(alloc(b, n * 2));
    return cu::LaunchFillNormalBf16(b->as<Bf16>(), n, ++next_seed, mean, sd, s);
  };
  auto vec_f32 = [&](DeviceBuffer* b, int64_t n, float mean, float sd) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(alloc(b, n * 4));
    return cu::LaunchFillNormalF32(b->as<float>(), n, ++next_seed, mean, sd, s);
  };
  TESSERA_RETURN_IF_ERROR(matrix(&embed_, V, H));
  TESSERA_RETURN_IF_ERROR(vec_bf16(&final_norm_, H, 1.0f, 0.1f));
  embed_scale_ = cu::RoundBf16(std::sqrt(static_cast<float>(H)));
  layers_.resize(tc.num_layers);
  for (int32_t l = 0; l < tc.num_layers; ++l) {
    const LayerConfig& lc = tc.layers[l];
    LayerDevice& d = layers_[l];
    d.SetShape(tc.num_heads, lc);
    TESSERA_RETURN_IF_ERROR(matrix(&d.qkv, d.qkv_width, H));
    TESSERA_RETURN_IF_ERROR(matrix(&d.o, H, d.qd));
    TESSERA_RETURN_IF_ERROR(matrix(&d.gate_up, 2 * I, H));
    TESSERA_RETURN_IF_ERROR(matrix(&d.down, H, I));
    // Norm weights near 1; the layer scalar (the last entry) is then set to exactly 1.
    const int64_t n = 4 * H + 2 * lc.head_dim + 1;
    TESSERA_RETURN_IF_ERROR(vec_bf16(&d.norms, n, 1.0f, 0.1f));
    const Bf16 one = cu::FloatToBf16(1.0f);
    TESSERA_RETURN_IF_ERROR(
        cu::CopyToDeviceAsync(d.norms.as<Bf16>() + n - 1, &one, sizeof(one), s));
    TESSERA_RETURN_IF_ERROR(UploadInvFreq(lc, /*bf16_constants=*/true, &d));
    TESSERA_RETURN_IF_ERROR(stream_->Synchronize());  // `one` leaves scope.
  }
  has_vision_ = config_.vision.present;
  has_audio_ = config_.audio.present;
  if (has_vision_) {
    const int64_t D = config_.vision.mm_embed_dim, P = config_.vision.mm_posemb_size;
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_ln1_w_, kPatchValues, 1.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_ln1_b_, kPatchValues, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(matrix(&v_dense_, D, kPatchValues));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_dense_b_, D, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_ln2_w_, D, 1.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_ln2_b_, D, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_pos_, P * 2 * D, 0.0f, 1.0f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_posn_w_, D, 1.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&v_posn_b_, D, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(matrix(&v_proj_, H, D));
  }
  if (has_audio_) TESSERA_RETURN_IF_ERROR(matrix(&a_proj_, H, config_.audio.audio_embed_dim));
  TESSERA_RETURN_IF_ERROR(stream_->Synchronize());
  return cu::Synchronize();  // The inv_freq uploads went through the legacy stream.
}

absl::Status CudaModelRunner::Impl::AllocateRuntime() {
  const TextConfig& tc = config_.text;
  const int64_t T = options_.max_step_tokens, S = options_.max_step_seqs;
  const int64_t H = tc.hidden_size, I = tc.intermediate_size, V = tc.vocab_size;
  const int64_t R = std::max<int64_t>(S, kLogitsChunkRows);
  auto alloc = [&](DeviceBuffer* b, int64_t bytes) -> absl::Status {
    auto buf = DeviceBuffer::Allocate(bytes);
    if (!buf.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "CUDA runner: step buffers of ", bytes, " bytes do not fit beside the weights (",
          weight_bytes_,
          " bytes); lower --max_num_batched_tokens or --max_num_seqs: ", buf.status().message()));
    }
    *b = std::move(*buf);
    return absl::OkStatus();
  };
  TESSERA_RETURN_IF_ERROR(alloc(&h_, T * H * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&x_, T * H * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&qkv_, T * max_qkv_ * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&attn_, T * max_qd_ * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&o_, T * H * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&gu_, T * 2 * I * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&act_, T * I * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&gathered_, R * H * 2));
  TESSERA_RETURN_IF_ERROR(alloc(&logits_, R * V * 4));
  // Decode splits: ChooseDecodeSplits keeps splits * seqs * kv_heads near 2 * SMs, so the
  // workspace is bounded by (2 * SMs + seqs) rows of every query head.
  int64_t max_hd = 0;
  for (const LayerConfig& lc : tc.layers) max_hd = std::max<int64_t>(max_hd, lc.head_dim);
  attn_ws_floats_ = (2 * num_sms_ + S + 1) * tc.num_heads * (max_hd + 2);
  TESSERA_RETURN_IF_ERROR(alloc(&attn_ws_, attn_ws_floats_ * 4));
  TESSERA_RETURN_IF_ERROR(
      alloc(&sample_ws_, std::max<size_t>(16, cu::SampleWorkspaceBytes(S, tc.vocab_size))));

  // Step metadata: one device buffer and one pinned mirror, carved into arrays.
  const int64_t G = static_cast<int64_t>(spec_.groups.size());
  int64_t bytes = 0;
  auto carve = [&](int64_t count, size_t elem) {
    const int64_t at = bytes;
    bytes = RoundUp(bytes + count * static_cast<int64_t>(elem), 256);
    return at;
  };
  const int64_t o_ids = carve(T, 4), o_pos = carve(T, 4), o_rs = carve(S + 1, 4),
                o_sp = carve(S, 4), o_bb = carve(T, 4), o_be = carve(T, 4),
                o_srp = carve(S, sizeof(cu::SampleRowParams)), o_ga = carve(R, 4);
  std::vector<int64_t> o_slots, o_tables;
  for (int64_t g = 0; g < G; ++g) {
    o_slots.push_back(carve(T, 8));
    o_tables.push_back(carve(S * max_table_, 4));
  }
  TESSERA_RETURN_IF_ERROR(alloc(&meta_dev_, bytes));
  auto pinned = cu::PinnedBuffer::Allocate(bytes);
  if (!pinned.ok()) return pinned.status();
  meta_host_ = std::move(*pinned);
  auto mirror = [&](auto* m, int64_t offset, int64_t capacity) {
    using T0 = std::remove_pointer_t<decltype(m->host)>;
    m->host = reinterpret_cast<T0*>(meta_host_.as<char>() + offset);
    m->device = reinterpret_cast<T0*>(meta_dev_.as<char>() + offset);
    m->capacity = capacity;
  };
  mirror(&ids_, o_ids, T);
  mirror(&positions_, o_pos, T);
  mirror(&row_start_, o_rs, S + 1);
  mirror(&start_pos_, o_sp, S);
  mirror(&bidi_begin_, o_bb, T);
  mirror(&bidi_end_, o_be, T);
  mirror(&sample_rows_, o_srp, S);
  mirror(&gather_, o_ga, R);
  slots_.resize(G);
  tables_.resize(G);
  for (int64_t g = 0; g < G; ++g) {
    mirror(&slots_[g], o_slots[g], T);
    mirror(&tables_[g], o_tables[g], S * max_table_);
  }
  TESSERA_RETURN_IF_ERROR(alloc(&penalties_dev_, kMaxPenaltyEntries * sizeof(cu::PenaltyEntry)));
  auto pp = cu::PinnedBuffer::Allocate(kMaxPenaltyEntries * sizeof(cu::PenaltyEntry));
  if (!pp.ok()) return pp.status();
  penalties_host_ = std::move(*pp);
  TESSERA_RETURN_IF_ERROR(alloc(&out_dev_, S * 8));
  out_tokens_dev_ = out_dev_.as<int32_t>();
  out_logprobs_dev_ = reinterpret_cast<float*>(out_dev_.as<int32_t>() + S);
  auto op = cu::PinnedBuffer::Allocate(S * 8);
  if (!op.ok()) return op.status();
  out_host_ = std::move(*op);

  // KV pools last: the fraction applies to what is free now.
  int64_t budget = options_.kv_memory_bytes;
  if (budget == 0 && (options_.num_blocks_sliding == 0 || options_.num_blocks_global == 0)) {
    size_t free_b = 0, total_b = 0;
    TESSERA_RETURN_IF_ERROR(cu::MemoryInfo(&free_b, &total_b));
    budget = static_cast<int64_t>(static_cast<double>(free_b) * options_.gpu_memory_fraction);
  }
  // Split the budget so both groups run out together for sequences of kv_balance_seq_len tokens:
  // a sliding-window group needs only the blocks its window spans, a global one every block.
  const int64_t balance_len =
      std::max<int64_t>(1, std::min<int64_t>(options_.kv_balance_seq_len, options_.max_seq_len));
  // A group whose count is explicit takes its bytes off the budget first.
  auto explicit_count = [&](const KvGroupSpec& gs) -> int64_t {
    return gs.name == "sliding" ? options_.num_blocks_sliding : options_.num_blocks_global;
  };
  int64_t weight_sum = 0;
  std::vector<int64_t> per_seq(G);
  for (int64_t g = 0; g < G; ++g) {
    const KvGroupSpec& gs = spec_.groups[g];
    const int64_t len = gs.window > 0 ? std::min<int64_t>(gs.window, balance_len) : balance_len;
    per_seq[g] = (len + gs.block_size - 1) / gs.block_size + (gs.window > 0 ? 1 : 0);
    if (explicit_count(gs) > 0) {
      budget -= (explicit_count(gs) + 1) * gs.bytes_per_block;
    } else {
      weight_sum += per_seq[g] * gs.bytes_per_block;
    }
  }
  budget = std::max<int64_t>(budget, 0);
  for (int64_t g = 0; g < G; ++g) {
    KvGroupSpec& gs = spec_.groups[g];
    int64_t n = explicit_count(gs);
    if (n == 0) {
      n = static_cast<int64_t>(static_cast<double>(budget) * per_seq[g] /
                               static_cast<double>(std::max<int64_t>(1, weight_sum)));
      n = std::max<int64_t>(n, 0);
    }
    // At least one full sequence of the step's largest chunk must fit.
    const int64_t need = (options_.max_step_tokens + gs.block_size - 1) / gs.block_size + 1;
    if (n < std::min<int64_t>(need, per_seq[g]) || n > std::numeric_limits<int32_t>::max() - 1) {
      return absl::ResourceExhaustedError(
          absl::StrCat("CUDA runner: the KV pool of group ", gs.name, " would have ", n,
                       " blocks of ", gs.bytes_per_block, " bytes (budget ", budget,
                       " bytes); raise --gpu_memory_fraction or lower --max_model_len"));
    }
    gs.num_blocks = static_cast<int32_t>(n);
    DeviceBuffer pool;
    TESSERA_RETURN_IF_ERROR(alloc(&pool, (n + 1) * gs.bytes_per_block));
    // Only the padding block must be zero (padding rows of graph steps read it); the rest is
    // written before it is read.
    TESSERA_RETURN_IF_ERROR(cu::MemsetAsync(pool.as<char>() + n * gs.bytes_per_block, 0,
                                            gs.bytes_per_block, stream_->get()));
    kv_bytes_ += (n + 1) * gs.bytes_per_block;
    pools_.push_back(std::move(pool));
  }
  return stream_->Synchronize();
}

cu::PagedKvView CudaModelRunner::Impl::View(int32_t layer) const {
  const int32_t g = layer_group_[layer];
  const KvGroupSpec& gs = spec_.groups[g];
  cu::PagedKvView v;
  v.pool = pools_[g].as<Bf16>();
  v.num_blocks = gs.num_blocks + 1;
  v.num_layers = gs.num_layers;
  v.layer = layer_in_group_[layer];
  v.num_kv_heads = gs.num_kv_heads;
  v.block_size = gs.block_size;
  v.head_dim = gs.head_dim;
  return v;
}

// This runner's capacity limits first (the step buffers and block-table width), then the checks
// every runner makes (runtime/plan_validation.h).
absl::Status CudaModelRunner::Impl::ValidatePlan(const BatchPlan& plan) const {
  if (static_cast<int64_t>(plan.seqs.size()) > options_.max_step_seqs) {
    return absl::InvalidArgumentError(absl::StrCat("step has ", plan.seqs.size(),
                                                   " sequences; this runner was sized for ",
                                                   options_.max_step_seqs, " (max_step_seqs)"));
  }
  int64_t rows = 0;
  for (const SequencePlan& s : plan.seqs) {
    rows += static_cast<int64_t>(s.token_ids.size());
    const int64_t end = s.start_pos + static_cast<int64_t>(s.token_ids.size());
    if (end > options_.max_seq_len) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": positions up to ",
                                                     end, " exceed this runner's max_seq_len ",
                                                     options_.max_seq_len));
    }
  }
  if (rows > options_.max_step_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("step has ", rows,
                                                   " rows; this runner was sized for ",
                                                   options_.max_step_tokens, " (max_step_tokens)"));
  }
  return ValidateBatchPlan(plan, spec_, config_, {has_vision_, has_audio_});
}

// Sizes the media staging buffers for `rows` rows. Called before any of the step's work is
// queued (freeing a buffer that queued kernels still read would be a use-after-free).
absl::Status CudaModelRunner::Impl::GrowMedia(int64_t rows) {
  const int64_t have = static_cast<int64_t>(media_in_.size() / (kPatchValues * 4));
  if (rows <= have) return absl::OkStatus();
  const int64_t n = std::max<int64_t>(rows, 2 * have);
  const int64_t D = std::max<int64_t>(1, config_.vision.mm_embed_dim);
  for (auto [buf, bytes] :
       std::vector<std::pair<DeviceBuffer*, int64_t>>{{&media_in_, n * kPatchValues * 4},
                                                      {&media_a_, n * kPatchValues * 2},
                                                      {&media_d_, n * D * 2},
                                                      {&media_e_, n * D * 2},
                                                      {&media_pos_, n * 2 * 4}}) {
    auto b = DeviceBuffer::Allocate(bytes);
    if (!b.ok()) return b.status();
    *buf = std::move(*b);
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnqueueMedia(const MediaRows& m, int64_t first_row) {
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size;
  cudaStream_t s = stream_->get();
  const MediaItem& item = *m.item;
  Bf16* out = h_.as<Bf16>() + first_row * H;
  if (static_cast<int64_t>(media_in_.size()) < int64_t{m.count} * kPatchValues * 4) {
    return absl::InternalError("CUDA runner: media staging buffers were not sized for the step");
  }
  if (item.kind == MediaKind::kAudio) {
    const int64_t F = kAudioFrameSamples;
    TESSERA_RETURN_IF_ERROR(
        cu::CopyToDeviceAsync(media_in_.data(), item.row(m.item_row), m.count * F * 4, s));
    cu::AudioFrameNormParams a;
    a.frames = media_in_.as<float>();
    a.in_row_stride = F;
    a.out = media_a_.as<Bf16>();
    a.out_row_stride = F;
    a.rows = m.count;
    a.dim = static_cast<int32_t>(F);
    a.eps = config_.audio.rms_norm_eps;
    TESSERA_RETURN_IF_ERROR(cu::LaunchAudioFrameNorm(a, s));
    return Gemm(media_a_.as<Bf16>(), F, a_proj_.as<Bf16>(), F, out, H, m.count, H, F);
  }
  const int64_t P = kPatchValues, D = config_.vision.mm_embed_dim;
  // The patches and their (x, y) positions, from the plan's host data, which outlives the step
  // (the stream is synchronised before Execute returns).
  TESSERA_RETURN_IF_ERROR(
      cu::CopyToDeviceAsync(media_in_.data(), item.row(m.item_row), m.count * P * 4, s));
  int32_t* positions = media_pos_.as<int32_t>();
  TESSERA_RETURN_IF_ERROR(cu::CopyToDeviceAsync(positions, item.positions.data() + 2 * m.item_row,
                                                m.count * 2 * sizeof(int32_t), s));
  cu::PatchInputNormParams a;
  a.patches = media_in_.as<float>();
  a.in_row_stride = P;
  a.weight = v_ln1_w_.as<float>();
  a.bias = v_ln1_b_.as<float>();
  a.out = media_a_.as<Bf16>();
  a.out_row_stride = P;
  a.rows = m.count;
  a.dim = static_cast<int32_t>(P);
  a.eps = config_.vision.layer_norm_eps;
  TESSERA_RETURN_IF_ERROR(cu::LaunchPatchInputNorm(a, s));
  TESSERA_RETURN_IF_ERROR(
      Gemm(media_a_.as<Bf16>(), P, v_dense_.as<Bf16>(), P, media_d_.as<Bf16>(), D, m.count, D, P));
  cu::PatchOutputNormParams b;
  b.dense = media_d_.as<Bf16>();
  b.dense_row_stride = D;
  b.dense_bias = v_dense_b_.as<float>();
  b.ln2_weight = v_ln2_w_.as<float>();
  b.ln2_bias = v_ln2_b_.as<float>();
  b.pos_table = v_pos_.as<float>();
  b.pos_size = config_.vision.mm_posemb_size;
  b.positions = positions;
  b.pos_norm_weight = v_posn_w_.as<float>();
  b.pos_norm_bias = v_posn_b_.as<float>();
  b.out = media_e_.as<Bf16>();
  b.out_row_stride = D;
  b.rows = m.count;
  b.dim = static_cast<int32_t>(D);
  b.layer_norm_eps = config_.vision.layer_norm_eps;
  b.rms_eps = config_.vision.rms_norm_eps;
  TESSERA_RETURN_IF_ERROR(cu::LaunchPatchOutputNorm(b, s));
  return Gemm(media_e_.as<Bf16>(), D, v_proj_.as<Bf16>(), D, out, H, m.count, H, D);
}

absl::Status CudaModelRunner::Impl::Gemm(const Bf16* x, int64_t ldx, const Bf16* w, int64_t ldw,
                                         void* out, int64_t ldo, int64_t m, int64_t n, int64_t k,
                                         bool out_fp32) {
  cu::GemmParams g;
  g.x = x;
  g.ldx = ldx;
  g.w = w;
  g.ldw = ldw;
  g.out = out;
  g.ldo = ldo;
  g.out_fp32 = out_fp32;
  g.m = m;
  g.n = n;
  g.k = k;
  return gemm_->Run(g, stream_->get());
}

// Rows [0, count) of gathered_ (or of x_ when `rows` is empty: rows [0, count) of the step) ->
// logits_ [count, V] fp32, softcapped.
absl::Status CudaModelRunner::Impl::EnqueueLogits(const std::vector<int32_t>& rows, int32_t count) {
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size, V = tc.vocab_size;
  cudaStream_t s = stream_->get();
  const Bf16* in = x_.as<Bf16>();
  if (!rows.empty()) {
    // The embedding gather with scale 1 is a row gather (bf16 * 1 is exact). The pinned indices
    // are not rewritten before the stream is synchronised (every caller syncs before the next).
    std::copy_n(rows.begin(), count, gather_.host);
    TESSERA_RETURN_IF_ERROR(
        cu::CopyToDeviceAsync(gather_.device, gather_.host, int64_t{count} * 4, s));
    cu::EmbedParams e;
    e.ids = gather_.device;
    e.table = x_.as<Bf16>();
    e.vocab = options_.max_step_tokens;
    e.hidden = static_cast<int32_t>(H);
    e.out = gathered_.as<Bf16>();
    e.out_row_stride = H;
    e.rows = count;
    e.scale = 1.0f;
    TESSERA_RETURN_IF_ERROR(cu::LaunchEmbedTokens(e, s));
    in = gathered_.as<Bf16>();
  }
  TESSERA_RETURN_IF_ERROR(
      Gemm(in, H, embed_.as<Bf16>(), H, logits_.data(), V, count, V, H, /*out_fp32=*/true));
  if (tc.final_logit_softcapping > 0.0f) {
    cu::SoftcapParams sc;
    sc.logits = logits_.as<float>();
    sc.row_stride = V;
    sc.rows = count;
    sc.cols = static_cast<int32_t>(V);
    sc.cap = tc.final_logit_softcapping;
    TESSERA_RETURN_IF_ERROR(cu::LaunchSoftcap(sc, s));
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::UploadMeta(int32_t rows, int32_t seqs, int32_t table_width,
                                               int64_t penalties) {
  cudaStream_t s = stream_->get();
  auto up = [&](auto& m, int64_t n) {
    return cu::CopyToDeviceAsync(m.device, m.host, n * sizeof(*m.host), s);
  };
  TESSERA_RETURN_IF_ERROR(up(ids_, rows));
  TESSERA_RETURN_IF_ERROR(up(positions_, rows));
  TESSERA_RETURN_IF_ERROR(up(row_start_, seqs + 1));
  TESSERA_RETURN_IF_ERROR(up(start_pos_, seqs));
  TESSERA_RETURN_IF_ERROR(up(bidi_begin_, rows));
  TESSERA_RETURN_IF_ERROR(up(bidi_end_, rows));
  TESSERA_RETURN_IF_ERROR(up(sample_rows_, seqs));
  for (size_t g = 0; g < slots_.size(); ++g) {
    TESSERA_RETURN_IF_ERROR(up(slots_[g], rows));
    TESSERA_RETURN_IF_ERROR(up(tables_[g], int64_t{seqs} * table_width));
  }
  if (penalties > 0) {
    TESSERA_RETURN_IF_ERROR(cu::CopyToDeviceAsync(penalties_dev_.data(), penalties_host_.data(),
                                                  penalties * sizeof(cu::PenaltyEntry), s));
  }
  return absl::OkStatus();
}

// Everything of a step after the metadata upload, on the stream; no host synchronisation and no
// allocation when shape.decode (so it can be captured).
absl::Status CudaModelRunner::Impl::EnqueueForward(const StepShape& shape, const BatchPlan* plan,
                                                   const std::vector<int64_t>& seq_row0) {
  const TextConfig& tc = config_.text;
  const int64_t T = shape.rows, H = tc.hidden_size, I = tc.intermediate_size;
  const float eps = tc.rms_norm_eps;
  cudaStream_t s = stream_->get();

  cu::EmbedParams e;
  e.ids = ids_.device;
  e.table = embed_.as<Bf16>();
  e.vocab = tc.vocab_size;
  e.hidden = static_cast<int32_t>(H);
  e.out = h_.as<Bf16>();
  e.out_row_stride = H;
  e.rows = static_cast<int32_t>(T);
  e.scale = embed_scale_;
  TESSERA_RETURN_IF_ERROR(cu::LaunchEmbedTokens(e, s));
  if (plan != nullptr) {
    for (size_t si = 0; si < plan->seqs.size(); ++si) {
      for (const MediaRows& m : plan->seqs[si].media) {
        TESSERA_RETURN_IF_ERROR(EnqueueMedia(m, seq_row0[si] + m.seq_row));
      }
    }
  }

  cu::RmsNormParams in;
  in.in = h_.as<Bf16>();
  in.in_row_stride = H;
  in.weight = layers_[0].norm(0, H);
  in.out = x_.as<Bf16>();
  in.out_row_stride = H;
  in.rows = static_cast<int32_t>(T);
  in.dim = static_cast<int32_t>(H);
  in.eps = eps;
  TESSERA_RETURN_IF_ERROR(cu::LaunchRmsNorm(in, s));

  for (int32_t l = 0; l < tc.num_layers; ++l) {
    const LayerConfig& lc = tc.layers[l];
    const LayerDevice& d = layers_[l];
    const int32_t group = layer_group_[l];
    const int64_t hd = lc.head_dim;
    TESSERA_RETURN_IF_ERROR(
        Gemm(x_.as<Bf16>(), H, d.qkv.as<Bf16>(), H, qkv_.data(), d.qkv_width, T, d.qkv_width, H));

    cu::RopeKvParams r;
    r.qkv = qkv_.as<Bf16>();
    r.qkv_row_stride = d.qkv_width;
    r.q_offset = 0;
    r.k_offset = d.qd;
    r.v_offset = lc.k_eq_v ? d.qd : d.qd + d.kd;
    r.q_out = qkv_.as<Bf16>();
    r.q_out_row_stride = d.qkv_width;
    r.q_norm_weight = d.norm(0, H) + 4 * H;
    r.k_norm_weight = d.norm(0, H) + 4 * H + hd;
    r.inv_freq = d.inv_freq.as<float>();
    r.positions = positions_.device;
    r.slot_mapping = slots_[group].device;
    r.kv = View(l);
    r.num_rows = static_cast<int32_t>(T);
    r.num_q_heads = tc.num_heads;
    r.eps = eps;
    TESSERA_RETURN_IF_ERROR(cu::LaunchRopeKvWrite(r, s));

    cu::AttentionParams a;
    a.q = qkv_.as<Bf16>();
    a.q_row_stride = d.qkv_width;
    a.out = attn_.as<Bf16>();
    a.out_row_stride = d.qd;
    a.num_seqs = shape.seqs;
    a.total_rows = static_cast<int32_t>(T);
    a.num_q_heads = tc.num_heads;
    a.kv = View(l);
    a.row_start = row_start_.device;
    a.start_pos = start_pos_.device;
    a.block_tables = tables_[group].device;
    a.block_table_stride = shape.table_width;
    if (shape.bidi) {
      // Every layer: the reference applies the image block to global layers too (model_runner.h).
      a.bidi_begin = bidi_begin_.device;
      a.bidi_end = bidi_end_.device;
    }
    a.window = lc.window;
    a.scale = 1.0f;
    a.max_rows_per_seq = shape.max_rows_per_seq;
    if (shape.decode) {
      a.num_splits = shape.splits[group];
      a.workspace = a.num_splits > 1 ? attn_ws_.as<float>() : nullptr;
      TESSERA_RETURN_IF_ERROR(cu::LaunchPagedDecodeAttention(a, s));
    } else {
      TESSERA_RETURN_IF_ERROR(cu::LaunchPagedPrefillAttention(a, s));
    }

    TESSERA_RETURN_IF_ERROR(
        Gemm(attn_.as<Bf16>(), d.qd, d.o.as<Bf16>(), d.qd, o_.data(), H, T, H, d.qd));

    cu::ResidualRmsNormParams post;
    post.y = o_.as<Bf16>();
    post.y_row_stride = H;
    post.y_weight = d.norm(1, H);
    post.residual = h_.as<Bf16>();
    post.residual_row_stride = H;
    post.out_weight = d.norm(2, H);
    post.out = x_.as<Bf16>();
    post.out_row_stride = H;
    post.rows = static_cast<int32_t>(T);
    post.dim = static_cast<int32_t>(H);
    post.eps = eps;
    TESSERA_RETURN_IF_ERROR(cu::LaunchResidualRmsNorm(post, s));

    TESSERA_RETURN_IF_ERROR(
        Gemm(x_.as<Bf16>(), H, d.gate_up.as<Bf16>(), H, gu_.data(), 2 * I, T, 2 * I, H));

    cu::GegluParams gg;
    gg.in = gu_.as<Bf16>();
    gg.in_row_stride = 2 * I;
    gg.up_offset = I;
    gg.out = act_.as<Bf16>();
    gg.out_row_stride = I;
    gg.rows = static_cast<int32_t>(T);
    gg.dim = static_cast<int32_t>(I);
    TESSERA_RETURN_IF_ERROR(cu::LaunchGeglu(gg, s));

    TESSERA_RETURN_IF_ERROR(Gemm(act_.as<Bf16>(), I, d.down.as<Bf16>(), I, o_.data(), H, T, H, I));

    cu::ResidualRmsNormParams ffw;
    ffw.y = o_.as<Bf16>();
    ffw.y_row_stride = H;
    ffw.y_weight = d.norm(3, H);
    ffw.residual = h_.as<Bf16>();
    ffw.residual_row_stride = H;
    ffw.layer_scalar = d.norm(0, H) + 4 * H + 2 * hd;
    // The next layer's input norm, or the final norm after the last layer.
    ffw.out_weight = l + 1 < tc.num_layers ? layers_[l + 1].norm(0, H) : final_norm_.as<Bf16>();
    ffw.out = x_.as<Bf16>();
    ffw.out_row_stride = H;
    ffw.rows = static_cast<int32_t>(T);
    ffw.dim = static_cast<int32_t>(H);
    ffw.eps = eps;
    TESSERA_RETURN_IF_ERROR(cu::LaunchResidualRmsNorm(ffw, s));
  }

  if (shape.sample_rows > 0) {
    TESSERA_RETURN_IF_ERROR(EnqueueLogits(
        shape.gathered ? shape.sample_src : std::vector<int32_t>(), shape.sample_rows));
    cu::SampleParams sp;
    sp.logits = logits_.as<float>();
    sp.row_stride = tc.vocab_size;
    sp.rows = shape.sample_rows;
    sp.vocab = tc.vocab_size;
    sp.row_params = sample_rows_.device;
    sp.penalties = penalties_dev_.as<cu::PenaltyEntry>();
    sp.workspace = sample_ws_.data();
    sp.out_token = out_tokens_dev_;
    sp.out_logprob = out_logprobs_dev_;
    TESSERA_RETURN_IF_ERROR(cu::LaunchSample(sp, s));
    TESSERA_RETURN_IF_ERROR(
        cu::CopyToHostAsync(out_host_.data(), out_dev_.data(), int64_t{shape.sample_rows} * 4, s));
    TESSERA_RETURN_IF_ERROR(cu::CopyToHostAsync(out_host_.as<int32_t>() + options_.max_step_seqs,
                                                out_logprobs_dev_, int64_t{shape.sample_rows} * 4,
                                                s));
  }
  return absl::OkStatus();
}

// Writes the pinned metadata of the step's rows (ids, positions, spans, slots, row starts, block
// tables of `width` entries) for the plan's sequences and, past them, the padding sequences of a
// graph step (one row at position 0 reading the zeroed spare block, writing nothing). Returns the
// number of rows; seq_row0 gets each sequence's first row.
int32_t CudaModelRunner::Impl::LayOutRows(const BatchPlan& plan, int32_t S_run, int32_t width,
                                          std::vector<int64_t>* seq_row0_out) {
  std::vector<int64_t>& seq_row0 = *seq_row0_out;
  seq_row0.assign(S_run, 0);
  const int32_t S = static_cast<int32_t>(plan.seqs.size());
  const int32_t G = static_cast<int32_t>(spec_.groups.size());
  int32_t row = 0;
  for (int32_t si = 0; si < S_run; ++si) {
    seq_row0[si] = row;
    row_start_.host[si] = row;
    if (si >= S) {
      // Padding sequence of a graph step: one row at position 0 reading the zeroed spare block,
      // writing nothing, sampled greedily and ignored.
      ids_.host[row] = 0;
      positions_.host[row] = 0;
      bidi_begin_.host[row] = bidi_end_.host[row] = 0;
      start_pos_.host[si] = 0;
      for (int32_t g = 0; g < G; ++g) {
        slots_[g].host[row] = -1;
        std::fill_n(tables_[g].host + int64_t{si} * width, width, spec_.groups[g].num_blocks);
      }
      ++row;
      continue;
    }
    const SequencePlan& sp = plan.seqs[si];
    start_pos_.host[si] = sp.start_pos;
    const int32_t n = static_cast<int32_t>(sp.token_ids.size());
    std::vector<bool> media_row(n, false);
    for (const MediaRows& m : sp.media) {
      for (int32_t i = m.seq_row; i < m.seq_row + m.count; ++i) media_row[i] = true;
    }
    for (int32_t i = 0; i < n; ++i) {
      const int32_t pos = sp.start_pos + i;
      ids_.host[row + i] = media_row[i] ? -1 : sp.token_ids[i];
      positions_.host[row + i] = pos;
      int32_t bb = 0, be = 0;
      for (const BidirectionalSpan& span : sp.bidirectional) {
        if (pos >= span.begin && pos < span.end) {
          bb = span.begin;
          be = span.end;
        }
      }
      bidi_begin_.host[row + i] = bb;
      bidi_end_.host[row + i] = be;
      for (int32_t g = 0; g < G; ++g) {
        const int32_t bs = spec_.groups[g].block_size;
        slots_[g].host[row + i] = int64_t{sp.block_tables[g][pos / bs]} * bs + pos % bs;
      }
    }
    for (int32_t g = 0; g < G; ++g) {
      int32_t* t = tables_[g].host + int64_t{si} * width;
      const auto& src = sp.block_tables[g];
      const int32_t n_copy = std::min<int32_t>(width, static_cast<int32_t>(src.size()));
      std::copy_n(src.begin(), n_copy, t);
      // Entries no query reads (released, or past the table) point at the spare block.
      for (int32_t j = 0; j < width; ++j) {
        if (j >= n_copy || t[j] < 0) t[j] = spec_.groups[g].num_blocks;
      }
    }
    row += n;
  }
  row_start_.host[S_run] = row;
  return row;
}

// Writes the penalty entries (distinct context tokens, bans) of every sequence in
// `gpu_sample_seqs` into the pinned staging buffer, with each sequence's [begin, end); a sequence
// whose entries do not fit moves to `cpu_sample`. Returns the number of entries.
int64_t CudaModelRunner::Impl::BuildPenaltyEntries(const BatchPlan& plan,
                                                   std::vector<int32_t>* gpu_sample_seqs_out,
                                                   std::vector<bool>* cpu_sample_out,
                                                   std::vector<int32_t>* pen_begin_out,
                                                   std::vector<int32_t>* pen_end_out) {
  std::vector<int32_t>& gpu_sample_seqs = *gpu_sample_seqs_out;
  std::vector<bool>& cpu_sample = *cpu_sample_out;
  std::vector<int32_t>& pen_begin = *pen_begin_out;
  std::vector<int32_t>& pen_end = *pen_end_out;
  const int32_t V = config_.text.vocab_size;
  int64_t penalty_count = 0;
  cu::PenaltyEntry* entries = penalties_host_.as<cu::PenaltyEntry>();
  if (penalty_slot_.size() != static_cast<size_t>(V)) {
    penalty_slot_.assign(V, 0);
    penalty_stamp_.assign(V, 0);
  }
  for (int32_t si : gpu_sample_seqs) {
    const SequencePlan& sp = plan.seqs[si];
    const SamplingParams& p = sp.sampling;
    const SamplingContext& c = sp.sampling_context;
    if (++stamp_ == 0) {  // Wrapped: forget every old stamp.
      std::fill(penalty_stamp_.begin(), penalty_stamp_.end(), 0);
      stamp_ = 1;
    }
    const int64_t begin = penalty_count;
    // The entry of `tok` for this sequence, made on first sight; null when the buffer is full.
    auto entry = [&](int32_t tok) -> cu::PenaltyEntry* {
      if (penalty_stamp_[tok] != stamp_) {
        if (penalty_count >= kMaxPenaltyEntries) return nullptr;
        penalty_stamp_[tok] = stamp_;
        penalty_slot_[tok] = static_cast<int32_t>(penalty_count);
        entries[penalty_count] = cu::PenaltyEntry{tok, 0, 0, 0};
        ++penalty_count;
      }
      return &entries[penalty_slot_[tok]];
    };
    bool overflow = false;
    auto add = [&](int32_t tok, bool output) {
      if (overflow || tok < 0 || tok >= V) return;
      cu::PenaltyEntry* e = entry(tok);
      if (e == nullptr) {
        overflow = true;
        return;
      }
      e->in_context = 1;
      if (output) ++e->output_count;
    };
    if (p.repetition_penalty != 1.0f && c.prompt_tokens != nullptr) {
      for (int32_t t : *c.prompt_tokens) add(t, false);
    }
    if ((p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f ||
         p.presence_penalty != 0.0f) &&
        c.output_tokens != nullptr) {
      for (int32_t t : *c.output_tokens) add(t, true);
    }
    for (int32_t t : c.banned_tokens) {
      if (overflow) break;
      if (t < 0 || t >= V) continue;
      cu::PenaltyEntry* e = entry(t);
      if (e == nullptr) {
        overflow = true;
        continue;
      }
      e->banned = 1;
    }
    if (overflow) {
      // Too many distinct context tokens this step: this row samples on the CPU.
      penalty_count = begin;
      cpu_sample[si] = true;
      continue;
    }
    pen_begin[si] = static_cast<int32_t>(begin);
    pen_end[si] = static_cast<int32_t>(penalty_count);
  }
  gpu_sample_seqs.erase(std::remove_if(gpu_sample_seqs.begin(), gpu_sample_seqs.end(),
                                       [&](int32_t si) { return cpu_sample[si]; }),
                        gpu_sample_seqs.end());
  return penalty_count;
}

absl::Status CudaModelRunner::Impl::Execute(const BatchPlan& plan, StepOutput* out) {
  if (out == nullptr) return absl::InvalidArgumentError("Execute: null output");
  TESSERA_RETURN_IF_ERROR(ValidatePlan(plan));
  // The engine calls from its own thread, whose current device is not necessarily ours.
  TESSERA_RETURN_IF_ERROR(cu::SetDevice(options_.device));
  out->seqs.clear();
  out->seqs.resize(plan.seqs.size());
  if (plan.seqs.empty()) return absl::OkStatus();
  const TextConfig& tc = config_.text;
  const int32_t V = tc.vocab_size;
  const int32_t S = static_cast<int32_t>(plan.seqs.size());
  const int32_t G = static_cast<int32_t>(spec_.groups.size());

  // Step shape.
  StepShape shape;
  shape.seqs = S;
  bool decode = true, bidi = false, any_logits_rows = false;
  int32_t max_rows = 1, max_table = 1, max_kv = 1;
  for (const SequencePlan& sp : plan.seqs) {
    const int32_t n = static_cast<int32_t>(sp.token_ids.size());
    decode = decode && n == 1 && sp.media.empty();
    bidi = bidi || !sp.bidirectional.empty();
    any_logits_rows = any_logits_rows || !sp.logits_rows.empty();
    max_rows = std::max(max_rows, n);
    max_kv = std::max(max_kv, sp.start_pos + n);
    for (const auto& t : sp.block_tables) {
      max_table = std::max(max_table, static_cast<int32_t>(t.size()));
    }
  }
  max_table = std::min<int32_t>(max_table, static_cast<int32_t>(max_table_));

  // Which rows sample on the GPU, and which need their logits on the host (requested rows, and
  // rows whose sampling the GPU sampler does not cover: top_logprobs, a constrained-decoding mask).
  std::vector<int32_t> gpu_sample_seqs;
  std::vector<bool> cpu_sample(S, false);
  for (int32_t si = 0; si < S; ++si) {
    const SequencePlan& sp = plan.seqs[si];
    if (!sp.sample) continue;
    if (sp.sampling.top_logprobs > 0 || sp.sampling_context.allowed_tokens != nullptr) {
      cpu_sample[si] = true;
      continue;
    }
    gpu_sample_seqs.push_back(si);
  }
  // Penalty entries of the GPU-sampled rows (a row that overflows the buffer samples on the CPU).
  std::vector<int32_t> pen_begin(S, 0), pen_end(S, 0);
  const int64_t penalty_count =
      BuildPenaltyEntries(plan, &gpu_sample_seqs, &cpu_sample, &pen_begin, &pen_end);
  const bool any_cpu_sample =
      std::any_of(cpu_sample.begin(), cpu_sample.end(), [](bool b) { return b; });

  const bool graph_ok = options_.cuda_graphs && cu::GraphsSupported() && decode && !bidi &&
                        !any_logits_rows && !any_cpu_sample &&
                        static_cast<int32_t>(gpu_sample_seqs.size()) == S &&
                        S <= options_.max_graph_batch;
  int32_t padded = S, width = max_table;
  if (graph_ok) {
    for (int32_t b : kGraphBatches) {
      if (b >= S) {
        padded = b;
        break;
      }
    }
    if (padded < S || padded > options_.max_step_seqs) padded = S;
    width = 16;
    while (width < max_table) width *= 2;
    width = std::min<int32_t>(width, static_cast<int32_t>(max_table_));
    max_kv = width * options_.block_size;
  }
  const int32_t S_run = graph_ok ? padded : S;

  // Host metadata.
  std::vector<int64_t> seq_row0;
  const int32_t row = LayOutRows(plan, S_run, width, &seq_row0);
  shape.rows = row;
  shape.seqs = S_run;
  shape.table_width = width;
  shape.max_rows_per_seq = max_rows;
  shape.decode = decode;
  shape.bidi = bidi;
  for (int32_t g = 0; g < G; ++g) {
    // A sliding-window layer reads at most `window` keys, however long the sequence.
    const int32_t window = spec_.groups[g].window;
    const int32_t keys = window > 0 ? std::min(max_kv, window) : max_kv;
    shape.splits.push_back(
        decode ? cu::ChooseDecodeSplits(S_run, spec_.groups[g].num_kv_heads, keys, num_sms_) : 1);
    // The workspace was sized for splits * rows <= 2 * SMs + seqs.
    const int64_t need = cu::AttentionWorkspaceFloats(S_run, tc.num_heads, spec_.groups[g].head_dim,
                                                      shape.splits[g]);
    if (need > attn_ws_floats_) shape.splits[g] = 1;
  }

  // Sample rows: GPU-sampled sequences' last rows first, in order.
  const int32_t n_sample = graph_ok ? S_run : static_cast<int32_t>(gpu_sample_seqs.size());
  shape.sample_rows = n_sample;
  shape.gathered = !decode || static_cast<int32_t>(gpu_sample_seqs.size()) != S;
  for (int32_t i = 0; i < n_sample; ++i) {
    cu::SampleRowParams& rp = sample_rows_.host[i];
    rp = cu::SampleRowParams();
    if (i >= static_cast<int32_t>(gpu_sample_seqs.size())) {
      rp.temperature = 0.0f;  // Padding.
      continue;
    }
    const int32_t si = gpu_sample_seqs[i];
    const SequencePlan& sp = plan.seqs[si];
    const SamplingParams& p = sp.sampling;
    rp.temperature = p.temperature;
    rp.top_k = p.top_k;
    rp.top_p = p.top_p;
    rp.min_p = p.min_p;
    rp.repetition_penalty = p.repetition_penalty;
    rp.presence_penalty = p.presence_penalty;
    rp.frequency_penalty = p.frequency_penalty;
    rp.penalty_begin = pen_begin[si];
    rp.penalty_end = pen_end[si];
    rp.uniform = UniformForStep(p.seed, sp.sampling_context.step);
    if (shape.gathered) {
      shape.sample_src.push_back(static_cast<int32_t>(seq_row0[si]) +
                                 static_cast<int32_t>(sp.token_ids.size()) - 1);
    }
  }

  // From here on work is queued: any error return first waits for it, so that a failed step's
  // kernels cannot run on the next step's metadata (written into the same pinned buffers).
  struct SyncOnError {
    cu::Stream* stream;
    bool armed = true;
    ~SyncOnError() {
      if (armed) (void)stream->Synchronize();
    }
  } sync_on_error{stream_.get()};
  TESSERA_RETURN_IF_ERROR(UploadMeta(shape.rows, S_run, width, penalty_count));
  if (graph_ok) {
    const auto key = std::make_pair(padded, width);
    GraphState& state = graph_state_[key];
    auto it = graphs_.find(key);
    if (it == graphs_.end() && state == GraphState::kWarm) {
      absl::Status st = cu::Graph::BeginCapture(stream_->get());
      absl::StatusOr<std::unique_ptr<cu::Graph>> graph = absl::UnknownError("not captured");
      if (st.ok()) {
        st = EnqueueForward(shape, nullptr, seq_row0);
        graph = cu::Graph::EndCapture(stream_->get());  // Ends the capture whatever happened.
      }
      if (st.ok() && graph.ok()) {
        it = graphs_.emplace(key, std::move(*graph)).first;
      } else {
        // Run this key eagerly from now on; the capture's error must not fail later launches.
        cu::ClearLastError();
        state = GraphState::kEager;
        TESSERA_LOG(WARNING) << "CUDA graph capture for batch " << padded << ", table width "
                             << width << " failed; those steps run eagerly: "
                             << (st.ok() ? graph.status() : st);
      }
    }
    if (it != graphs_.end()) {
      TESSERA_RETURN_IF_ERROR(it->second->Launch(stream_->get()));
      ++graph_steps_;
    } else {
      TESSERA_RETURN_IF_ERROR(EnqueueForward(shape, nullptr, seq_row0));
      if (state == GraphState::kCold) state = GraphState::kWarm;
    }
  } else {
    int64_t media_rows = 0;
    for (const SequencePlan& sp : plan.seqs) {
      for (const MediaRows& m : sp.media) media_rows = std::max<int64_t>(media_rows, m.count);
    }
    TESSERA_RETURN_IF_ERROR(GrowMedia(media_rows));
    TESSERA_RETURN_IF_ERROR(EnqueueForward(shape, &plan, seq_row0));
  }

  // Logits the host needs: requested rows and CPU-sampled rows, in chunks.
  struct HostRow {
    int32_t seq;
    int32_t src_row;  // Step row.
    int32_t slot;     // Index into the sequence's logits_rows, or -1 for a CPU-sampled row.
  };
  std::vector<HostRow> host_rows;
  std::vector<std::vector<float>> cpu_sample_logits(S);
  for (int32_t si = 0; si < S; ++si) {
    const SequencePlan& sp = plan.seqs[si];
    out->seqs[si].logits.resize(sp.logits_rows.size() * static_cast<size_t>(V));
    for (size_t i = 0; i < sp.logits_rows.size(); ++i) {
      host_rows.push_back(
          {si, static_cast<int32_t>(seq_row0[si]) + sp.logits_rows[i], static_cast<int32_t>(i)});
    }
    if (cpu_sample[si]) {
      host_rows.push_back(
          {si, static_cast<int32_t>(seq_row0[si]) + static_cast<int32_t>(sp.token_ids.size()) - 1,
           -1});
      cpu_sample_logits[si].resize(V);
    }
  }
  // The GPU sample results must be read before the logits buffer is reused.
  TESSERA_RETURN_IF_ERROR(stream_->Synchronize());
  for (size_t i = 0; i < gpu_sample_seqs.size(); ++i) {
    const int32_t si = gpu_sample_seqs[i];
    SampleResult& r = out->seqs[si].sampled;
    r.token = out_host_.as<int32_t>()[i];
    r.logprob = reinterpret_cast<const float*>(out_host_.as<int32_t>() + options_.max_step_seqs)[i];
  }
  const int32_t chunk = static_cast<int32_t>(
      std::min<int64_t>(kLogitsChunkRows, gathered_.size() / (int64_t{tc.hidden_size} * 2)));
  for (size_t c0 = 0; c0 < host_rows.size(); c0 += chunk) {
    const int32_t n = static_cast<int32_t>(std::min<size_t>(chunk, host_rows.size() - c0));
    std::vector<int32_t> src(n);
    for (int32_t i = 0; i < n; ++i) src[i] = host_rows[c0 + i].src_row;
    TESSERA_RETURN_IF_ERROR(EnqueueLogits(src, n));
    for (int32_t i = 0; i < n; ++i) {
      const HostRow& hr = host_rows[c0 + i];
      float* dst = hr.slot >= 0 ? out->seqs[hr.seq].logits.data() + int64_t{hr.slot} * V
                                : cpu_sample_logits[hr.seq].data();
      TESSERA_RETURN_IF_ERROR(cu::CopyToHostAsync(dst, logits_.as<float>() + int64_t{i} * V,
                                                  int64_t{V} * 4, stream_->get()));
    }
    TESSERA_RETURN_IF_ERROR(stream_->Synchronize());
  }
  for (int32_t si = 0; si < S; ++si) {
    if (!cpu_sample[si]) continue;
    const SequencePlan& sp = plan.seqs[si];
    out->seqs[si].sampled =
        Sample(cpu_sample_logits[si].data(), V, sp.sampling, sp.sampling_context);
  }
  sync_on_error.armed = false;  // Every path above ended with a stream sync.
  // The GPU sampler computes the logprob always; report it only when asked, as the CPU does.
  for (int32_t si : gpu_sample_seqs) {
    const SamplingParams& p = plan.seqs[si].sampling;
    if (!p.logprobs && p.top_logprobs == 0) out->seqs[si].sampled.logprob = 0.0f;
  }
  return absl::OkStatus();
}

// ---- CudaModelRunner ----

CudaModelRunner::CudaModelRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaModelRunner::~CudaModelRunner() = default;
const KvCacheSpec& CudaModelRunner::kv_spec() const { return impl_->spec_; }
int32_t CudaModelRunner::vocab_size() const { return impl_->config_.text.vocab_size; }
absl::Status CudaModelRunner::Execute(const BatchPlan& plan, StepOutput* out) {
  return impl_->Execute(plan, out);
}
uint64_t CudaModelRunner::weight_bytes() const { return impl_->weight_bytes_; }
uint64_t CudaModelRunner::kv_bytes() const { return impl_->kv_bytes_; }
uint64_t CudaModelRunner::graph_steps() const { return impl_->graph_steps_; }

absl::StatusOr<std::vector<float>> CudaModelRunner::EmbedMedia(const MediaItem& item,
                                                               int32_t item_row, int32_t count) {
  // Checked as a one-sequence plan of those rows would be.
  BatchPlan plan;
  SequencePlan sp;
  sp.token_ids.assign(count, 0);
  MediaRows m{&item, item_row, 0, count};
  sp.media.push_back(m);
  for (const KvGroupSpec& g : impl_->spec_.groups) {
    sp.block_tables.emplace_back((count + g.block_size - 1) / g.block_size, 0);
  }
  plan.seqs.push_back(sp);
  TESSERA_RETURN_IF_ERROR(cu::SetDevice(impl_->options_.device));
  TESSERA_RETURN_IF_ERROR(impl_->ValidatePlan(plan));
  TESSERA_RETURN_IF_ERROR(impl_->GrowMedia(count));
  TESSERA_RETURN_IF_ERROR(impl_->EnqueueMedia(m, 0));
  const int64_t H = impl_->config_.text.hidden_size;
  std::vector<Bf16> rows(count * H);
  TESSERA_RETURN_IF_ERROR(cu::CopyToHostAsync(rows.data(), impl_->h_.data(),
                                              rows.size() * sizeof(Bf16), impl_->stream_->get()));
  TESSERA_RETURN_IF_ERROR(impl_->stream_->Synchronize());
  std::vector<float> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = cu::Bf16ToFloat(rows[i]);
  return out;
}

std::string CudaModelRunner::Describe() const {
  std::string groups;
  for (const KvGroupSpec& g : impl_->spec_.groups) {
    absl::StrAppend(&groups, groups.empty() ? "" : ", ", g.name, " ", g.num_blocks, " blocks of ",
                    g.block_size);
  }
  return absl::StrFormat("%s: weights %.2f GiB, KV %.2f GiB (%s), CUDA graphs %s",
                         impl_->device_name_, impl_->weight_bytes_ / 1073741824.0,
                         impl_->kv_bytes_ / 1073741824.0, groups,
                         impl_->options_.cuda_graphs && cu::GraphsSupported() ? "on" : "off");
}

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
    std::shared_ptr<const LoadedModel> model, const CudaRunnerOptions& options) {
  if (model == nullptr || model->weights == nullptr) {
    return absl::InvalidArgumentError("CreateCudaModelRunner: no model");
  }
  auto impl = std::make_unique<CudaModelRunner::Impl>();
  TESSERA_RETURN_IF_ERROR(impl->Init(model->config, options));
  impl->model_ = model;
  TESSERA_RETURN_IF_ERROR(impl->UploadWeights(*model));
  TESSERA_RETURN_IF_ERROR(impl->AllocateRuntime());
  return std::unique_ptr<CudaModelRunner>(new CudaModelRunner(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateRandomCudaModelRunner(
    const RandomModelSpec& spec, const CudaRunnerOptions& options) {
  auto impl = std::make_unique<CudaModelRunner::Impl>();
  TESSERA_RETURN_IF_ERROR(impl->Init(spec.config, options));
  TESSERA_RETURN_IF_ERROR(impl->RandomWeights(spec.seed));
  TESSERA_RETURN_IF_ERROR(impl->AllocateRuntime());
  return std::unique_ptr<CudaModelRunner>(new CudaModelRunner(std::move(impl)));
}

bool CudaDeviceAvailable() {
  auto devices = cu::QueryDevices();
  return devices.ok() && !devices->empty();
}

}  // namespace tessera::runtime
