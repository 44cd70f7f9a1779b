#include "tests/testdata.h"

#include <climits>
#include <cstdlib>
#include <string>

namespace tessera::testing {
namespace {

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return "";
  return buf;
}

std::string EnvOr(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

std::string WorkspaceDir() {
  std::string env = EnvOr("TESSERA_WORKSPACE_DIR");
  if (!env.empty()) return env;
  // The runfile "tessera/tests/testdata.cc" (listed in this library's data) is a symlink into the
  // source tree; its real path ends in "/tests/testdata.cc".
  static const std::string kSuffix = "/tests/testdata.cc";
  for (const char* root : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    std::string dir = EnvOr(root);
    if (dir.empty()) continue;
    std::string real = RealPath(dir + "/tessera/tests/testdata.cc");
    if (real.size() > kSuffix.size() &&
        real.compare(real.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
      return real.substr(0, real.size() - kSuffix.size());
    }
  }
  std::string cwd = RealPath(".");
  return cwd.empty() ? "." : cwd;
}

std::string SharedFixturesDir() {
  std::string env = EnvOr("TESSERA_SHARED_FIXTURES_DIR");
  if (!env.empty()) return env;
  return WorkspaceDir() + "/../shared/fixtures";
}

}  // namespace tessera::testing
