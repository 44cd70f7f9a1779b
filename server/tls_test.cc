// TLS on both edges: HTTPS (cpp-httplib SSLServer) and gRPC (SslServerCredentials) with a
// self-signed certificate made by the openssl CLI for this test; a plaintext client is refused.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/fake_backend.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/inference_service.h"

namespace tessera::server {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(TlsTest, HttpsAndGrpcOverTls) {
  const char* tmp_env = std::getenv("TEST_TMPDIR");
  const std::string tmp = tmp_env ? tmp_env : "/tmp";
  const std::string cert = tmp + "/cert.pem", key = tmp + "/key.pem";
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);

  FakeBackend backend;
  ServingMetrics metrics(MetricsOptions{});
  ServingState state(&backend, &metrics, ApiKeys(), true);
  state.SetReady(true);

  HttpServerOptions http;
  http.host = "127.0.0.1";
  http.port = 0;
  http.threads = 4;
  http.tls_cert_file = cert;
  http.tls_key_file = key;
  auto https = HttpServer::Start(http, &state);
  ASSERT_TRUE(https.ok()) << https.status();
  {
    httplib::SSLClient client("127.0.0.1", (*https)->port());
    client.set_ca_cert_path(cert.c_str());
    client.enable_server_certificate_verification(true);
    auto res =
        client.Post("/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"over tls"}]})", "application/json");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_TRUE(absl::StrContains(res->body, "over tls"));
    httplib::Client plain("127.0.0.1", (*https)->port());
    EXPECT_FALSE(plain.Get("/health"));  // Not HTTP on a TLS port.
  }
  (*https)->Stop();

  InferenceService service(&state);
  GrpcServerOptions grpc_options;
  grpc_options.host = "127.0.0.1";
  grpc_options.port = 0;
  grpc_options.tls_cert_pem = Slurp(cert);
  grpc_options.tls_key_pem = Slurp(key);
  auto server = GrpcServer::Start(grpc_options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Slurp(cert);
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(
      "localhost:" + std::to_string((*server)->port()), grpc::SslCredentials(ssl)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetModelInfoResponse info;
  const grpc::Status s = stub->GetModelInfo(&ctx, {}, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.model().id(), "fake");
  auto insecure = v1::Inference::NewStub(grpc::CreateChannel(
      "localhost:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  EXPECT_FALSE(insecure->GetModelInfo(&ctx2, {}, &info).ok());
  (*server)->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace tessera::server
