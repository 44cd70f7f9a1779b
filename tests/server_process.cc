#include "tests/server_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera::testing {
namespace {

// Reads {"grpc": N, "http": M} written by the server (flat JSON, our own format).
bool ReadPorts(const std::string& path, ServerPorts* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  auto field = [&](const std::string& key, int* value) {
    const size_t k = s.find("\"" + key + "\"");
    if (k == std::string::npos) return;
    const size_t colon = s.find(':', k);
    size_t end = s.find_first_of(",}", colon);
    std::string num = s.substr(colon + 1, end - colon - 1);
    num.erase(0, num.find_first_not_of(" \n"));
    num.erase(num.find_last_not_of(" \n") + 1);
    absl::SimpleAtoi(num, value);
  };
  field("grpc", &out->grpc);
  field("http", &out->http);
  return out->grpc != 0;
}

}  // namespace

std::string Runfile(const std::string& path) {
  const char* dir = std::getenv("TEST_SRCDIR");
  return dir ? absl::StrCat(dir, "/", path) : path;
}

absl::StatusOr<ServerProcess> ServerProcess::Start(const std::string& binary,
                                                   const std::vector<std::string>& args,
                                                   absl::Duration timeout) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  static int counter = 0;
  const std::string port_file =
      absl::StrCat(tmp ? tmp : "/tmp", "/server_ports_", getpid(), "_", counter++, ".json");
  unlink(port_file.c_str());

  std::vector<std::string> argv_s = {binary};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  argv_s.push_back("--port_file=" + port_file);
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  ServerProcess p;
  p.pid_ = pid;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (ReadPorts(port_file, &p.ports_)) return p;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      p.pid_ = -1;
      return absl::InternalError(absl::StrCat("server exited before serving, status ", status));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("server did not write its port file in time");
}

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : pid_(other.pid_), ports_(other.ports_) {
  other.pid_ = -1;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

absl::StatusOr<int> ServerProcess::Terminate(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return -WTERMSIG(status);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("server did not exit after SIGTERM");
}

}  // namespace tessera::testing
