// Starts //server:tessera as a child process for end-to-end tests: port 0, a port file in
// $TEST_TMPDIR, and SIGTERM (then SIGKILL) when the test is done.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tessera::testing {

struct ServerPorts {
  int grpc = 0;
  int http = 0;
};

class ServerProcess {
 public:
  // Starts the server binary at `binary` (a runfiles path) with `args` plus the port flags, and
  // waits up to `timeout` for it to write its port file.
  static absl::StatusOr<ServerProcess> Start(const std::string& binary,
                                             const std::vector<std::string>& args,
                                             absl::Duration timeout = absl::Seconds(60));
  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ~ServerProcess();

  const ServerPorts& ports() const { return ports_; }
  pid_t pid() const { return pid_; }

  // Sends SIGTERM and waits up to `timeout`; returns the exit code (or -signal when killed).
  absl::StatusOr<int> Terminate(absl::Duration timeout = absl::Seconds(30));

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  ServerPorts ports_;
};

// Path of a runfile such as "tessera/server/tessera".
std::string Runfile(const std::string& path);

}  // namespace tessera::testing
