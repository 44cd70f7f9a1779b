#include "server/engine_backend.h"

#include <soxr.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/cuda/cuda_model_runner.h"
#include "runtime/media/image.h"
#include "runtime/media/media_hash.h"
#include "runtime/model/model_loader.h"
#include "runtime/prompt/prompt_builder.h"
#include "runtime/prompt/tokenizer.h"
#include "scheduler/engine.h"
#include "server/prompt_adapter.h"

namespace tessera::server {
namespace {

// "auto" -> "cuda" when a GPU is visible, else "cpu"; "cpu", "cuda" and "cuda:N" pass through.
absl::StatusOr<std::string> ResolveDevice(const std::string& device) {
  if (device == "auto") return runtime::CudaDeviceAvailable() ? "cuda" : "cpu";
  if (device == "cpu" || device == "cuda") return device;
  if (absl::StartsWith(device, "cuda:")) {
    const std::string n = device.substr(5);
    if (!n.empty() && n.size() < 4 && std::all_of(n.begin(), n.end(), ::isdigit)) return device;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--device must be auto, cpu, cuda or cuda:N (a GPU ordinal); got '", device, "'"));
}

// FNV-1a over config.json, the size of the weights and the first 1 MiB of them (the safetensors
// header and the first tensors): a cheap stable revision id for the prefix-cache key.
std::string Revision(const std::string& dir) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(data[i])) * 1099511628211ull;
  };
  for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
    std::ifstream f(dir + "/" + name, std::ios::binary | std::ios::ate);
    if (!f) continue;
    const int64_t size = f.tellg();
    mix(reinterpret_cast<const char*>(&size), sizeof(size));
    f.seekg(0);
    std::string buf(static_cast<size_t>(std::min<int64_t>(size, 1 << 20)), '\0');
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    mix(buf.data(), buf.size());
  }
  return absl::StrFormat("%016x", h);
}

class EngineStream : public ReplyStream {
 public:
  EngineStream(scheduler::Engine* engine, std::shared_ptr<scheduler::RequestHandle> handle)
      : engine_(engine), handle_(std::move(handle)) {}
  ~EngineStream() override { handle_->SetNotify(nullptr); }
  const std::string& request_id() const override { return handle_->request_id(); }
  bool Next(ReplyEvent* event, absl::Duration timeout) override {
    return handle_->Next(event, timeout);
  }
  bool Drain(std::vector<ReplyEvent>* out) override { return handle_->Drain(out); }
  void SetNotify(std::function<void()> notify) override { handle_->SetNotify(std::move(notify)); }
  void Cancel() override { engine_->Abort(handle_->request_id()).IgnoreError(); }

 private:
  scheduler::Engine* const engine_;
  std::shared_ptr<scheduler::RequestHandle> handle_;
};

// Engine timings -> histograms and counters. Runs on the engine thread: Observe() only.
class MetricsObserver : public scheduler::EngineObserver {
 public:
  explicit MetricsObserver(ServingMetrics* metrics) : metrics_(metrics) {}
  void OnRequestFinished(const scheduler::RequestTimings& t) override {
    if (metrics_ == nullptr) return;
    RequestRecord r;
    switch (t.reason) {
      case scheduler::FinishReason::kStop:
        r.finished_reason = "stop";
        break;
      case scheduler::FinishReason::kLength:
        r.finished_reason = "length";
        break;
      case scheduler::FinishReason::kAbort:
        r.finished_reason = "abort";
        break;
      case scheduler::FinishReason::kError:
        r.finished_reason = "error";
        break;
    }
    r.prompt_tokens = t.prompt_tokens;
    r.generation_tokens = t.completion_tokens;
    r.queue_time = t.queue_time;
    r.time_to_first_token = t.time_to_first_token;
    r.total_time = t.e2e_time;
    metrics_->RecordFinished(r);
    for (absl::Duration d : t.inter_token_latencies) metrics_->RecordInterToken(d, 1);
  }

 private:
  ServingMetrics* const metrics_;
};

absl::Status CheckRange(const char* name, bool has, float v, float lo, float hi, bool lo_open) {
  if (!has) return absl::OkStatus();
  if (!(v <= hi && v >= lo) || (lo_open && v == lo)) {
    return absl::InvalidArgumentError(absl::StrFormat("sampling.%s is %g; it must be in %c%g, %g]",
                                                      name, v, lo_open ? '(' : '[', lo, hi));
  }
  return absl::OkStatus();
}

class EngineBackend : public Backend {
 public:
  EngineBackend(const EngineBackendOptions& options, ServingMetrics* metrics)
      : options_(options), metrics_(metrics), observer_(metrics) {}

  ~EngineBackend() override {
    engine_.reset();  // Stops the loop before the runner and tokenizer go.
  }

  absl::Status Init() {
    auto model = runtime::LoadModel(options_.model_dir);
    if (!model.ok()) return model.status();
    model_ = *model;
    const runtime::ModelConfig& config = model_->config;
    auto tokenizer = runtime::Tokenizer::FromFile(options_.model_dir + "/tokenizer.json");
    if (!tokenizer.ok()) return tokenizer.status();
    tokenizer_ = *std::move(tokenizer);

    const int32_t context = config.text.max_position_embeddings;
    auto device = ResolveDevice(options_.device);
    if (!device.ok()) return device.status();
    device_ = *device;
    if (device_ != "cpu") {
      runtime::CudaRunnerOptions co;
      co.device = device_ == "cuda" ? 0 : std::stoi(device_.substr(5));
      co.kv_memory_bytes = options_.kv_memory_bytes;
      co.gpu_memory_fraction = options_.gpu_memory_fraction;
      co.max_step_seqs = options_.max_num_seqs;
      co.max_step_tokens = std::max(options_.max_num_batched_tokens, options_.max_num_seqs);
      co.max_seq_len = context;
      co.cuda_graphs = options_.cuda_graphs;
      co.max_graph_batch = std::min(128, options_.max_num_seqs);
      auto runner = runtime::CreateCudaModelRunner(model_, co);
      if (runner.ok()) {
        TESSERA_LOG(INFO) << "CUDA runner: " << (*runner)->Describe();
        runner_ = *std::move(runner);
      } else if (options_.device == "auto" &&
                 !runtime::CudaModelSupported(config).ok()) {
        // A model the CUDA kernels do not cover (e.g. an attention shape outside their closed
        // list): --device=auto serves it on the CPU, saying why.
        TESSERA_LOG(WARNING) << "--device=auto: serving on the CPU because the CUDA runner cannot "
                                "take this model: "
                             << runner.status().message();
        device_ = "cpu";
      } else {
        return absl::Status(runner.status().code(),
                            absl::StrCat("--device=", device_, ": ", runner.status().message()));
      }
    }
    if (device_ == "cpu") {
      runtime::CpuRunnerOptions runner_options;
      runner_options.kv_memory_bytes =
          options_.kv_memory_bytes > 0 ? options_.kv_memory_bytes : int64_t{1} << 30;
      runner_options.num_threads = options_.num_threads;
      auto runner = runtime::CreateCpuModelRunner(model_, runner_options);
      if (!runner.ok()) return runner.status();
      runner_ = *std::move(runner);
    }

    max_prompt_tokens_ = options_.limits.max_prompt_tokens > 0
                             ? std::min(options_.limits.max_prompt_tokens, context - 1)
                             : context - 1;
    const std::string revision = Revision(options_.model_dir);
    scheduler::EngineOptions eo;
    eo.max_num_seqs = options_.max_num_seqs;
    eo.max_num_batched_tokens = options_.max_num_batched_tokens;
    eo.max_queue_length = options_.limits.max_queue_length;
    eo.max_context_length = context;
    eo.eos_token_ids = config.text.eos_token_ids;
    eo.enable_prefix_caching = options_.enable_prefix_caching;
    eo.model_identity = revision;
    eo.max_sessions = options_.limits.max_sessions;
    eo.session_ttl = options_.session_ttl;
    eo.max_session_tokens = options_.max_session_tokens;
    auto engine =
        scheduler::Engine::Create(eo, runner_.get(), tokenizer_.get(), nullptr, &observer_);
    if (!engine.ok()) return engine.status();
    engine_ = *std::move(engine);

    auto prompts = PromptAdapter::Create(model_->config, tokenizer_.get(), options_.model_dir,
                                         options_.limits, max_prompt_tokens_);
    if (!prompts.ok()) return prompts.status();
    prompts_ = *std::move(prompts);

    info_.set_id(ServedModelName(options_));
    info_.set_architecture(config.architecture);
    info_.set_context_length(static_cast<uint32_t>(context));
    info_.set_vocab_size(static_cast<uint32_t>(config.text.vocab_size));
    info_.set_num_layers(static_cast<uint32_t>(config.text.num_layers));
    info_.set_hidden_size(static_cast<uint32_t>(config.text.hidden_size));
    info_.add_modalities("text");
    if (config.vision.present) {
      info_.add_modalities("image");
      info_.add_modalities("video");
    }
    if (config.audio_token_id >= 0) info_.add_modalities("audio");
    info_.set_device(device_);
    info_.set_revision(revision);
    const auto& spec = runner_->kv_spec();
    if (!spec.groups.empty())
      info_.set_kv_block_size(static_cast<uint32_t>(spec.groups[0].block_size));
    v1::Limits* l = info_.mutable_limits();
    const RequestLimits& rl = options_.limits;
    l->set_max_prompt_tokens(static_cast<uint32_t>(max_prompt_tokens_));
    l->set_max_tokens(static_cast<uint32_t>(rl.max_tokens));
    l->set_max_images_per_request(static_cast<uint32_t>(rl.max_images_per_request));
    l->set_max_image_pixels(static_cast<uint64_t>(rl.max_image_pixels));
    l->set_max_image_tokens(static_cast<uint32_t>(rl.max_image_tokens));
    l->set_default_image_tokens(static_cast<uint32_t>(rl.default_image_tokens));
    l->set_max_audio_seconds(rl.max_audio_seconds);
    l->set_max_video_frames(static_cast<uint32_t>(rl.max_video_frames));
    l->set_max_queue_length(static_cast<uint32_t>(rl.max_queue_length));
    l->set_max_sessions(static_cast<uint32_t>(rl.max_sessions));
    l->set_max_request_bytes(static_cast<uint64_t>(rl.max_request_bytes));
    return absl::OkStatus();
  }

  const v1::ModelInfo& model_info() const override { return info_; }

  absl::StatusOr<std::unique_ptr<ReplyStream>> Generate(const v1::GenerateRequest& request,
                                                        absl::Time deadline) override {
    scheduler::GenerateRequest r;
    if (request.request_id().size() > 128) {
      return absl::InvalidArgumentError("request_id is longer than 128 bytes");
    }
    r.request_id =
        request.request_id().empty()
            ? absl::StrFormat("req-%x-%d", absl::ToUnixMicros(absl::Now()), next_id_.fetch_add(1))
            : request.request_id();
    if (auto s = Sampling(request.sampling(), request.logprobs(), &r.sampling); !s.ok()) return s;
    if (auto s = Stopping(request.stopping(), &r.stopping); !s.ok()) return s;
    auto prompt = prompts_->Build(request);
    if (!prompt.ok()) return prompt.status();
    CountMedia(prompt->prompt);
    r.prompt = std::move(prompt->prompt);
    r.priority = request.priority();
    r.cache_salt = request.cache_salt();
    r.deadline = deadline;
    auto handle = engine_->Submit(std::move(r));
    if (!handle.ok()) return handle.status();
    return std::unique_ptr<ReplyStream>(new EngineStream(engine_.get(), *std::move(handle)));
  }

  bool Abort(const std::string& request_id) override { return engine_->Abort(request_id).ok(); }

  absl::StatusOr<v1::CountTokensResponse> CountTokens(const v1::CountTokensRequest& r) override {
    v1::GenerateRequest g;
    *g.mutable_messages() = r.messages();
    g.set_prompt(r.prompt());
    g.set_enable_thinking(r.enable_thinking());
    auto prompt = prompts_->Build(g);
    if (!prompt.ok()) return prompt.status();
    v1::CountTokensResponse out;
    int32_t image = 0, audio = 0;
    for (const auto& run : prompt->prompt.media) {
      (run.item->kind == runtime::MediaKind::kAudio ? audio : image) += run.item->num_rows;
    }
    out.set_total_tokens(static_cast<uint32_t>(prompt->prompt.size()));
    out.set_image_tokens(static_cast<uint32_t>(image));
    out.set_audio_tokens(static_cast<uint32_t>(audio));
    out.set_text_tokens(static_cast<uint32_t>(prompt->prompt.size() - image - audio));
    return out;
  }

  absl::StatusOr<std::unique_ptr<Session>> OpenSession(const v1::SessionStart& start) override;

  std::string TokenText(int32_t token_id) const override { return tokenizer_->Decode({token_id}); }

  EngineSnapshot Snapshot() override {
    const scheduler::EngineStats s = engine_->Stats();
    EngineSnapshot out;
    out.num_running = s.running - s.sessions;
    if (out.num_running < 0) out.num_running = 0;
    out.num_waiting = s.waiting;
    out.num_sessions = s.sessions;
    int64_t used = 0, total = 0;
    for (const auto& g : s.kv) {
      used += g.used_blocks;
      total += g.num_blocks;
    }
    out.kv_cache_usage = total == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(total);
    out.prefix_cache_queries = s.prefix_query_tokens;
    out.prefix_cache_hits = s.prefix_hit_tokens;
    out.num_preemptions = s.preemptions;
    return out;
  }

  scheduler::Engine* engine() { return engine_.get(); }
  PromptAdapter* prompts() { return prompts_.get(); }
  const EngineBackendOptions& options() const { return options_; }
  absl::Status Sampling(const v1::SamplingParams& p, const v1::LogprobsParams& lp,
                        runtime::SamplingParams* out);
  absl::Status Stopping(const v1::StoppingParams& p, scheduler::StoppingParams* out);
  void CountAudio(double seconds) {
    if (metrics_ != nullptr) metrics_->RecordMedia(0, seconds);
  }
  void CountMedia(const runtime::Prompt& prompt) {
    int64_t images = 0;
    double audio_s = 0;
    for (const auto& run : prompt.media) {
      if (run.item->kind == runtime::MediaKind::kImage) {
        ++images;
      } else {
        audio_s += run.item->num_rows * 0.04;
      }
    }
    if (metrics_ != nullptr) metrics_->RecordMedia(images, audio_s);
  }

 private:
  const EngineBackendOptions options_;
  ServingMetrics* const metrics_;
  MetricsObserver observer_;
  std::shared_ptr<const runtime::LoadedModel> model_;
  std::unique_ptr<runtime::Tokenizer> tokenizer_;
  std::string device_;  // "cpu", "cuda" or "cuda:N", resolved from the option.
  std::unique_ptr<runtime::ModelRunner> runner_;
  std::unique_ptr<scheduler::Engine> engine_;
  std::unique_ptr<PromptAdapter> prompts_;
  v1::ModelInfo info_;
  int32_t max_prompt_tokens_ = 0;
  std::atomic<int64_t> next_id_{0};
  std::mt19937_64 seed_rng_{std::random_device{}()};
  absl::Mutex seed_mu_;
};

absl::Status EngineBackend::Sampling(const v1::SamplingParams& p, const v1::LogprobsParams& lp,
                                     runtime::SamplingParams* out) {
  if (auto s = CheckRange("temperature", p.has_temperature(), p.temperature(), 0, 2, false);
      !s.ok())
    return s;
  if (auto s = CheckRange("top_p", p.has_top_p(), p.top_p(), 0, 1, true); !s.ok()) return s;
  if (auto s = CheckRange("min_p", p.has_min_p(), p.min_p(), 0, 1, false); !s.ok()) return s;
  if (auto s = CheckRange("repetition_penalty", p.has_repetition_penalty(), p.repetition_penalty(),
                          0, 2, true);
      !s.ok())
    return s;
  if (auto s = CheckRange("presence_penalty", p.has_presence_penalty(), p.presence_penalty(), -2, 2,
                          false);
      !s.ok())
    return s;
  if (auto s = CheckRange("frequency_penalty", p.has_frequency_penalty(), p.frequency_penalty(), -2,
                          2, false);
      !s.ok())
    return s;
  if (p.has_top_k() && p.top_k() > static_cast<uint32_t>(info_.vocab_size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k is ", p.top_k(), "; the vocabulary has ", info_.vocab_size()));
  }
  if (lp.top_logprobs() > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs.top_logprobs is ", lp.top_logprobs(), "; at most 20"));
  }
  if (p.has_temperature()) out->temperature = p.temperature();
  if (p.has_top_k()) out->top_k = static_cast<int32_t>(p.top_k());
  if (p.has_top_p()) out->top_p = p.top_p();
  if (p.has_min_p()) out->min_p = p.min_p();
  if (p.has_repetition_penalty()) out->repetition_penalty = p.repetition_penalty();
  if (p.has_presence_penalty()) out->presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) out->frequency_penalty = p.frequency_penalty();
  if (p.has_seed()) {
    out->seed = p.seed();
  } else {
    absl::MutexLock lock(&seed_mu_);
    out->seed = seed_rng_();
  }
  out->logprobs = lp.enabled() || lp.top_logprobs() > 0;
  out->top_logprobs = static_cast<int32_t>(lp.top_logprobs());
  return absl::OkStatus();
}

absl::Status EngineBackend::Stopping(const v1::StoppingParams& p, scheduler::StoppingParams* out) {
  const int32_t limit = options_.limits.max_tokens;
  if (p.has_max_tokens() && (p.max_tokens() < 1 || p.max_tokens() > static_cast<uint32_t>(limit))) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.max_tokens is ", p.max_tokens(),
                                                   "; it must be in [1, ", limit,
                                                   "] (--max_tokens_limit)"));
  }
  if (p.min_tokens() > static_cast<uint32_t>(limit)) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.min_tokens is ", p.min_tokens(), "; at most ", limit));
  }
  if (p.stop_size() > 16) return absl::InvalidArgumentError("more than 16 stop strings");
  for (const std::string& s : p.stop()) {
    if (s.empty() || s.size() > 256) {
      return absl::InvalidArgumentError("each stop string must be 1 to 256 bytes");
    }
    out->stop_strings.push_back(s);
  }
  for (uint32_t id : p.stop_token_ids()) {
    if (id >= info_.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop token id ", id, " is outside the vocabulary (", info_.vocab_size(), ")"));
    }
    out->stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  // Unset: up to the context length (the engine stops there), but never past the flag's limit.
  out->max_tokens = p.has_max_tokens() ? static_cast<int32_t>(p.max_tokens()) : limit;
  out->min_tokens = static_cast<int32_t>(p.min_tokens());
  out->ignore_eos = p.ignore_eos();
  return absl::OkStatus();
}

// A Converse session on the engine. The context is rendered in Gemma 4's turn format
// (MODEL.md): <bos>[<|turn>system\n...<turn|>\n]<|turn>user\n ... <turn|>\n<|turn>model\n and, with
// thinking off, <|channel>thought\n<channel|>. Audio arrives as samples; every complete 640-sample
// frame (16 kHz) is appended to the engine session at once, so it is prefilled while the user is
// still speaking. Not thread-safe: the Converse reactor serializes calls.
class EngineSession : public Session {
 public:
  EngineSession(EngineBackend* backend, std::string id, const v1::SessionStart& start,
                runtime::SamplingParams sampling, scheduler::StoppingParams stopping,
                const runtime::Tokenizer* tokenizer, const runtime::ModelConfig& config)
      : backend_(backend),
        id_(std::move(id)),
        enable_thinking_(start.enable_thinking()),
        sampling_(sampling),
        stopping_(std::move(stopping)),
        tokenizer_(tokenizer),
        config_(config) {}
  ~EngineSession() override {
    if (resampler_ != nullptr) soxr_delete(resampler_);
    backend_->engine()->CloseSession(id_).IgnoreError();
  }

  absl::Status Begin(const std::string& system) {
    std::vector<int32_t> ids = {config_.text.bos_token_id};
    if (!system.empty()) Append(&ids, "<|turn>system\n" + system + "<turn|>\n");
    return Push(std::move(ids));
  }

  const std::string& session_id() const override { return id_; }

  absl::Status AddAudio(const std::vector<float>& samples, int sample_rate) override {
    if (sample_rate < 1000 || sample_rate > 384000) {
      return absl::InvalidArgumentError(
          absl::StrCat("audio.sample_rate is ", sample_rate, "; it must be 1000..384000"));
    }
    if (config_.audio_token_id < 0) {
      return absl::InvalidArgumentError("this model does not take audio");
    }
    if (turn_rate_ == 0) turn_rate_ = sample_rate;
    if (sample_rate != turn_rate_) {
      return absl::InvalidArgumentError(absl::StrCat("audio.sample_rate changed within a turn (",
                                                     turn_rate_, " then ", sample_rate, ")"));
    }
    const double limit = backend_->options().limits.max_audio_seconds;
    turn_audio_s_ += static_cast<double>(samples.size()) / sample_rate;
    if (turn_audio_s_ > limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", limit, " s of audio in one turn (--max_audio_seconds)"));
    }
    for (float v : samples) {
      if (!(v >= -1.0f && v <= 1.0f)) {
        return absl::InvalidArgumentError("audio samples must be finite and within [-1, 1]");
      }
    }
    if (sample_rate == runtime::kAudioSampleRate) {
      pending_.insert(pending_.end(), samples.begin(), samples.end());
    } else if (auto s = Resample(samples.data(), samples.size()); !s.ok()) {
      return s;
    }
    if (auto s = OpenTurn(); !s.ok()) return s;
    return FlushFrames(/*final=*/false);
  }

  absl::Status AddText(const std::string& text) override {
    if (auto s = OpenTurn(); !s.ok()) return s;
    if (auto s = CloseAudio(); !s.ok()) return s;
    std::vector<int32_t> ids;
    Append(&ids, text);
    return Push(std::move(ids));
  }

  absl::Status AddImage(const v1::Image& image) override {
    const RequestLimits& limits = backend_->options().limits;
    const int32_t budget =
        image.has_max_soft_tokens()
            ? static_cast<int32_t>(std::min<uint32_t>(image.max_soft_tokens(), 1u << 20))
            : limits.default_image_tokens;
    if (!runtime::IsSoftTokenBudget(budget) || budget > limits.max_image_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image max_soft_tokens is ", budget, "; use 70, 140, 280, 560 or 1120, at most ",
          limits.max_image_tokens, " (--max_image_tokens)"));
    }
    if (++turn_images_ > limits.max_images_per_request) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", limits.max_images_per_request,
                       " images in one turn (--max_images_per_request)"));
    }
    return AddImageRows(image, budget, config_.image_token_id, "");
  }

  absl::Status AddVideoFrame(const v1::VideoFrame& frame) override {
    const RequestLimits& limits = backend_->options().limits;
    if (++turn_video_frames_ > limits.max_video_frames) {
      return absl::InvalidArgumentError(absl::StrCat(
          "more than ", limits.max_video_frames, " video frames in one turn (--max_video_frames)"));
    }
    // Frames after the first are joined by a space, as the processor writes a video.
    const std::string prefix = absl::StrCat(
        turn_video_frames_ > 1 ? " " : "",
        runtime::VideoTimestamp(static_cast<double>(frame.timestamp_ms()) / 1000.0), " ");
    return AddImageRows(frame.image(), /*budget=*/70, config_.video_token_id, prefix);
  }

  v1::InputProgress Progress() override {
    v1::InputProgress p;
    p.set_buffered_audio_frames(static_cast<uint32_t>(turn_frames_));
    p.set_computed_tokens(static_cast<uint32_t>(context_tokens_));
    return p;
  }

  absl::StatusOr<std::unique_ptr<ReplyStream>> EndTurn() override {
    if (auto s = OpenTurn(); !s.ok()) return s;
    if (auto s = CloseAudio(); !s.ok()) return s;
    std::vector<int32_t> ids;
    Append(&ids, enable_thinking_ ? "<turn|>\n<|turn>model\n"
                                  : "<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
    if (auto s = Push(std::move(ids)); !s.ok()) return s;
    turn_open_ = false;
    turn_rate_ = 0;
    turn_audio_s_ = 0;
    turn_frames_ = 0;
    turn_images_ = 0;
    turn_video_frames_ = 0;
    auto handle = backend_->engine()->GenerateInSession(id_, sampling_, stopping_);
    if (!handle.ok()) return handle.status();
    reply_id_ = (*handle)->request_id();
    replied_ = true;
    return std::unique_ptr<ReplyStream>(new EngineStream(backend_->engine(), *std::move(handle)));
  }

  void Interrupt() override {
    if (!reply_id_.empty()) backend_->engine()->Abort(reply_id_).IgnoreError();
  }

 private:
  void Append(std::vector<int32_t>* ids, const std::string& text) {
    const std::vector<int32_t> t = tokenizer_->Encode(text);
    ids->insert(ids->end(), t.begin(), t.end());
  }

  absl::Status Push(std::vector<int32_t> ids, std::vector<runtime::MediaRun> media = {}) {
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n == 0) return absl::OkStatus();
    absl::Status s = backend_->engine()->AppendToSession(id_, ids, media);
    // The engine delivers a reply's Completion a moment before it marks the session idle; input
    // for the next turn that races it is retried briefly rather than refused.
    for (int i = 0; i < 500 && replied_ && absl::IsInvalidArgument(s) &&
                    absl::StrContains(s.message(), "generating");
         ++i) {
      absl::SleepFor(absl::Milliseconds(2));
      s = backend_->engine()->AppendToSession(id_, ids, media);
    }
    if (!s.ok()) return s;
    context_tokens_ += n;
    return absl::OkStatus();
  }

  absl::Status OpenTurn() {
    if (turn_open_) return absl::OkStatus();
    turn_open_ = true;
    std::vector<int32_t> ids;
    // After a reply the model's <turn|> (a stop token) is already in the context, or the reply
    // was cut short: close it so the next turn starts cleanly.
    if (replied_) Append(&ids, "\n");
    Append(&ids, "<|turn>user\n");
    return Push(std::move(ids));
  }

  absl::Status FlushFrames(bool final) {
    const size_t frame = runtime::kAudioFrameSamples;
    size_t frames = pending_.size() / frame;
    if (final && pending_.size() % frame != 0) {
      pending_.resize((frames + 1) * frame, 0.0f);  // Zero-pad the last frame.
      ++frames;
    }
    if (frames == 0) return absl::OkStatus();
    std::vector<int32_t> ids;
    if (!audio_open_) {
      ids.push_back(config_.boa_token_id);
      audio_open_ = true;
    }
    auto item = std::make_shared<runtime::MediaItem>();
    item->kind = runtime::MediaKind::kAudio;
    item->num_rows = static_cast<int32_t>(frames);
    item->rows.assign(pending_.begin(), pending_.begin() + frames * frame);
    item->hash = runtime::HashMediaItem(*item);
    pending_.erase(pending_.begin(), pending_.begin() + frames * frame);
    runtime::MediaRun run;
    run.start = static_cast<int32_t>(ids.size());
    run.item = std::move(item);
    ids.insert(ids.end(), frames, config_.audio_token_id);
    turn_frames_ += static_cast<int64_t>(frames);
    backend_->CountAudio(static_cast<double>(frames) * 0.04);
    return Push(std::move(ids), {std::move(run)});
  }

  // Decodes and preprocesses `image` and appends `text_prefix` + <|image> + N x `soft_id` +
  // <image|> to the context, where it is prefilled at once.
  absl::Status AddImageRows(const v1::Image& image, int32_t budget, int32_t soft_id,
                            const std::string& text_prefix) {
    const RequestLimits& limits = backend_->options().limits;
    if (soft_id < 0) return absl::InvalidArgumentError("this model does not take images");
    runtime::ImageLimits il;
    il.max_side = limits.max_image_side;
    il.max_pixels = limits.max_image_pixels;
    absl::StatusOr<runtime::RgbImage> rgb;
    if (image.source_case() == v1::Image::kEncoded) {
      if (static_cast<int64_t>(image.encoded().size()) > limits.max_image_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("an image is ", image.encoded().size(), " bytes; the limit is ",
                         limits.max_image_bytes, " (--max_image_bytes)"));
      }
      rgb = runtime::DecodeImage(image.encoded(), il);
    } else if (image.source_case() == v1::Image::kRawRgb) {
      rgb = runtime::RgbFromRaw(
          image.raw_rgb(), static_cast<int32_t>(std::min<uint32_t>(image.width(), 1u << 30)),
          static_cast<int32_t>(std::min<uint32_t>(image.height(), 1u << 30)), il);
    } else {
      return absl::InvalidArgumentError("an image has neither encoded nor raw_rgb bytes");
    }
    if (!rgb.ok()) return rgb.status();
    auto item = runtime::PreprocessImage(*rgb, budget);
    if (!item.ok()) return item.status();
    if (auto s = OpenTurn(); !s.ok()) return s;
    if (auto s = CloseAudio(); !s.ok()) return s;
    std::vector<int32_t> ids;
    if (!text_prefix.empty()) Append(&ids, text_prefix);
    ids.push_back(config_.boi_token_id);
    runtime::MediaRun run;
    run.start = static_cast<int32_t>(ids.size());
    run.item = std::make_shared<const runtime::MediaItem>(*std::move(item));
    ids.insert(ids.end(), run.item->num_rows, soft_id);
    ids.push_back(config_.eoi_token_id);
    return Push(std::move(ids), {std::move(run)});
  }

  // Feeds `n` input-rate samples (n = 0 with in = nullptr: drains the filter) to the resampler and
  // appends what it produced to pending_.
  absl::Status Resample(const float* in, size_t n) {
    if (resampler_ == nullptr) {
      if (in == nullptr) return absl::OkStatus();
      soxr_error_t error = nullptr;
      const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
      const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
      resampler_ =
          soxr_create(turn_rate_, runtime::kAudioSampleRate, 1, &error, &io, &quality, nullptr);
      if (error != nullptr) {
        resampler_ = nullptr;
        return absl::InternalError(absl::StrCat("libsoxr: ", error));
      }
    }
    std::vector<float> out(n * runtime::kAudioSampleRate / turn_rate_ + 1024);
    while (true) {
      size_t used = 0, made = 0;
      soxr_error_t error = soxr_process(resampler_, in, n, &used, out.data(), out.size(), &made);
      if (error != nullptr) return absl::InternalError(absl::StrCat("libsoxr: ", error));
      pending_.insert(pending_.end(), out.begin(), out.begin() + made);
      if (in != nullptr) {
        in += used;
        n -= used;
        if (n == 0) break;
      } else if (made == 0) {
        soxr_delete(resampler_);
        resampler_ = nullptr;
        break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status CloseAudio() {
    if (auto s = Resample(nullptr, 0); !s.ok()) return s;
    if (auto s = FlushFrames(/*final=*/true); !s.ok()) return s;
    if (!audio_open_) return absl::OkStatus();
    audio_open_ = false;
    return Push({config_.eoa_token_id});
  }

  EngineBackend* const backend_;
  const std::string id_;
  const bool enable_thinking_;
  const runtime::SamplingParams sampling_;
  const scheduler::StoppingParams stopping_;
  const runtime::Tokenizer* const tokenizer_;
  const runtime::ModelConfig& config_;
  bool turn_open_ = false;
  bool audio_open_ = false;
  bool replied_ = false;
  int turn_rate_ = 0;
  double turn_audio_s_ = 0;
  int64_t turn_frames_ = 0;
  int32_t turn_images_ = 0;
  int32_t turn_video_frames_ = 0;
  int64_t context_tokens_ = 0;
  std::vector<float> pending_;  // 16 kHz samples not yet in a complete frame.
  // Streaming libsoxr resampler from turn_rate_ to 16 kHz, alive while a clip at another rate is
  // open; its filter delay is drained when the clip closes.
  soxr_t resampler_ = nullptr;
  std::string reply_id_;
};

absl::StatusOr<std::unique_ptr<Session>> EngineBackend::OpenSession(const v1::SessionStart& start) {
  runtime::SamplingParams sampling;
  if (auto s = Sampling(start.sampling(), {}, &sampling); !s.ok()) return s;
  scheduler::StoppingParams stopping;
  if (auto s = Stopping(start.stopping(), &stopping); !s.ok()) return s;
  if (start.session_id().size() > 128) {
    return absl::InvalidArgumentError("session_id is longer than 128 bytes");
  }
  scheduler::SessionOptions so;
  so.session_id = start.session_id();
  so.priority = start.priority();
  so.cache_salt = start.cache_salt();
  auto id = engine_->OpenSession(so);
  if (!id.ok()) return id.status();
  auto session = std::make_unique<EngineSession>(this, *id, start, sampling, std::move(stopping),
                                                 tokenizer_.get(), model_->config);
  if (auto s = session->Begin(start.system()); !s.ok()) return s;
  return std::unique_ptr<Session>(std::move(session));
}

}  // namespace

std::string ServedModelName(const EngineBackendOptions& options) {
  if (!options.served_model_name.empty()) return options.served_model_name;
  std::string dir = options.model_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const size_t slash = dir.rfind('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateEngineBackend(const EngineBackendOptions& options,
                                                             ServingMetrics* metrics) {
  auto backend = std::make_unique<EngineBackend>(options, metrics);
  if (absl::Status s = backend->Init(); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace tessera::server
