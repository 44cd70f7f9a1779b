// End to end over loopback: the real server binary answers the gRPC health check with SERVING,
// lists its services through reflection, and exits 0 on SIGTERM.
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace tessera::testing {
namespace {

std::shared_ptr<grpc::Channel> Connect(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
}

TEST(ServerHealthTest, AnswersServingThenListsServicesThenDrainsOnSigterm) {
  auto server = ServerProcess::Start(
      Runfile("tessera/server/tessera"),
      {"--grpc_host=127.0.0.1", "--grpc_port=0", "--http_host=127.0.0.1", "--http_port=0"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = Connect(server->ports().grpc);

  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = health->Check(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext rctx;
  rctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = reflection->ServerReflectionInfo(&rctx);
  grpc::reflection::v1alpha::ServerReflectionRequest rreq;
  rreq.set_list_services("");
  ASSERT_TRUE(stream->Write(rreq));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse rresp;
  ASSERT_TRUE(stream->Read(&rresp));
  std::vector<std::string> names;
  for (const auto& svc : rresp.list_services_response().service()) names.push_back(svc.name());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.health.v1.Health"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.reflection.v1alpha.ServerReflection"),
            names.end());
  EXPECT_TRUE(stream->Finish().ok());

  auto code = server->Terminate();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

// Runs the server binary with `args` to completion (it must refuse to start), returning its exit
// code and everything it printed.
std::pair<int, std::string> RunToExit(const std::string& args) {
  // `timeout`: on a machine where the server does start (a GPU is present), it is stopped.
  const std::string cmd = "timeout 60 " + Runfile("tessera/server/tessera") +
                          " --grpc_host=127.0.0.1 --grpc_port=0 --http_host=127.0.0.1 "
                          "--http_port=0 " +
                          args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  if (f == nullptr) return {-1, out};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  const int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ServerHealthTest, RefusesABadDeviceNamingIt) {
  auto [code, out] = RunToExit("--device=tpu");
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("--device must be auto, cpu, cuda or cuda:N"), std::string::npos) << out;
}

// CI and developer machines have no GPU: an explicit --device=cuda stops the server at startup
// with the CUDA error, rather than falling back as --device=auto does (the other test serves with
// the default, auto, on the CPU).
TEST(ServerHealthTest, DeviceCudaWithoutAGpuStopsAtStartupNamingTheError) {
  auto [code, out] = RunToExit("--device=cuda");
  if (code == 124 || out.find("CUDA runner:") != std::string::npos) {
    GTEST_SKIP() << "this machine has a GPU";
  }
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("--device=cuda: "), std::string::npos) << out;
  // Built where the CUDA toolkit is absent, the server has no CUDA runner and says so.
  if (out.find("built without CUDA") != std::string::npos) return;
  EXPECT_NE(out.find("CUDA error"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::testing
