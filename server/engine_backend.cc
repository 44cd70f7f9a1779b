#include "server/engine_backend.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <random>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/model/model_loader.h"
#include "runtime/prompt/prompt_builder.h"
#include "runtime/prompt/session_prompt.h"
#include "runtime/prompt/tokenizer.h"
#include "runtime/prompt/tool_call_grammar.h"
#include "runtime/prompt/tool_calls.h"
#include "scheduler/engine.h"
#include "server/cuda_runner.h"
#include "server/prompt_adapter.h"

namespace tessera::server {
namespace {

// "auto" -> "cuda" when a GPU is visible, else "cpu"; "cpu", "cuda" and "cuda:N" pass through.
absl::StatusOr<std::string> ResolveDevice(const std::string& device) {
  if (device == "auto") return CudaDeviceVisible() ? "cuda" : "cpu";
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
    r.finished_reason = scheduler::FinishReasonName(t.reason);
    r.prompt_tokens = t.prompt_tokens;
    r.generation_tokens = t.completion_tokens;
    r.queue_time = t.queue_time;
    r.time_to_first_token = t.time_to_first_token;
    r.total_time = t.e2e_time;
    metrics_->RecordFinished(r);
    for (absl::Duration d : t.inter_token_latencies) metrics_->RecordInterToken(d, 1);
  }
  void OnConstrainedRequest(int32_t num_choices) override {
    if (metrics_ != nullptr) metrics_->RecordConstrainedRequest();
  }
  void OnMaskComputed(absl::Duration duration) override {
    if (metrics_ != nullptr) metrics_->RecordMaskTime(duration);
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
      CudaServingOptions co;
      co.device = device_ == "cuda" ? 0 : std::stoi(device_.substr(5));
      co.kv_memory_bytes = options_.kv_memory_bytes;
      co.gpu_memory_fraction = options_.gpu_memory_fraction;
      co.max_num_seqs = options_.max_num_seqs;
      co.max_num_batched_tokens = options_.max_num_batched_tokens;
      co.max_seq_len = context;
      co.cuda_graphs = options_.cuda_graphs;
      auto runner = CreateCudaRunner(model_, co);
      if (runner.ok()) {
        runner_ = *std::move(runner);
      } else if (options_.device == "auto" && !CudaModelSupported(config).ok()) {
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

    prompt_limits_ = options_.limits.prompt;
    prompt_limits_.max_prompt_tokens = prompt_limits_.max_prompt_tokens > 0
                                           ? std::min(prompt_limits_.max_prompt_tokens, context - 1)
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

    auto prompts =
        PromptAdapter::Create(model_->config, tokenizer_.get(), options_.model_dir, prompt_limits_);
    if (!prompts.ok()) return prompts.status();
    prompts_ = *std::move(prompts);
    // The markup a chat reply's parser reads must reach it as text: where the tokenizer has these
    // as special tokens (Gemma 4's does), the detokenizer keeps them.
    for (std::string_view marker :
         {std::string_view("<|channel>"), std::string_view("<channel|>"), runtime::kToolCallBegin,
          runtime::kToolCallEnd, runtime::kToolResponseBegin, runtime::kGemmaQuote}) {
      std::optional<int32_t> id = tokenizer_->TokenId(marker);
      if (id && tokenizer_->IsSpecial(*id)) markup_ids_.push_back(*id);
    }
    tool_response_id_ = tokenizer_->TokenId(runtime::kToolResponseBegin);

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
    const ServingLimits& sl = options_.limits;
    const runtime::PromptLimits& pl = prompt_limits_;
    l->set_max_prompt_tokens(static_cast<uint32_t>(pl.max_prompt_tokens));
    l->set_max_tokens(static_cast<uint32_t>(sl.max_tokens));
    l->set_max_images_per_request(static_cast<uint32_t>(pl.max_images_per_request));
    l->set_max_image_pixels(static_cast<uint64_t>(pl.max_image_pixels));
    l->set_max_image_tokens(static_cast<uint32_t>(pl.max_image_tokens));
    l->set_default_image_tokens(static_cast<uint32_t>(pl.default_image_tokens));
    l->set_max_audio_seconds(static_cast<float>(pl.max_audio_seconds));
    l->set_max_video_frames(static_cast<uint32_t>(pl.max_video_frames));
    l->set_max_queue_length(static_cast<uint32_t>(sl.max_queue_length));
    l->set_max_sessions(static_cast<uint32_t>(sl.max_sessions));
    l->set_max_request_bytes(static_cast<uint64_t>(sl.max_request_bytes));
    l->set_max_choices(static_cast<uint32_t>(sl.max_choices));
    l->set_max_tools(static_cast<uint32_t>(sl.max_tools));
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
    if (auto s = Agents(request, &r); !s.ok()) return s;
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
    *g.mutable_tools() = r.tools();
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
  // n, tools and structured output: choices, the grammar, the markup the reply parser reads.
  absl::Status Agents(const v1::GenerateRequest& request, scheduler::GenerateRequest* out);
  // The request's constraint (response_format, or a forced tool call), or null.
  absl::StatusOr<std::shared_ptr<const runtime::structured::CompiledGrammar>> Grammar(
      const v1::GenerateRequest& request);
  absl::StatusOr<runtime::structured::GrammarCompiler*> Compiler();
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
  runtime::PromptLimits prompt_limits_;  // The options' with max_prompt_tokens resolved.
  std::vector<int32_t> markup_ids_;      // Special tokens the reply parser reads.
  std::optional<int32_t> tool_response_id_;
  absl::once_flag compiler_once_;
  absl::Status compiler_status_;
  std::unique_ptr<runtime::structured::GrammarCompiler> compiler_;
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
  // The one check of --max_tokens_limit, for both APIs (OpenAI's max_tokens is the proto's).
  const int32_t limit = options_.limits.max_tokens;
  if (p.has_max_tokens() && (p.max_tokens() < 1 || p.max_tokens() > static_cast<uint32_t>(limit))) {
    return absl::InvalidArgumentError(absl::StrCat("'max_tokens' is ", p.max_tokens(),
                                                   "; it must be in [1, ", limit,
                                                   "] (--max_tokens_limit)"));
  }
  if (p.min_tokens() > static_cast<uint32_t>(limit)) {
    return absl::InvalidArgumentError(absl::StrCat("'min_tokens' is ", p.min_tokens(), "; at most ",
                                                   limit, " (--max_tokens_limit)"));
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

absl::StatusOr<runtime::structured::GrammarCompiler*> EngineBackend::Compiler() {
  absl::call_once(compiler_once_, [this] {
    auto vocabulary = runtime::structured::Vocabulary::FromTokenizer(*tokenizer_);
    if (!vocabulary.ok()) {
      compiler_status_ = vocabulary.status();
      return;
    }
    compiler_ = std::make_unique<runtime::structured::GrammarCompiler>(*std::move(vocabulary),
                                                                       options_.structured_outputs);
  });
  if (!compiler_status_.ok()) return compiler_status_;
  return compiler_.get();
}

namespace {

// A regex matching exactly `value` (every ASCII punctuation escaped).
std::string RegexLiteral(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x80 &&
               std::ispunct(static_cast<unsigned char>(c))) {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  return out;
}

bool ToolChoiceNone(const v1::GenerateRequest& r) {
  return r.tool_choice().choice_case() == v1::ToolChoice::kMode &&
         r.tool_choice().mode() == v1::ToolChoice::TOOL_CHOICE_NONE;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const runtime::structured::CompiledGrammar>> EngineBackend::Grammar(
    const v1::GenerateRequest& request) {
  using runtime::structured::GrammarSpec;
  const v1::ResponseFormat& rf = request.response_format();
  const v1::ToolChoice& tc = request.tool_choice();
  const bool forced =
      request.tools_size() > 0 && (tc.choice_case() == v1::ToolChoice::kFunction ||
                                   (tc.choice_case() == v1::ToolChoice::kMode &&
                                    tc.mode() == v1::ToolChoice::TOOL_CHOICE_REQUIRED));
  if (!forced && tc.choice_case() == v1::ToolChoice::kFunction) {
    return absl::InvalidArgumentError("tool_choice names a function but the request has no tools");
  }
  if (rf.format_case() == v1::ResponseFormat::FORMAT_NOT_SET && !forced) return nullptr;
  if (rf.format_case() != v1::ResponseFormat::FORMAT_NOT_SET && request.tools_size() > 0 &&
      !ToolChoiceNone(request)) {
    return absl::InvalidArgumentError(
        "response_format constrains the reply, so the model could not call the request's tools; "
        "send tool_choice none with it, or no format");
  }
  auto compiler = Compiler();
  if (!compiler.ok()) return compiler.status();
  absl::StatusOr<std::shared_ptr<const runtime::structured::CompiledGrammar>> grammar;
  const char* field = "response_format";
  switch (rf.format_case()) {
    case v1::ResponseFormat::kJsonObject:
      grammar = (*compiler)->Compile(GrammarSpec::JsonObject());
      break;
    case v1::ResponseFormat::kJsonSchema:
      grammar = (*compiler)->Compile(GrammarSpec::JsonSchema(rf.json_schema()));
      break;
    case v1::ResponseFormat::kRegex:
      grammar = (*compiler)->Compile(GrammarSpec::Regex(rf.regex()));
      break;
    case v1::ResponseFormat::kGrammar:
      grammar = (*compiler)->Compile(GrammarSpec::Gbnf(rf.grammar()));
      break;
    case v1::ResponseFormat::kChoice: {
      if (rf.choice().values_size() == 0) {
        return absl::InvalidArgumentError("response_format: choice needs at least one value");
      }
      std::string pattern;
      for (const std::string& v : rf.choice().values()) {
        absl::StrAppend(&pattern, pattern.empty() ? "" : "|", RegexLiteral(v));
      }
      grammar = (*compiler)->Compile(GrammarSpec::Regex(pattern));
      break;
    }
    case v1::ResponseFormat::FORMAT_NOT_SET: {
      field = "tool_choice";
      runtime::ToolCallGrammarOptions o;
      o.function = tc.function();
      o.parallel_tool_calls = !request.has_parallel_tool_calls() || request.parallel_tool_calls();
      absl::StatusOr<std::string> tools = ToolsJson(request.tools());
      if (!tools.ok()) return tools.status();
      const nlohmann::json tools_json = nlohmann::json::parse(*tools);
      const std::string key =
          absl::StrCat("tool_call\n", o.function, "\n", o.parallel_tool_calls, "\n", *tools);
      runtime::structured::GrammarCompiler* c = *compiler;
      grammar = c->CompileCustom(
          key, [&] { return runtime::BuildToolCallGrammar(tools_json, o, c->vocabulary()); });
      break;
    }
  }
  if (!grammar.ok()) {
    return absl::Status(grammar.status().code(),
                        absl::StrCat(field, ": ", grammar.status().message()));
  }
  return *grammar;
}

absl::Status EngineBackend::Agents(const v1::GenerateRequest& request,
                                   scheduler::GenerateRequest* out) {
  const ServingLimits& limits = options_.limits;
  const int64_t n = request.n() == 0 ? 1 : request.n();
  if (n > limits.max_choices) {
    return absl::InvalidArgumentError(
        absl::StrCat("'n' is ", n, "; at most ", limits.max_choices, " (--max_choices)"));
  }
  out->num_choices = static_cast<int32_t>(n);
  if (request.tools_size() > limits.max_tools) {
    return absl::InvalidArgumentError(absl::StrCat("the request declares ", request.tools_size(),
                                                   " tools; at most ", limits.max_tools,
                                                   " (--max_tools)"));
  }
  if (request.tools_size() > 0 && request.messages_size() == 0) {
    return absl::InvalidArgumentError("tools need 'messages' (a chat), not a raw 'prompt'");
  }
  auto grammar = Grammar(request);
  if (!grammar.ok()) return grammar.status();
  out->grammar = *std::move(grammar);
  if (request.messages_size() > 0) out->visible_special_tokens = markup_ids_;
  if (request.tools_size() > 0 && !ToolChoiceNone(request)) {
    // After its calls the model waits for their results: the reply ends there.
    if (tool_response_id_) {
      out->stopping.stop_token_ids.push_back(*tool_response_id_);
    } else {
      out->stopping.stop_strings.push_back(std::string(runtime::kToolResponseBegin));
    }
  }
  return absl::OkStatus();
}

// How a session's reply ended, written by the reply's stream when its Completion is taken and read
// by the session before the next input.
struct ReplyEnd {
  std::atomic<bool> ended{false};
  std::atomic<bool> closed{false};  // Ended with <turn|>.
};

// A reply in a session: an EngineStream that records how the reply ended.
class SessionReplyStream : public EngineStream {
 public:
  SessionReplyStream(scheduler::Engine* engine, std::shared_ptr<scheduler::RequestHandle> handle,
                     std::shared_ptr<ReplyEnd> end, int32_t end_of_turn)
      : EngineStream(engine, std::move(handle)), end_(std::move(end)), end_of_turn_(end_of_turn) {}
  bool Next(ReplyEvent* event, absl::Duration timeout) override {
    if (!EngineStream::Next(event, timeout)) return false;
    Note(*event);
    return true;
  }
  bool Drain(std::vector<ReplyEvent>* out) override {
    const size_t before = out->size();
    const bool done = EngineStream::Drain(out);
    for (size_t i = before; i < out->size(); ++i) Note((*out)[i]);
    return done;
  }

 private:
  void Note(const ReplyEvent& e) {
    const auto* c = std::get_if<scheduler::Completion>(&e);
    if (c == nullptr) return;
    end_->closed = c->stop_token.has_value() && *c->stop_token == end_of_turn_;
    end_->ended = true;
  }
  std::shared_ptr<ReplyEnd> end_;
  const int32_t end_of_turn_;
};

// A Converse session on the engine: maps the proto's events onto runtime::SessionPrompt (which
// renders the turns with the chat template's pieces and cuts audio into frames as it arrives) and
// appends whatever it has ready to the engine session, where it is prefilled at once. Not
// thread-safe: the Converse reactor serializes calls.
class EngineSession : public Session {
 public:
  EngineSession(EngineBackend* backend, std::string id, const v1::SessionStart& start,
                runtime::SamplingParams sampling, scheduler::StoppingParams stopping,
                const runtime::Tokenizer* tokenizer, const PromptAdapter& prompts,
                const runtime::ModelConfig& config)
      : backend_(backend),
        id_(std::move(id)),
        sampling_(sampling),
        stopping_(std::move(stopping)),
        config_(config),
        end_of_turn_(prompts.ids().end_of_turn),
        prompt_(tokenizer, prompts.ids(), prompts.limits(), start.enable_thinking()) {}
  ~EngineSession() override { backend_->engine()->CloseSession(id_).IgnoreError(); }

  absl::Status Begin(const std::string& system) {
    if (auto s = prompt_.Begin(system); !s.ok()) return s;
    return Append();
  }

  const std::string& session_id() const override { return id_; }

  absl::Status AddAudio(const std::vector<float>& samples, int sample_rate) override {
    if (config_.audio_token_id < 0) {
      return absl::InvalidArgumentError("this model does not take audio");
    }
    NoteReplyEnd();
    if (auto s = prompt_.AddAudio(samples.data(), samples.size(), sample_rate); !s.ok()) return s;
    return Append();
  }

  absl::Status AddText(const std::string& text) override {
    NoteReplyEnd();
    if (auto s = prompt_.AddText(text); !s.ok()) return s;
    return Append();
  }

  absl::Status AddImage(const v1::Image& image) override {
    if (config_.image_token_id < 0) {
      return absl::InvalidArgumentError("this model does not take images");
    }
    NoteReplyEnd();
    if (auto s = prompt_.AddImage(ToImageInput(image)); !s.ok()) return s;
    return Append();
  }

  absl::Status AddVideoFrame(const v1::VideoFrame& frame) override {
    if (config_.video_token_id < 0) {
      return absl::InvalidArgumentError("this model does not take video");
    }
    NoteReplyEnd();
    if (auto s = prompt_.AddVideoFrame(ToVideoFrame(frame)); !s.ok()) return s;
    return Append();
  }

  v1::InputProgress Progress() override {
    v1::InputProgress p;
    p.set_buffered_audio_frames(static_cast<uint32_t>(prompt_.turn_audio_frames()));
    p.set_computed_tokens(static_cast<uint32_t>(context_tokens_));
    return p;
  }

  absl::StatusOr<std::unique_ptr<ReplyStream>> EndTurn() override {
    NoteReplyEnd();
    if (auto s = prompt_.EndTurn(); !s.ok()) return s;
    if (auto s = Append(); !s.ok()) return s;
    auto handle = backend_->engine()->GenerateInSession(id_, sampling_, stopping_);
    if (!handle.ok()) return handle.status();
    reply_id_ = (*handle)->request_id();
    reply_end_ = std::make_shared<ReplyEnd>();
    return std::unique_ptr<ReplyStream>(
        new SessionReplyStream(backend_->engine(), *std::move(handle), reply_end_, end_of_turn_));
  }

  void Interrupt() override {
    if (!reply_id_.empty()) backend_->engine()->Abort(reply_id_).IgnoreError();
  }

 private:
  // Once the reply's Completion was taken, the prompt learns how the model's turn ended.
  void NoteReplyEnd() {
    if (reply_end_ == nullptr || !reply_end_->ended) return;
    prompt_.ReplyEnded(reply_end_->closed);
    reply_end_ = nullptr;
  }

  // Appends what the prompt has ready to the engine session.
  absl::Status Append() {
    runtime::Prompt ready = prompt_.TakeReady();
    if (ready.token_ids.empty()) return absl::OkStatus();
    backend_->CountMedia(ready);
    const int64_t n = ready.size();
    absl::Status s = backend_->engine()->AppendToSession(id_, std::move(ready.token_ids),
                                                         std::move(ready.media));
    if (!s.ok()) return s;
    context_tokens_ += n;
    return absl::OkStatus();
  }

  EngineBackend* const backend_;
  const std::string id_;
  const runtime::SamplingParams sampling_;
  const scheduler::StoppingParams stopping_;
  const runtime::ModelConfig& config_;
  const int32_t end_of_turn_;
  runtime::SessionPrompt prompt_;
  int64_t context_tokens_ = 0;
  std::string reply_id_;
  std::shared_ptr<ReplyEnd> reply_end_;
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
                                                 tokenizer_.get(), *prompts_, model_->config);
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
