// The CUDA ModelRunner (cuda_model_runner.h). One step (Execute) is a short sequence of named
// parts:
//
//   host: validate the plan; plan the step (step_planner.h: its shape, the GPU/CPU sample split,
//         the rows' metadata written into pinned memory); copy the metadata to the device in one
//         go per array;
//   GPU:  the forward pass (EnqueueForward), through the graph cache for decode steps
//         (graph_cache.h): embed tokens, project media rows into their embedding rows, then per
//         layer QKV GEMM -> QK-norm + RoPE + V-norm + KV write -> paged attention -> O GEMM ->
//         post-attention norm + residual (+ pre-FFW norm) -> gate|up GEMM -> GeGLU -> down GEMM ->
//         post-FFW norm + residual + layer scalar (+ the next layer's input norm, or the final
//         norm after the last layer); then the logits of the GPU-sampled rows, softcap, sampling;
//   host: read back the sampled tokens with one stream sync; then the logits rows the host needs
//         (requested rows, CPU-sampled rows) in chunks, and the CPU samples.
//
// The weights are made before the runtime buffers (cuda_weights.h from a checkpoint;
// random_weights.h for benchmarks), so the KV pools take what is left.
#include "runtime/cuda/cuda_model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/attention_shapes.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/graph_cache.h"
#include "runtime/cuda/media.h"
#include "runtime/cuda/memory_plan.h"
#include "runtime/cuda/norm.h"
#include "runtime/cuda/paged_kv.h"
#include "runtime/cuda/pointwise.h"
#include "runtime/cuda/projection.h"
#include "runtime/cuda/quant.h"
#include "runtime/cuda/rope_kv.h"
#include "runtime/cuda/sampling.h"
#include "runtime/cuda/step_planner.h"
#include "runtime/cuda/stream.h"
#include "runtime/plan_validation.h"
#include "runtime/sampler.h"

namespace tessera::runtime {

namespace cu = ::tessera::runtime::cuda;
using cu::Bf16;
using cu::DeviceBuffer;

namespace {

using cu::kLogitsChunkRows;
using cu::kMaxPenaltyEntries;

// A host-side array that lives at an offset of the step's pinned staging buffer and of the
// matching device buffer.
template <typename T>
struct Mirror {
  T* host = nullptr;
  T* device = nullptr;
  int64_t capacity = 0;
};

// The graph cache's capture through the runner's stream (stream.h).
class StreamGraph : public cu::CapturedGraph {
 public:
  StreamGraph(std::unique_ptr<cu::Graph> graph, cudaStream_t stream)
      : graph_(std::move(graph)), stream_(stream) {}
  absl::Status Launch() override { return graph_->Launch(stream_); }

 private:
  std::unique_ptr<cu::Graph> graph_;
  cudaStream_t stream_;
};

class StreamCapturer : public cu::GraphCapturer {
 public:
  explicit StreamCapturer(cudaStream_t stream) : stream_(stream) {}
  absl::Status Begin() override { return cu::Graph::BeginCapture(stream_); }
  absl::StatusOr<std::unique_ptr<cu::CapturedGraph>> End() override {
    auto graph = cu::Graph::EndCapture(stream_);
    if (!graph.ok()) return graph.status();
    return std::unique_ptr<cu::CapturedGraph>(new StreamGraph(std::move(*graph), stream_));
  }
  void ClearError() override { cu::ClearLastError(); }

 private:
  cudaStream_t stream_;
};

}  // namespace

class CudaModelRunner::Impl {
 public:
  absl::Status Init(const ModelConfig& config, const CudaRunnerOptions& options);
  absl::Status AllocateRuntime();
  absl::Status Execute(const BatchPlan& plan, StepOutput* out);
  absl::Status ValidatePlan(const BatchPlan& plan) const;
  absl::Status GrowMedia(int64_t rows);
  absl::Status EnqueueMedia(const MediaRows& m, int64_t first_row);

  ModelConfig config_;
  CudaRunnerOptions options_;
  std::shared_ptr<const LoadedModel>
      model_;  // Keeps the checkpoint alive (nothing reads it later).
  std::string device_name_;
  int num_sms_ = 132;
  KvCacheSpec spec_;
  std::vector<int32_t> layer_group_, layer_in_group_;
  uint64_t kv_bytes_ = 0;

  std::unique_ptr<cu::DeviceWeights> w_;

  // KV pools, one per group, each with one extra zeroed block (id num_blocks) that padding rows of
  // graph steps read.
  std::vector<DeviceBuffer> pools_;

  // Runtime.
  std::unique_ptr<cu::Stream> stream_;
  std::unique_ptr<cu::GemmRunner> gemm_;
  int64_t max_table_ = 0;
  DeviceBuffer h_, x_, qkv_, attn_, o_, gu_, act_, gathered_, logits_, attn_ws_, sample_ws_;
  DeviceBuffer meta_dev_, penalties_dev_, out_dev_;
  DeviceBuffer dequant_scratch_, q8_1_scratch_;  // Quantized weights only.
  std::unique_ptr<cu::Projector> projector_;
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

  // The step planner writes into the pinned mirrors (arrays_).
  std::unique_ptr<cu::StepPlanner> planner_;
  cu::StepArrays arrays_;
  std::unique_ptr<StreamCapturer> capturer_;
  std::unique_ptr<cu::GraphCache> graphs_;

 private:
  absl::Status UploadMeta(const cu::StepShape& shape);
  // The forward pass of the step, through the graph cache for graph steps.
  absl::Status RunForward(const BatchPlan& plan, const cu::StepShape& shape);
  // Everything of a step after the metadata upload, on the stream; no host synchronisation and no
  // allocation when `plan` is null (a graph step, which may be captured).
  absl::Status EnqueueForward(const cu::StepShape& shape, const BatchPlan* plan);
  absl::Status EnqueueLayer(const cu::StepShape& shape, int32_t l);
  absl::Status EnqueueSampling(const cu::StepShape& shape);
  // The GPU-sampled tokens (and logprobs, when asked) into `out`, after the stream sync.
  void ReadGpuSamples(const BatchPlan& plan, const cu::StepShape& shape, StepOutput* out);
  // The logits rows the host needs (shape.host_rows), in chunks; then the CPU-sampled rows.
  absl::Status FetchHostLogits(const BatchPlan& plan, const cu::StepShape& shape, StepOutput* out);
  // out[m, w.rows] = x[m, w.cols] w^T on the step's stream (projection.h).
  absl::Status Project(const Bf16* x, int64_t ldx, const cu::DeviceMatrix& w, void* out,
                       int64_t ldo, int64_t m, bool out_fp32 = false);
  absl::Status EnqueueLogits(const std::vector<int32_t>& rows, int32_t count);
  cu::PagedKvView View(int32_t layer) const;
};

absl::Status CudaModelSupported(const ModelConfig& config) {
  const TextConfig& tc = config.text;
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (tc.hidden_activation != "gelu_pytorch_tanh" && !tc.hidden_activation.empty()) {
    return bad(absl::StrCat("CUDA runner: hidden_activation ", tc.hidden_activation,
                            " is not supported (gelu_pytorch_tanh)"));
  }
  for (int32_t l = 0; l < tc.num_layers; ++l) {
    const LayerConfig& lc = tc.layers[l];
    if (lc.num_kv_heads < 1 || tc.num_heads % lc.num_kv_heads != 0 ||
        !cu::AttentionShapeSupported(lc.head_dim, tc.num_heads / lc.num_kv_heads)) {
      return bad(absl::StrCat("CUDA runner: layer ", l, " has head_dim ", lc.head_dim, " with ",
                              tc.num_heads, " query and ", lc.num_kv_heads,
                              " KV heads; the CUDA kernels support head_dim/group ",
                              cu::SupportedAttentionShapes()));
    }
    // One pool per group needs every layer of a group to have the group's KV shape.
    const LayerConfig& first = tc.layers[config.first_layer_of(lc.type)];
    if (lc.head_dim != first.head_dim || lc.num_kv_heads != first.num_kv_heads) {
      return bad(absl::StrCat("CUDA runner: the ",
                              lc.type == LayerType::kSliding ? "sliding" : "global",
                              " layers differ in head_dim or KV heads; one pool per group "
                              "needs them equal"));
    }
  }
  return absl::OkStatus();
}

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
  TESSERA_RETURN_IF_ERROR(CudaModelSupported(config));
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
  TESSERA_ASSIGN_OR_RETURN(stream_, cu::Stream::Create());
  TESSERA_ASSIGN_OR_RETURN(gemm_, cu::CreateGemmRunner());

  spec_ = cu::KvGroups(config, options.block_size);
  layer_group_.assign(tc.num_layers, -1);
  layer_in_group_.assign(tc.num_layers, -1);
  for (size_t g = 0; g < spec_.groups.size(); ++g) {
    const LayerType type =
        spec_.groups[g].name == "sliding" ? LayerType::kSliding : LayerType::kGlobal;
    int32_t in_group = 0;
    for (int32_t l = 0; l < tc.num_layers; ++l) {
      if (tc.layers[l].type != type) continue;
      layer_group_[l] = static_cast<int32_t>(g);
      layer_in_group_[l] = in_group++;
    }
  }
  max_table_ = (options.max_seq_len + options.block_size - 1) / options.block_size;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::AllocateRuntime() {
  const TextConfig& tc = config_.text;
  const int64_t T = options_.max_step_tokens, S = options_.max_step_seqs;
  const int64_t R = std::max<int64_t>(S, kLogitsChunkRows);
  const int64_t G = static_cast<int64_t>(spec_.groups.size());
  const int64_t widest_quantized = cu::WidestQuantizedCols(*w_);
  // The sizes memory_plan.h plans (the --dry_run numbers are these).
  const cu::StepBufferBytes b = cu::PlanStepBuffers(
      config_, options_, static_cast<int32_t>(G), num_sms_,
      static_cast<int64_t>(cu::SampleWorkspaceBytes(static_cast<int32_t>(S), tc.vocab_size)),
      widest_quantized);
  max_table_ = b.max_table;
  attn_ws_floats_ = b.attention_workspace_floats;
  auto alloc = [&](DeviceBuffer* buf, int64_t bytes) -> absl::Status {
    auto a = DeviceBuffer::Allocate(bytes);
    if (!a.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "CUDA runner: step buffers of ", bytes, " bytes do not fit beside the weights (",
          w_->bytes,
          " bytes); lower --max_num_batched_tokens or --max_num_seqs: ", a.status().message()));
    }
    *buf = std::move(*a);
    return absl::OkStatus();
  };
  for (auto [buf, bytes] :
       std::vector<std::pair<DeviceBuffer*, int64_t>>{{&h_, b.h},
                                                      {&x_, b.x},
                                                      {&qkv_, b.qkv},
                                                      {&attn_, b.attn},
                                                      {&o_, b.o},
                                                      {&gu_, b.gu},
                                                      {&act_, b.act},
                                                      {&gathered_, b.gathered},
                                                      {&logits_, b.logits},
                                                      {&attn_ws_, b.attention_workspace},
                                                      {&sample_ws_, b.sampler_workspace},
                                                      {&meta_dev_, b.meta.bytes},
                                                      {&penalties_dev_, b.penalties},
                                                      {&out_dev_, b.out}}) {
    TESSERA_RETURN_IF_ERROR(alloc(buf, bytes));
  }
  if (widest_quantized > 0) {
    TESSERA_RETURN_IF_ERROR(alloc(&dequant_scratch_, b.dequant_scratch));
    TESSERA_RETURN_IF_ERROR(alloc(&q8_1_scratch_, b.q8_1_scratch));
  }
  projector_ = std::make_unique<cu::Projector>(
      gemm_.get(), dequant_scratch_.as<Bf16>(), static_cast<int64_t>(dequant_scratch_.size()),
      q8_1_scratch_.as<cu::Q8_1Block>(), cu::kMaxQuantGemvRows, widest_quantized);

  // Step metadata: the device buffer and its pinned mirror, carved into arrays.
  TESSERA_ASSIGN_OR_RETURN(meta_host_, cu::PinnedBuffer::Allocate(b.meta.bytes));
  auto mirror = [&](auto* m, int64_t offset, int64_t capacity) {
    using T0 = std::remove_pointer_t<decltype(m->host)>;
    m->host = reinterpret_cast<T0*>(meta_host_.as<char>() + offset);
    m->device = reinterpret_cast<T0*>(meta_dev_.as<char>() + offset);
    m->capacity = capacity;
  };
  mirror(&ids_, b.meta.ids, T);
  mirror(&positions_, b.meta.positions, T);
  mirror(&row_start_, b.meta.row_start, S + 1);
  mirror(&start_pos_, b.meta.start_pos, S);
  mirror(&bidi_begin_, b.meta.bidi_begin, T);
  mirror(&bidi_end_, b.meta.bidi_end, T);
  mirror(&sample_rows_, b.meta.sample_rows, S);
  mirror(&gather_, b.meta.gather, R);
  slots_.resize(G);
  tables_.resize(G);
  for (int64_t g = 0; g < G; ++g) {
    mirror(&slots_[g], b.meta.slots[g], T);
    mirror(&tables_[g], b.meta.tables[g], S * max_table_);
  }
  TESSERA_ASSIGN_OR_RETURN(penalties_host_, cu::PinnedBuffer::Allocate(b.penalties));
  out_tokens_dev_ = out_dev_.as<int32_t>();
  out_logprobs_dev_ = reinterpret_cast<float*>(out_dev_.as<int32_t>() + S);
  TESSERA_ASSIGN_OR_RETURN(out_host_, cu::PinnedBuffer::Allocate(b.out));

  // KV pools last: the fraction applies to what is free now.
  int64_t budget = options_.kv_memory_bytes;
  if (budget == 0 && (options_.num_blocks_sliding == 0 || options_.num_blocks_global == 0)) {
    size_t free_b = 0, total_b = 0;
    TESSERA_RETURN_IF_ERROR(cu::MemoryInfo(&free_b, &total_b));
    budget = static_cast<int64_t>(static_cast<double>(free_b) * options_.gpu_memory_fraction);
  }
  TESSERA_ASSIGN_OR_RETURN(spec_, cu::SplitKvBudget(spec_, budget, options_));
  for (const KvGroupSpec& gs : spec_.groups) {
    DeviceBuffer pool;
    TESSERA_RETURN_IF_ERROR(alloc(&pool, (int64_t{gs.num_blocks} + 1) * gs.bytes_per_block));
    // Only the spare block (id num_blocks) must be zero (padding rows of graph steps read it);
    // the rest is written before it is read.
    TESSERA_RETURN_IF_ERROR(cu::MemsetAsync(pool.as<char>() + gs.num_blocks * gs.bytes_per_block, 0,
                                            gs.bytes_per_block, stream_->get()));
    kv_bytes_ += (int64_t{gs.num_blocks} + 1) * gs.bytes_per_block;
    pools_.push_back(std::move(pool));
  }

  // The planner writes the step's metadata into the pinned mirrors.
  cu::StepPlannerConfig pc;
  pc.spec = spec_;
  pc.vocab_size = tc.vocab_size;
  pc.num_q_heads = tc.num_heads;
  pc.max_table_width = static_cast<int32_t>(max_table_);
  pc.max_step_seqs = options_.max_step_seqs;
  pc.graphs = options_.cuda_graphs && cu::GraphsSupported();
  pc.max_graph_batch = options_.max_graph_batch;
  pc.num_sms = num_sms_;
  pc.attention_workspace_floats = attn_ws_floats_;
  planner_ = std::make_unique<cu::StepPlanner>(std::move(pc));
  arrays_.ids = ids_.host;
  arrays_.positions = positions_.host;
  arrays_.row_start = row_start_.host;
  arrays_.start_pos = start_pos_.host;
  arrays_.bidi_begin = bidi_begin_.host;
  arrays_.bidi_end = bidi_end_.host;
  for (int64_t g = 0; g < G; ++g) {
    arrays_.slots.push_back(slots_[g].host);
    arrays_.tables.push_back(tables_[g].host);
  }
  arrays_.sample_rows = sample_rows_.host;
  arrays_.penalties = penalties_host_.as<cu::PenaltyEntry>();
  arrays_.penalty_capacity = kMaxPenaltyEntries;
  capturer_ = std::make_unique<StreamCapturer>(stream_->get());
  graphs_ = std::make_unique<cu::GraphCache>(capturer_.get());
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
  return ValidateBatchPlan(plan, spec_, config_, {w_->has_vision, w_->has_audio});
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
    return Project(media_a_.as<Bf16>(), F, w_->a_proj, out, H, m.count);
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
  a.weight = w_->v_ln1_w.as<float>();
  a.bias = w_->v_ln1_b.as<float>();
  a.out = media_a_.as<Bf16>();
  a.out_row_stride = P;
  a.rows = m.count;
  a.dim = static_cast<int32_t>(P);
  a.eps = config_.vision.layer_norm_eps;
  TESSERA_RETURN_IF_ERROR(cu::LaunchPatchInputNorm(a, s));
  TESSERA_RETURN_IF_ERROR(
      Project(media_a_.as<Bf16>(), P, w_->v_dense, media_d_.data(), D, m.count));
  cu::PatchOutputNormParams b;
  b.dense = media_d_.as<Bf16>();
  b.dense_row_stride = D;
  b.dense_bias = w_->v_dense_b.as<float>();
  b.ln2_weight = w_->v_ln2_w.as<float>();
  b.ln2_bias = w_->v_ln2_b.as<float>();
  b.pos_table = w_->v_pos.as<float>();
  b.pos_size = config_.vision.mm_posemb_size;
  b.positions = positions;
  b.pos_norm_weight = w_->v_posn_w.as<float>();
  b.pos_norm_bias = w_->v_posn_b.as<float>();
  b.out = media_e_.as<Bf16>();
  b.out_row_stride = D;
  b.rows = m.count;
  b.dim = static_cast<int32_t>(D);
  b.layer_norm_eps = config_.vision.layer_norm_eps;
  b.rms_eps = config_.vision.rms_norm_eps;
  TESSERA_RETURN_IF_ERROR(cu::LaunchPatchOutputNorm(b, s));
  return Project(media_e_.as<Bf16>(), D, w_->v_proj, out, H, m.count);
}

absl::Status CudaModelRunner::Impl::Project(const Bf16* x, int64_t ldx, const cu::DeviceMatrix& w,
                                            void* out, int64_t ldo, int64_t m, bool out_fp32) {
  return projector_->Run(x, ldx, w, out, ldo, m, out_fp32, stream_->get());
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
  TESSERA_RETURN_IF_ERROR(Project(in, H, w_->embed, logits_.data(), V, count, /*out_fp32=*/true));
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

absl::Status CudaModelRunner::Impl::UploadMeta(const cu::StepShape& shape) {
  cudaStream_t s = stream_->get();
  auto up = [&](auto& m, int64_t n) {
    return cu::CopyToDeviceAsync(m.device, m.host, n * sizeof(*m.host), s);
  };
  const int64_t rows = shape.rows, seqs = shape.seqs;
  TESSERA_RETURN_IF_ERROR(up(ids_, rows));
  TESSERA_RETURN_IF_ERROR(up(positions_, rows));
  TESSERA_RETURN_IF_ERROR(up(row_start_, seqs + 1));
  TESSERA_RETURN_IF_ERROR(up(start_pos_, seqs));
  TESSERA_RETURN_IF_ERROR(up(bidi_begin_, rows));
  TESSERA_RETURN_IF_ERROR(up(bidi_end_, rows));
  TESSERA_RETURN_IF_ERROR(up(sample_rows_, seqs));
  for (size_t g = 0; g < slots_.size(); ++g) {
    TESSERA_RETURN_IF_ERROR(up(slots_[g], rows));
    TESSERA_RETURN_IF_ERROR(up(tables_[g], seqs * shape.table_width));
  }
  if (shape.penalty_entries > 0) {
    TESSERA_RETURN_IF_ERROR(cu::CopyToDeviceAsync(penalties_dev_.data(), penalties_host_.data(),
                                                  shape.penalty_entries * sizeof(cu::PenaltyEntry),
                                                  s));
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::RunForward(const BatchPlan& plan, const cu::StepShape& shape) {
  if (shape.graph) {
    return graphs_->Run({shape.seqs, shape.table_width},
                        [&]() { return EnqueueForward(shape, nullptr); });
  }
  // Before any of the step's work is queued (GrowMedia may free buffers).
  TESSERA_RETURN_IF_ERROR(GrowMedia(shape.max_media_rows));
  return EnqueueForward(shape, &plan);
}

absl::Status CudaModelRunner::Impl::EnqueueForward(const cu::StepShape& shape,
                                                   const BatchPlan* plan) {
  const TextConfig& tc = config_.text;
  const int64_t T = shape.rows, H = tc.hidden_size;
  cudaStream_t s = stream_->get();

  if (w_->embed.is_bf16()) {
    cu::EmbedParams e;
    e.ids = ids_.device;
    e.table = w_->embed.bf16();
    e.vocab = tc.vocab_size;
    e.hidden = static_cast<int32_t>(H);
    e.out = h_.as<Bf16>();
    e.out_row_stride = H;
    e.rows = static_cast<int32_t>(T);
    e.scale = w_->embed_scale;
    TESSERA_RETURN_IF_ERROR(cu::LaunchEmbedTokens(e, s));
  } else {
    // A quantized embedding: its rows dequantized and scaled, rounded once to bf16.
    cu::DequantizeParams e;
    e.format = w_->embed.parts[0].format;
    e.w = w_->embed.parts[0].data;
    e.w_rows = tc.vocab_size;
    e.cols = H;
    e.ids = ids_.device;
    e.rows = static_cast<int32_t>(T);
    e.scale = w_->embed_scale;
    e.out = h_.as<Bf16>();
    e.out_row_stride = H;
    TESSERA_RETURN_IF_ERROR(cu::LaunchDequantizeRows(e, s));
  }
  if (plan != nullptr) {
    for (size_t si = 0; si < plan->seqs.size(); ++si) {
      for (const MediaRows& m : plan->seqs[si].media) {
        TESSERA_RETURN_IF_ERROR(EnqueueMedia(m, shape.seq_row0[si] + m.seq_row));
      }
    }
  }

  cu::RmsNormParams in;
  in.in = h_.as<Bf16>();
  in.in_row_stride = H;
  in.weight = w_->layers[0].norm(0, H);
  in.out = x_.as<Bf16>();
  in.out_row_stride = H;
  in.rows = static_cast<int32_t>(T);
  in.dim = static_cast<int32_t>(H);
  in.eps = tc.rms_norm_eps;
  TESSERA_RETURN_IF_ERROR(cu::LaunchRmsNorm(in, s));

  for (int32_t l = 0; l < tc.num_layers; ++l) TESSERA_RETURN_IF_ERROR(EnqueueLayer(shape, l));
  return EnqueueSampling(shape);
}

// One decoder layer: x_ holds its normed input, h_ the residual stream; on return x_ holds the
// next layer's normed input (or the final norm's output).
absl::Status CudaModelRunner::Impl::EnqueueLayer(const cu::StepShape& shape, int32_t l) {
  const TextConfig& tc = config_.text;
  const int64_t T = shape.rows, H = tc.hidden_size, I = tc.intermediate_size;
  const float eps = tc.rms_norm_eps;
  cudaStream_t s = stream_->get();
  const LayerConfig& lc = tc.layers[l];
  const cu::DeviceLayer& d = w_->layers[l];
  const int32_t group = layer_group_[l];
  const int64_t hd = lc.head_dim;
  TESSERA_RETURN_IF_ERROR(Project(x_.as<Bf16>(), H, d.qkv, qkv_.data(), d.qkv_width, T));

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

  TESSERA_RETURN_IF_ERROR(Project(attn_.as<Bf16>(), d.qd, d.o, o_.data(), H, T));

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

  TESSERA_RETURN_IF_ERROR(Project(x_.as<Bf16>(), H, d.gate_up, gu_.data(), 2 * I, T));

  cu::GegluParams gg;
  gg.in = gu_.as<Bf16>();
  gg.in_row_stride = 2 * I;
  gg.up_offset = I;
  gg.out = act_.as<Bf16>();
  gg.out_row_stride = I;
  gg.rows = static_cast<int32_t>(T);
  gg.dim = static_cast<int32_t>(I);
  TESSERA_RETURN_IF_ERROR(cu::LaunchGeglu(gg, s));

  TESSERA_RETURN_IF_ERROR(Project(act_.as<Bf16>(), I, d.down, o_.data(), H, T));

  cu::ResidualRmsNormParams ffw;
  ffw.y = o_.as<Bf16>();
  ffw.y_row_stride = H;
  ffw.y_weight = d.norm(3, H);
  ffw.residual = h_.as<Bf16>();
  ffw.residual_row_stride = H;
  ffw.layer_scalar = d.norm(0, H) + 4 * H + 2 * hd;
  // The next layer's input norm, or the final norm after the last layer.
  ffw.out_weight = l + 1 < tc.num_layers ? w_->layers[l + 1].norm(0, H) : w_->final_norm.as<Bf16>();
  ffw.out = x_.as<Bf16>();
  ffw.out_row_stride = H;
  ffw.rows = static_cast<int32_t>(T);
  ffw.dim = static_cast<int32_t>(H);
  ffw.eps = eps;
  return cu::LaunchResidualRmsNorm(ffw, s);
}

// The logits of the GPU-sampled rows, the sampler, and the copy of its results to pinned memory.
absl::Status CudaModelRunner::Impl::EnqueueSampling(const cu::StepShape& shape) {
  if (shape.sample_rows == 0) return absl::OkStatus();
  const TextConfig& tc = config_.text;
  cudaStream_t s = stream_->get();
  TESSERA_RETURN_IF_ERROR(
      EnqueueLogits(shape.gathered ? shape.sample_src : std::vector<int32_t>(), shape.sample_rows));
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
  return cu::CopyToHostAsync(out_host_.as<int32_t>() + options_.max_step_seqs, out_logprobs_dev_,
                             int64_t{shape.sample_rows} * 4, s);
}

void CudaModelRunner::Impl::ReadGpuSamples(const BatchPlan& plan, const cu::StepShape& shape,
                                           StepOutput* out) {
  const int32_t* tokens = out_host_.as<int32_t>();
  const float* logprobs = reinterpret_cast<const float*>(tokens + options_.max_step_seqs);
  for (size_t i = 0; i < shape.gpu_sample_seqs.size(); ++i) {
    const int32_t si = shape.gpu_sample_seqs[i];
    const SamplingParams& p = plan.seqs[si].sampling;
    SampleResult& r = out->seqs[si].sampled;
    r.token = tokens[i];
    // The GPU sampler computes the logprob always; report it only when asked, as the CPU does.
    r.logprob = p.logprobs || p.top_logprobs > 0 ? logprobs[i] : 0.0f;
  }
}

absl::Status CudaModelRunner::Impl::FetchHostLogits(const BatchPlan& plan,
                                                    const cu::StepShape& shape, StepOutput* out) {
  const int32_t V = config_.text.vocab_size;
  const int32_t S = shape.plan_seqs;
  std::vector<std::vector<float>> cpu_sample_logits(S);
  for (int32_t si = 0; si < S; ++si) {
    out->seqs[si].logits.resize(plan.seqs[si].logits_rows.size() * static_cast<size_t>(V));
    if (shape.cpu_sample[si]) cpu_sample_logits[si].resize(V);
  }
  const std::vector<cu::HostLogitsRow>& rows = shape.host_rows;
  const int32_t chunk = static_cast<int32_t>(std::min<int64_t>(
      kLogitsChunkRows, gathered_.size() / (int64_t{config_.text.hidden_size} * 2)));
  std::vector<int32_t> src;
  for (size_t c0 = 0; c0 < rows.size(); c0 += chunk) {
    const int32_t n = static_cast<int32_t>(std::min<size_t>(chunk, rows.size() - c0));
    src.resize(n);
    for (int32_t i = 0; i < n; ++i) src[i] = rows[c0 + i].step_row;
    TESSERA_RETURN_IF_ERROR(EnqueueLogits(src, n));
    for (int32_t i = 0; i < n; ++i) {
      const cu::HostLogitsRow& hr = rows[c0 + i];
      float* dst = hr.slot >= 0 ? out->seqs[hr.seq].logits.data() + int64_t{hr.slot} * V
                                : cpu_sample_logits[hr.seq].data();
      TESSERA_RETURN_IF_ERROR(cu::CopyToHostAsync(dst, logits_.as<float>() + int64_t{i} * V,
                                                  int64_t{V} * 4, stream_->get()));
    }
    TESSERA_RETURN_IF_ERROR(stream_->Synchronize());
  }
  for (int32_t si = 0; si < S; ++si) {
    if (!shape.cpu_sample[si]) continue;
    const SequencePlan& sp = plan.seqs[si];
    out->seqs[si].sampled =
        Sample(cpu_sample_logits[si].data(), V, sp.sampling, sp.sampling_context);
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::Execute(const BatchPlan& plan, StepOutput* out) {
  if (out == nullptr) return absl::InvalidArgumentError("Execute: null output");
  TESSERA_RETURN_IF_ERROR(ValidatePlan(plan));
  // The engine calls from its own thread, whose current device is not necessarily ours.
  TESSERA_RETURN_IF_ERROR(cu::SetDevice(options_.device));
  out->seqs.clear();
  out->seqs.resize(plan.seqs.size());
  if (plan.seqs.empty()) return absl::OkStatus();

  const cu::StepShape& shape = planner_->Plan(plan, arrays_);

  // From here on work is queued: any error return first waits for it, so that a failed step's
  // kernels cannot run on the next step's metadata (written into the same pinned buffers).
  struct SyncOnError {
    cu::Stream* stream;
    bool armed = true;
    ~SyncOnError() {
      if (armed) (void)stream->Synchronize();
    }
  } sync_on_error{stream_.get()};
  TESSERA_RETURN_IF_ERROR(UploadMeta(shape));
  TESSERA_RETURN_IF_ERROR(RunForward(plan, shape));
  // The GPU sample results must be read before the logits buffer is reused.
  TESSERA_RETURN_IF_ERROR(stream_->Synchronize());
  ReadGpuSamples(plan, shape, out);
  TESSERA_RETURN_IF_ERROR(FetchHostLogits(plan, shape, out));
  sync_on_error.armed = false;  // Every path above ended with a stream sync.
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
uint64_t CudaModelRunner::weight_bytes() const { return impl_->w_->bytes; }
uint64_t CudaModelRunner::kv_bytes() const { return impl_->kv_bytes_; }
uint64_t CudaModelRunner::graph_steps() const { return impl_->graphs_->graph_steps(); }

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
                         impl_->device_name_, impl_->w_->bytes / 1073741824.0,
                         impl_->kv_bytes_ / 1073741824.0, groups,
                         impl_->options_.cuda_graphs && cu::GraphsSupported() ? "on" : "off");
}

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
    const ModelConfig& config, const DeviceWeightsSource& weights,
    const CudaRunnerOptions& options) {
  auto impl = std::make_unique<CudaModelRunner::Impl>();
  TESSERA_RETURN_IF_ERROR(impl->Init(config, options));
  TESSERA_ASSIGN_OR_RETURN(impl->w_, weights(impl->device_name_));
  TESSERA_RETURN_IF_ERROR(impl->AllocateRuntime());
  return std::unique_ptr<CudaModelRunner>(new CudaModelRunner(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateCudaModelRunner(
    std::shared_ptr<const LoadedModel> model, const CudaRunnerOptions& options) {
  if (model == nullptr || model->weights == nullptr) {
    return absl::InvalidArgumentError("CreateCudaModelRunner: no model");
  }
  TESSERA_ASSIGN_OR_RETURN(auto runner, CreateCudaModelRunner(
                                            model->config,
                                            [&model](const std::string& device_name) {
                                              return cu::UploadCheckpointWeights(
                                                  model->config, *model->weights, device_name);
                                            },
                                            options));
  runner->impl_->model_ = std::move(model);
  return runner;
}

absl::StatusOr<cu::MemoryPlan> PlanCudaMemory(const LoadedModel& model,
                                              const CudaRunnerOptions& options,
                                              int64_t gpu_memory_bytes) {
  if (model.weights == nullptr) return absl::InvalidArgumentError("PlanCudaMemory: no weights");
  TESSERA_RETURN_IF_ERROR(CudaModelSupported(model.config));
  // A larger SM count only grows the decode-split workspace (a few MiB): assume an H100's 132
  // when no GPU says otherwise.
  int32_t num_sms = 132;
  if (gpu_memory_bytes == 0) {
    TESSERA_ASSIGN_OR_RETURN(auto devices, cu::QueryDevices());
    if (options.device < 0 || options.device >= static_cast<int>(devices.size())) {
      return absl::InvalidArgumentError(absl::StrCat("PlanCudaMemory: device ", options.device,
                                                     " does not exist; ", devices.size(),
                                                     " visible"));
    }
    gpu_memory_bytes = static_cast<int64_t>(devices[options.device].total_memory);
    num_sms = devices[options.device].multiprocessors;
  }
  const cu::ModelFormats formats = cu::FormatsOf(model.config, *model.weights);
  return cu::PlanMemory(model.config, cu::DeviceWeightBytes(model.config, formats),
                        gpu_memory_bytes, options, num_sms,
                        static_cast<int64_t>(cu::SampleWorkspaceBytes(
                            options.max_step_seqs, model.config.text.vocab_size)),
                        cu::WidestQuantizedCols(model.config, formats));
}

bool CudaDeviceAvailable() {
  auto devices = cu::QueryDevices();
  return devices.ok() && !devices->empty();
}

}  // namespace tessera::runtime
