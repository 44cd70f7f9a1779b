// The gRPC front door: binds the port, serves grpc.health.v1.Health and server reflection, and the
// services handed to it. Health is NOT_SERVING until SetServing(true) (after the model loads) and
// again while draining.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace tessera::server {

struct GrpcServerOptions {
  // Address to bind, e.g. "0.0.0.0" or "127.0.0.1".
  std::string host = "0.0.0.0";
  // Port to bind; 0 picks a free one (tests), reported by GrpcServer::port().
  int port = 50051;
  // Largest request message accepted, in bytes (images and audio travel inline).
  int max_receive_message_bytes = 64 << 20;
  // Services whose health status (grpc.health.v1) follows SetServing, besides the overall "".
  std::vector<std::string> health_service_names;
  // TLS: both set to PEM file contents to serve TLS; both empty for plaintext.
  std::string tls_cert_pem;
  std::string tls_key_pem;
};

class GrpcServer {
 public:
  // Builds and starts the server with `services` registered (not owned; they must outlive it).
  // Health starts NOT_SERVING.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options,
                                                           std::vector<grpc::Service*> services);
  ~GrpcServer();

  int port() const { return port_; }

  // Sets the overall health status ("" service) and that of every registered service.
  void SetServing(bool serving);

  // Stops accepting calls and waits up to `grace` for in-flight calls, then cancels the rest.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> health_service_names_;
  int port_ = 0;
};

}  // namespace tessera::server
