// tessera: the inference server. The only place flags are parsed (STYLE.md 8): each flag lands in
// a typed options struct (GrpcServerOptions, HttpServerOptions, EngineBackendOptions, ...).
//
// Start-up: bind gRPC (tessera.v1.Inference, health, reflection) and HTTP (OpenAI API, probes,
// metrics) with readiness false, load the model, then mark ready and write --port_file.
// SIGTERM/SIGINT drains: readiness false, new requests refused, in-flight ones finish for up to
// --drain_grace_s, then the process exits 0.
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/logging.h"
#include "server/api_keys.h"
#include "server/engine_backend.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/image_fetcher.h"
#include "server/inference_service.h"
#include "server/metrics.h"
#include "server/serving_state.h"
#include "server/work_pool.h"

// Model and device.
ABSL_FLAG(std::string, model, "",
          "Model directory (config.json, model.safetensors, tokenizer.json, chat_template.jinja). "
          "Empty: the built-in default model (random weights: its output is gibberish).");
ABSL_FLAG(std::string, served_model_name, "",
          "Model id reported by /v1/models and GetModelInfo; empty: the model directory's name.");
ABSL_FLAG(std::string, device, "auto",
          "auto (cuda when a GPU is visible, else cpu), cpu, cuda, or cuda:N for GPU ordinal N.");
ABSL_FLAG(int64_t, kv_cache_bytes, 0,
          "KV cache memory for all layers, in bytes; more lets more sequences run at once. 0: "
          "1 GiB on cpu; on cuda, --gpu_memory_fraction of the GPU memory left after the weights.");
ABSL_FLAG(double, gpu_memory_fraction, 0.90,
          "cuda: fraction of the GPU memory free after the weights and step buffers that the KV "
          "cache takes (the rest is left to cuBLASLt and CUDA graphs). In (0, 1).");
ABSL_FLAG(bool, cuda_graphs, true,
          "cuda: run decode steps as CUDA graphs (captured per batch size on first use).");
ABSL_FLAG(int, num_threads, 0, "Threads for the model step; 0 = one per hardware thread.");

// Listening.
ABSL_FLAG(std::string, grpc_host, "0.0.0.0", "Address the gRPC server binds.");
ABSL_FLAG(int, grpc_port, 50051,
          "gRPC port (tessera.v1.Inference, health, reflection); 0 = any free port.");
ABSL_FLAG(std::string, http_host, "0.0.0.0", "Address the HTTP server binds.");
ABSL_FLAG(int, http_port, 8080, "HTTP port (OpenAI API, /health, /ready, /metrics); 0 = any.");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound ports as JSON ({\"grpc\": N, \"http\": M}) to this file once "
          "serving (for tests and supervisors that start the server on port 0).");
ABSL_FLAG(int, prompt_threads, 4,
          "Threads that build prompts (image decoding, resampling, tokenizing) off the gRPC and "
          "HTTP threads; more build more prompts at once, taking CPU from the model step.");
ABSL_FLAG(int, prompt_queue_length, 256,
          "Prompt builds that may wait for a thread; beyond it 429 / RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, http_threads, 512,
          "HTTP connection threads; each open streaming response holds one.");

// Security.
ABSL_FLAG(std::string, api_key_file, "",
          "File of API keys, one per line. When set, HTTP needs 'Authorization: Bearer <key>' and "
          "gRPC the metadata 'authorization: Bearer <key>'.");
ABSL_FLAG(bool, open_probes, true,
          "Serve /health, /ready and /metrics without an API key (gRPC health is always open).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate file: serve TLS on both ports (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key file for --tls_cert.");
ABSL_FLAG(std::string, allowed_image_url_prefixes, "",
          "Comma-separated URL prefixes from which HTTP image_url may be fetched; empty: only "
          "data: URIs are accepted.");

// Limits.
ABSL_FLAG(int64_t, max_request_bytes, 64 << 20,
          "Largest HTTP body / gRPC message, in bytes (413 / RESOURCE_EXHAUSTED above).");
ABSL_FLAG(int, max_images_per_request, 16,
          "Most images in one request (one turn of a Converse session).");
ABSL_FLAG(int64_t, max_image_pixels, 50'000'000, "Most pixels per image, read from the header.");
ABSL_FLAG(int, max_image_side, 8192, "Longest image side in pixels.");
ABSL_FLAG(int64_t, max_image_bytes, 20 << 20, "Largest encoded image, in bytes.");
ABSL_FLAG(int, max_image_tokens, 1120, "Largest per-image soft-token budget a request may ask.");
ABSL_FLAG(int, default_image_tokens, 280, "Soft-token budget of an image that names none.");
ABSL_FLAG(double, max_audio_seconds, 600.0,
          "Longest audio per request (per Converse turn), in seconds; one clip is at most 30 s.");
ABSL_FLAG(int64_t, max_audio_bytes, 32 << 20, "Largest WAV file, in bytes.");
ABSL_FLAG(int, max_video_frames, 32, "Most video frames per request (per Converse turn).");
ABSL_FLAG(int, max_prompt_tokens, 0, "Most prompt tokens; 0 = the model's context length.");
ABSL_FLAG(int, max_tokens_limit, 8192, "Largest max_tokens a request may ask for.");
ABSL_FLAG(int, max_queue_length, 1024,
          "Requests waiting for the engine; beyond it 429 / RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_sessions, 64, "Converse sessions open at once; beyond it RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, session_ttl_s, 300.0, "Idle seconds after which a Converse session is closed.");
ABSL_FLAG(int, max_session_tokens, 32768, "Most tokens a Converse session's context may hold.");
ABSL_FLAG(
    double, request_timeout_s, 0.0,
    "Longest an HTTP request may run, in seconds (0 = no limit; gRPC uses the call deadline).");

ABSL_FLAG(int, max_choices, 16, "Most choices (OpenAI's n) one request may ask for.");
ABSL_FLAG(int, max_tools, 128, "Most tools one request may declare.");

// Structured outputs (docs/structured_outputs.md).
ABSL_FLAG(int, structured_output_cache_entries, 256,
          "Compiled grammars (schemas, regexes, GBNF, tool-call grammars) kept for reuse.");
ABSL_FLAG(int64_t, structured_output_cache_bytes, int64_t{512} << 20,
          "Memory the compiled-grammar cache may hold, in bytes.");
ABSL_FLAG(int64_t, max_structured_output_bytes, int64_t{1} << 20,
          "Largest JSON Schema / regex / GBNF text a request may send, in bytes.");

// Engine.
ABSL_FLAG(int, max_num_seqs, 256, "Sequences holding KV blocks at once (and per step).");
ABSL_FLAG(int, max_num_batched_tokens, 2048, "Token budget of one engine step.");
ABSL_FLAG(bool, enable_prefix_caching, true, "Share KV blocks between requests' equal prefixes.");

// Operations.
ABSL_FLAG(double, drain_grace_s, 30.0,
          "On SIGTERM: seconds in-flight requests may run before they are cancelled and the "
          "process exits.");
ABSL_FLAG(
    bool, emit_vllm_metrics, false,
    "Also export every metric under vLLM's names (vllm:...), for gateways that route on them.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace tessera::server {
namespace {

bool ParseLogLevel(const std::string& s, LogLevel* out) {
  if (s == "debug")
    *out = LogLevel::kDebug;
  else if (s == "info")
    *out = LogLevel::kInfo;
  else if (s == "warning")
    *out = LogLevel::kWarning;
  else if (s == "error")
    *out = LogLevel::kError;
  else
    return false;
  return true;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool IsDir(const std::string& path) { return access((path + "/config.json").c_str(), R_OK) == 0; }

// The built-in default model: //models:default, a data dependency of this binary, found in its
// runfiles (<binary>.runfiles/tessera/models/default).
absl::StatusOr<std::string> DefaultModelDir(const char* argv0) {
  std::vector<std::string> candidates;
  for (const char* env : {"RUNFILES_DIR", "TEST_SRCDIR"}) {
    if (const char* d = std::getenv(env))
      candidates.push_back(absl::StrCat(d, "/tessera/models/default"));
  }
  candidates.push_back(absl::StrCat(argv0, ".runfiles/tessera/models/default"));
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    candidates.push_back(absl::StrCat(exe, ".runfiles/tessera/models/default"));
  }
  for (const std::string& c : candidates) {
    if (IsDir(c)) return c;
  }
  return absl::NotFoundError(
      "no --model given and the built-in default model was not found next to the binary (looked "
      "for <binary>.runfiles/tessera/models/default); build it with `bazel build //server:tessera` "
      "or pass --model=<a Gemma 4 checkpoint directory>");
}

struct ServerOptions {
  GrpcServerOptions grpc;
  HttpServerOptions http;
  EngineBackendOptions backend;
  InferenceServiceOptions inference;
  std::vector<std::string> allowed_image_url_prefixes;
  WorkPoolOptions prompt_pool;
  std::string api_key_file;
  bool open_probes = true;
  std::string port_file;
  absl::Duration drain_grace;
  bool emit_vllm_metrics = false;
};

absl::StatusOr<ServerOptions> OptionsFromFlags(const char* argv0) {
  ServerOptions o;
  EngineBackendOptions& b = o.backend;
  b.device = absl::GetFlag(FLAGS_device);
  b.gpu_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  b.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  if (!(b.gpu_memory_fraction > 0.0 && b.gpu_memory_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu_memory_fraction must be in (0, 1); got ", b.gpu_memory_fraction));
  }
  if (absl::GetFlag(FLAGS_kv_cache_bytes) < 0) {
    return absl::InvalidArgumentError("--kv_cache_bytes must be >= 0");
  }
  b.model_dir = absl::GetFlag(FLAGS_model);
  if (b.model_dir.empty()) {
    auto dir = DefaultModelDir(argv0);
    if (!dir.ok()) return dir.status();
    b.model_dir = *dir;
    if (absl::GetFlag(FLAGS_served_model_name).empty()) b.served_model_name = "tessera-default";
  }
  if (!absl::GetFlag(FLAGS_served_model_name).empty()) {
    b.served_model_name = absl::GetFlag(FLAGS_served_model_name);
  }
  b.kv_memory_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  b.num_threads = absl::GetFlag(FLAGS_num_threads);
  b.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  b.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  b.enable_prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  b.session_ttl = absl::Seconds(absl::GetFlag(FLAGS_session_ttl_s));
  b.max_session_tokens = absl::GetFlag(FLAGS_max_session_tokens);
  // The one limits struct (server/limits.h): filled here, passed down to every part that checks.
  ServingLimits& l = b.limits;
  runtime::PromptLimits& p = l.prompt;
  p.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  p.max_images_per_request = absl::GetFlag(FLAGS_max_images_per_request);
  p.max_image_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  p.max_image_side = absl::GetFlag(FLAGS_max_image_side);
  p.max_image_bytes = absl::GetFlag(FLAGS_max_image_bytes);
  p.max_image_tokens = absl::GetFlag(FLAGS_max_image_tokens);
  p.default_image_tokens = absl::GetFlag(FLAGS_default_image_tokens);
  p.max_audio_seconds = absl::GetFlag(FLAGS_max_audio_seconds);
  p.max_audio_bytes = absl::GetFlag(FLAGS_max_audio_bytes);
  p.max_video_frames = absl::GetFlag(FLAGS_max_video_frames);
  l.max_tokens = absl::GetFlag(FLAGS_max_tokens_limit);
  l.max_queue_length = absl::GetFlag(FLAGS_max_queue_length);
  l.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  l.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  l.max_choices = absl::GetFlag(FLAGS_max_choices);
  l.max_tools = absl::GetFlag(FLAGS_max_tools);
  if (l.max_tokens < 1 || l.max_queue_length < 1 || l.max_request_bytes < 1024 ||
      p.max_images_per_request < 0 || l.max_sessions < 0 || l.max_choices < 1 || l.max_tools < 0) {
    return absl::InvalidArgumentError(
        "--max_tokens_limit, --max_queue_length and --max_choices must be >= 1, "
        "--max_request_bytes >= 1024, --max_images_per_request, --max_sessions and --max_tools "
        ">= 0");
  }
  runtime::structured::GrammarCompilerOptions& so = b.structured_outputs;
  const int cache_entries = absl::GetFlag(FLAGS_structured_output_cache_entries);
  const int64_t cache_bytes = absl::GetFlag(FLAGS_structured_output_cache_bytes);
  const int64_t spec_bytes = absl::GetFlag(FLAGS_max_structured_output_bytes);
  if (cache_entries < 1 || cache_bytes < 1 || spec_bytes < 1) {
    return absl::InvalidArgumentError(
        "--structured_output_cache_entries, --structured_output_cache_bytes and "
        "--max_structured_output_bytes must be >= 1");
  }
  so.cache_entries = static_cast<size_t>(cache_entries);
  so.cache_bytes = static_cast<size_t>(cache_bytes);
  so.max_spec_bytes = static_cast<size_t>(spec_bytes);

  o.grpc.host = absl::GetFlag(FLAGS_grpc_host);
  o.grpc.port = absl::GetFlag(FLAGS_grpc_port);
  o.grpc.max_receive_message_bytes =
      static_cast<int>(std::min<int64_t>(l.max_request_bytes, INT_MAX));
  o.http.host = absl::GetFlag(FLAGS_http_host);
  o.http.port = absl::GetFlag(FLAGS_http_port);
  o.http.max_request_bytes = l.max_request_bytes;
  o.http.threads = absl::GetFlag(FLAGS_http_threads);
  const double timeout_s = absl::GetFlag(FLAGS_request_timeout_s);
  o.http.request_timeout = timeout_s > 0 ? absl::Seconds(timeout_s) : absl::InfiniteDuration();
  o.http.openai.model_id = ServedModelName(b);
  o.http.openai.limits = l.prompt;
  for (absl::string_view prefix : absl::StrSplit(absl::GetFlag(FLAGS_allowed_image_url_prefixes),
                                                 ',', absl::SkipWhitespace())) {
    o.allowed_image_url_prefixes.emplace_back(prefix);
  }

  const std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key must be given together");
  }
  if (!cert.empty()) {
    auto cert_pem = ReadFile(cert);
    if (!cert_pem.ok()) return cert_pem.status();
    auto key_pem = ReadFile(key);
    if (!key_pem.ok()) return key_pem.status();
    o.grpc.tls_cert_pem = *cert_pem;
    o.grpc.tls_key_pem = *key_pem;
    o.http.tls_cert_file = cert;
    o.http.tls_key_file = key;
  }
  o.prompt_pool.threads = absl::GetFlag(FLAGS_prompt_threads);
  o.prompt_pool.max_queued = absl::GetFlag(FLAGS_prompt_queue_length);
  if (o.prompt_pool.threads < 1 || o.prompt_pool.max_queued < 0) {
    return absl::InvalidArgumentError("--prompt_threads must be >= 1, --prompt_queue_length >= 0");
  }
  o.api_key_file = absl::GetFlag(FLAGS_api_key_file);
  o.open_probes = absl::GetFlag(FLAGS_open_probes);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  o.drain_grace = absl::Seconds(absl::GetFlag(FLAGS_drain_grace_s));
  o.emit_vllm_metrics = absl::GetFlag(FLAGS_emit_vllm_metrics);
  return o;
}

void WritePortFile(const std::string& path, int grpc_port, int http_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << "{\"grpc\": " << grpc_port << ", \"http\": " << http_port << "}\n";
  }
  std::rename(tmp.c_str(), path.c_str());  // Readers never see a partial file.
}

int Main(const char* argv0) {
  LogLevel level;
  if (!ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::fprintf(stderr, "--log_level must be debug, info, warning or error; got '%s'\n",
                 absl::GetFlag(FLAGS_log_level).c_str());
    return 2;
  }
  SetMinLogLevel(level);
  auto options = OptionsFromFlags(argv0);
  if (!options.ok()) {
    TESSERA_LOG(ERROR) << options.status().message();
    return 2;
  }

  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  // A client that vanishes mid-response must not kill the process with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ApiKeys keys;
  if (!options->api_key_file.empty()) {
    auto loaded = ApiKeys::FromFile(options->api_key_file);
    if (!loaded.ok()) {
      TESSERA_LOG(ERROR) << loaded.status().message();
      return 2;
    }
    keys = *std::move(loaded);
  }

  MetricsOptions metrics_options;
  metrics_options.model_name = ServedModelName(options->backend);
  metrics_options.emit_vllm_names = options->emit_vllm_metrics;
  ServingMetrics metrics(metrics_options);
  ServingState state(nullptr, &metrics, std::move(keys), options->open_probes,
                     options->prompt_pool);
  state.SetReady(false);
  InferenceService inference(&state, options->inference);
  // Remote image_url parts are fetched only when prefixes are allowed.
  std::unique_ptr<HttpImageFetcher> image_fetcher;
  if (!options->allowed_image_url_prefixes.empty()) {
    image_fetcher = std::make_unique<HttpImageFetcher>(options->allowed_image_url_prefixes);
    options->http.openai.image_fetcher = image_fetcher.get();
  }

  options->grpc.health_service_names = {v1::Inference::service_full_name()};
  auto grpc_server = GrpcServer::Start(options->grpc, {&inference});
  if (!grpc_server.ok()) {
    TESSERA_LOG(ERROR) << grpc_server.status().message();
    return 1;
  }
  auto http_server = HttpServer::Start(options->http, &state);
  if (!http_server.ok()) {
    TESSERA_LOG(ERROR) << http_server.status().message();
    return 1;
  }

  TESSERA_LOG(INFO) << "loading " << options->backend.model_dir;
  const absl::Time load_start = absl::Now();
  auto backend = CreateEngineBackend(options->backend, &metrics);
  if (!backend.ok()) {
    TESSERA_LOG(ERROR) << "cannot serve " << options->backend.model_dir << ": "
                       << backend.status().message();
    return 1;
  }
  const v1::ModelInfo& info = (*backend)->model_info();
  metrics.SetModelInfo(info.architecture(), info.device(), info.revision(), info.context_length());
  state.SetBackend(backend->get());
  state.SetReady(true);
  (*grpc_server)->SetServing(true);
  TESSERA_LOG(INFO) << "serving '" << info.id() << "' (" << info.architecture() << ", "
                    << info.context_length() << " tokens of context) on " << info.device()
                    << ", loaded in " << absl::FormatDuration(absl::Now() - load_start);
  if (!options->port_file.empty()) {
    WritePortFile(options->port_file, (*grpc_server)->port(), (*http_server)->port());
  }

  int sig = 0;
  sigwait(&signals, &sig);
  TESSERA_LOG(INFO) << "signal " << sig << ": draining (up to "
                    << absl::FormatDuration(options->drain_grace) << ")";
  state.StartDraining();
  (*grpc_server)->SetServing(false);
  const bool idle = state.WaitIdle(absl::Now() + options->drain_grace);
  if (!idle) {
    // Whatever still runs is cut off: the process exit releases it all.
    TESSERA_LOG(WARNING) << state.in_flight() << " requests still running at the end of the grace "
                         << "period; cancelling them and exiting";
    (*grpc_server)->Shutdown(absl::ZeroDuration());
    std::fflush(nullptr);
    _exit(0);
  }
  (*grpc_server)->Shutdown(absl::Seconds(1));
  (*http_server)->Stop();
  state.SetBackend(nullptr);
  backend->reset();  // Stops the engine.
  TESSERA_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace
}  // namespace tessera::server

int main(int argc, char** argv) {
  // Debian's Abseil keeps mutex deadlock detection on; every streamed token takes a mutex, and the
  // check cost ~15 us per engine step (docs/performance.md, scheduler section).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage("Tessera inference server for encoder-free multimodal models.");
  absl::ParseCommandLine(argc, argv);
  return tessera::server::Main(argv[0]);
}
