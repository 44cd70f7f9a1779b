// tessera: the inference server. The only place flags are parsed (STYLE.md 8).
//
// For now it serves grpc.health.v1.Health and server reflection on --grpc_port; the model, the
// tessera.v1.Inference service and the HTTP API arrive with the runtime, scheduler and serving work
// (docs/development.md lists what is there).
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "runtime/logging.h"
#include "server/grpc_server.h"

ABSL_FLAG(std::string, grpc_host, "0.0.0.0", "Address the gRPC server binds.");
ABSL_FLAG(int, grpc_port, 50051, "gRPC port (tessera.v1.Inference, health, reflection); 0 = any free port.");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound ports as JSON ({\"grpc\": N}) to this file once serving "
          "(for tests and supervisors that start the server on port 0).");
ABSL_FLAG(double, drain_grace_s, 30.0,
          "On SIGTERM: seconds in-flight calls may run before they are cancelled and the process exits.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace tessera::server {
namespace {

bool ParseLogLevel(const std::string& s, LogLevel* out) {
  if (s == "debug") *out = LogLevel::kDebug;
  else if (s == "info") *out = LogLevel::kInfo;
  else if (s == "warning") *out = LogLevel::kWarning;
  else if (s == "error") *out = LogLevel::kError;
  else return false;
  return true;
}

int Main() {
  LogLevel level;
  if (!ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::fprintf(stderr, "--log_level must be debug, info, warning or error; got '%s'\n",
                 absl::GetFlag(FLAGS_log_level).c_str());
    return 2;
  }
  SetMinLogLevel(level);

  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  GrpcServerOptions grpc_options;
  grpc_options.host = absl::GetFlag(FLAGS_grpc_host);
  grpc_options.port = absl::GetFlag(FLAGS_grpc_port);
  auto grpc_server = GrpcServer::Start(grpc_options, {});
  if (!grpc_server.ok()) {
    TESSERA_LOG(ERROR) << grpc_server.status();
    return 1;
  }
  (*grpc_server)->SetServing(true);
  TESSERA_LOG(INFO) << "serving health and reflection only: no model is loaded in this build";

  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    {
      std::ofstream f(tmp);
      f << "{\"grpc\": " << (*grpc_server)->port() << "}\n";
    }
    std::rename(tmp.c_str(), port_file.c_str());  // Readers never see a partial file.
  }

  int sig = 0;
  sigwait(&signals, &sig);
  TESSERA_LOG(INFO) << "signal " << sig << ": draining";
  (*grpc_server)->SetServing(false);
  (*grpc_server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_drain_grace_s)));
  TESSERA_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace
}  // namespace tessera::server

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Tessera inference server for encoder-free multimodal models.");
  absl::ParseCommandLine(argc, argv);
  return tessera::server::Main();
}
