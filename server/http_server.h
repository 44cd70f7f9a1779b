// The OpenAI-compatible HTTP API (cpp-httplib): /v1/chat/completions, /v1/completions, /v1/models,
// /health (live), /ready (503 until loaded and while draining), /metrics.
//
// Streaming responses are Server-Sent Events written by a chunked content provider on the
// connection's thread; a failed write means the client is gone and the request is cancelled in the
// engine. While the engine is silent (prefill) an SSE comment is written every `heartbeat` so that
// a vanished client is noticed then too.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/openai_api.h"
#include "server/serving_state.h"

namespace httplib {
class Server;
}

namespace tessera::server {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  // 0 picks a free port, reported by port().
  int port = 8080;
  // Largest request body; larger gets 413. Images and audio travel base64-encoded inside it.
  int64_t max_request_bytes = 64 << 20;
  // Connection threads: each open streaming response holds one. Above this, connections queue.
  int threads = 512;
  // Paths of a PEM certificate and key: serve HTTPS. Both empty: plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Silence after which a streaming response writes an SSE comment (detects gone clients).
  absl::Duration heartbeat = absl::Milliseconds(500);
  // Longest a request may run before it is stopped (DeadlineExceeded). Infinite: no limit.
  absl::Duration request_timeout = absl::InfiniteDuration();
  OpenAiOptions openai;
};

class HttpServer {
 public:
  // Binds and starts serving on a background thread. `state` must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           ServingState* state);
  ~HttpServer();
  int port() const { return port_; }
  // Stops accepting connections and ends the serving thread (in-flight handlers finish first).
  void Stop();

 private:
  HttpServer(const HttpServerOptions& options, ServingState* state);
  void Routes();

  const HttpServerOptions options_;
  ServingState* const state_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tessera::server
