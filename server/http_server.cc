#include "server/http_server.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/openai_responder.h"
#include "server/status_mapping.h"

namespace tessera::server {
namespace {

void SendError(httplib::Response& res, const absl::Status& status, const std::string& param = "") {
  res.status = ToHttpError(status).http_status;
  res.set_content(OpenAiErrorBody(status, param), "application/json");
}

std::string NewId(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  return absl::StrFormat("%s%x%06x", prefix, absl::ToUnixMicros(absl::Now()),
                         counter.fetch_add(1) & 0xffffff);
}

// One streaming or non-streaming generation over HTTP: owns the engine stream and ends the
// in-flight count exactly once.
struct HttpGeneration {
  HttpGeneration(ServingState* state, OpenAiCall call, std::unique_ptr<ReplyStream> stream,
                 const std::string& id)
      : state(state),
        call(std::move(call)),
        stream(std::move(stream)),
        responder(this->call, id, absl::ToUnixSeconds(absl::Now()),
                  [backend = state->backend()](int32_t t) { return backend->TokenText(t); }) {}
  ~HttpGeneration() {
    if (!finished) {
      // The client left before the end: stop the request; the in-flight count drops when its
      // Completion arrives (its blocks are free then), without holding this thread.
      ServingState* s = state;
      ReleaseWhenComplete(std::move(stream), [s] { s->EndRequest(); });
      return;
    }
    state->EndRequest();
  }

  ServingState* state;
  OpenAiCall call;
  std::unique_ptr<ReplyStream> stream;
  OpenAiResponder responder;
  bool finished = false;
};

}  // namespace

HttpServer::HttpServer(const HttpServerOptions& options, ServingState* state)
    : options_(options), state_(state) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              ServingState* state) {
  std::unique_ptr<HttpServer> s(new HttpServer(options, state));
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return absl::InvalidArgumentError("TLS needs both --tls_cert and --tls_key");
    }
    auto ssl = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(),
                                                    options.tls_key_file.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot load the TLS certificate ",
                                                     options.tls_cert_file, " and key ",
                                                     options.tls_key_file));
    }
    s->server_ = std::move(ssl);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(2, options.threads);
  s->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->server_->set_payload_max_length(static_cast<size_t>(options.max_request_bytes));
  s->server_->set_keep_alive_max_count(1000);
  s->server_->set_read_timeout(30);
  s->server_->set_write_timeout(30);
  s->Routes();
  if (options.port == 0) {
    s->port_ = s->server_->bind_to_any_port(options.host);
    if (s->port_ <= 0) s->port_ = 0;
  } else if (s->server_->bind_to_port(options.host, options.port)) {
    s->port_ = options.port;
  }
  if (s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("could not bind the HTTP port at ", options.host,
                                               ":", options.port, " (in use, or no permission)"));
  }
  httplib::Server* raw = s->server_.get();
  s->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  TESSERA_LOG(INFO) << "HTTP listening on " << options.host << ":" << s->port_
                    << (options.tls_cert_file.empty() ? "" : " (TLS)");
  return s;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Routes() {
  httplib::Server& srv = *server_;
  ServingState* state = state_;
  const HttpServerOptions& opts = options_;

  srv.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        SendError(res, absl::InternalError("internal error while handling the request"));
      });
  srv.set_error_handler([&opts](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      res.set_content(OpenAiErrorBody(absl::InvalidArgumentError(
                          absl::StrCat("the request body is larger than --max_request_bytes (",
                                       opts.max_request_bytes, " bytes)"))),
                      "application/json");
    } else if (res.status == 404) {
      res.set_content(OpenAiErrorBody(absl::NotFoundError(
                          absl::StrCat("no route for ", req.method, " ", req.path))),
                      "application/json");
    }
  });
  srv.set_pre_routing_handler([state](const httplib::Request& req, httplib::Response& res) {
    const bool probe = req.path == "/health" || req.path == "/ready" || req.path == "/metrics";
    if (probe && state->open_probes()) return httplib::Server::HandlerResponse::Unhandled;
    const absl::Status auth = state->keys().Check(req.get_header_value("Authorization"));
    if (!auth.ok()) {
      state->Rejected(auth);
      SendError(res, auth);
      res.set_header("WWW-Authenticate", "Bearer");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  srv.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  srv.Get("/ready", [state](const httplib::Request&, httplib::Response& res) {
    if (state->ready()) {
      res.set_content("{\"status\":\"ready\"}", "application/json");
    } else {
      res.status = 503;
      res.set_content(state->draining() ? "{\"status\":\"draining\"}" : "{\"status\":\"loading\"}",
                      "application/json");
    }
  });
  srv.Get("/metrics", [state](const httplib::Request&, httplib::Response& res) {
    res.set_content(state->ScrapeMetrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  srv.Get("/v1/models", [state](const httplib::Request&, httplib::Response& res) {
    Backend* backend = state->backend();
    if (backend == nullptr) {
      SendError(res, absl::UnavailableError("the model is still loading; retry shortly"));
      return;
    }
    const v1::ModelInfo& info = backend->model_info();
    nlohmann::json model = {{"id", info.id()},
                            {"object", "model"},
                            {"created", 0},
                            {"owned_by", "tessera"},
                            {"max_model_len", info.context_length()}};
    nlohmann::json body = {{"object", "list"}, {"data", nlohmann::json::array({model})}};
    res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    "application/json");
  });

  auto generate = [state, &opts](bool chat) {
    return [state, &opts, chat](const httplib::Request& req, httplib::Response& res) {
      std::string param;
      absl::StatusOr<OpenAiCall> call = chat ? ParseChatCompletion(req.body, opts.openai, &param)
                                             : ParseCompletion(req.body, opts.openai, &param);
      if (!call.ok()) {
        state->Rejected(call.status());
        SendError(res, call.status(), param);
        return;
      }
      if (absl::Status s = state->BeginRequest(); !s.ok()) {
        state->Rejected(s);
        SendError(res, s);
        return;
      }
      const std::string id = NewId(chat ? "chatcmpl-" : "cmpl-");
      call->request.set_request_id(id);
      const absl::Time deadline = opts.request_timeout == absl::InfiniteDuration()
                                      ? absl::InfiniteFuture()
                                      : absl::Now() + opts.request_timeout;
      // The prompt is built on the same bounded pool as gRPC's (429 when it is full).
      absl::StatusOr<std::unique_ptr<ReplyStream>> stream = absl::UnknownError("not built");
      const absl::Status pooled = state->prompt_pool().Run(
          [&] { stream = state->backend()->Generate(call->request, deadline); });
      if (!pooled.ok()) stream = pooled;
      if (!stream.ok()) {
        state->EndRequest();
        state->Rejected(stream.status());
        SendError(res, stream.status());
        return;
      }
      auto gen = std::make_shared<HttpGeneration>(state, *std::move(call), *std::move(stream), id);
      if (!gen->call.stream) {
        ReplyEvent e;
        while (gen->stream->Next(&e, absl::InfiniteDuration())) {
          if (auto* d = std::get_if<scheduler::TokenDelta>(&e)) {
            gen->responder.Accumulate(*d);
            continue;
          }
          gen->responder.Accumulate(std::get<scheduler::Completion>(e));
          if (!gen->responder.done()) continue;  // Other choices (n > 1) still run.
          gen->finished = true;
          if (!gen->responder.error().ok()) {
            SendError(res, gen->responder.error());
          } else {
            res.set_content(gen->responder.Body(), "application/json");
          }
          return;
        }
        return;
      }
      const absl::Duration heartbeat = opts.heartbeat;
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream", [gen, heartbeat](size_t, httplib::DataSink& sink) {
            ReplyEvent e;
            if (!gen->stream->Next(&e, heartbeat)) {
              static constexpr char kComment[] = ": keep-alive\n\n";
              return sink.write(kComment, sizeof(kComment) - 1);  // False: client gone.
            }
            if (auto* d = std::get_if<scheduler::TokenDelta>(&e)) {
              const std::string out = gen->responder.StreamDelta(*d);
              return out.empty() || sink.write(out.data(), out.size());
            }
            const std::string out = gen->responder.StreamFinish(std::get<scheduler::Completion>(e));
            if (!sink.write(out.data(), out.size())) return false;
            if (gen->responder.done()) {
              gen->finished = true;
              sink.done();
            }
            return true;
          });
    };
  };
  srv.Post("/v1/chat/completions", generate(true));
  srv.Post("/v1/completions", generate(false));
}

}  // namespace tessera::server
