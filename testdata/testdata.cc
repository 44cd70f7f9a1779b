#include "testdata/testdata.h"

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

std::string RunfilePath(const std::string& workspace_relative) {
  // Under Bazel a file the test did not list as data is not there, and the test fails naming
  // the runfiles path: it never reads the source tree behind Bazel's back.
  for (const char* root : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    const std::string dir = EnvOr(root);
    if (!dir.empty()) return dir + "/tessera/" + workspace_relative;
  }
  return WorkspaceDir() + "/" + workspace_relative;
}

std::string FixturesDir() { return RunfilePath("testdata"); }

std::string WorkspaceDir() {
  std::string env = EnvOr("TESSERA_WORKSPACE_DIR");
  if (!env.empty()) return env;
  // The runfile "tessera/testdata/testdata.cc" (listed in this library's data) is a symlink into
  // the source tree; its real path ends in "/testdata/testdata.cc".
  static const std::string kSuffix = "/testdata/testdata.cc";
  for (const char* root : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    std::string dir = EnvOr(root);
    if (dir.empty()) continue;
    std::string real = RealPath(dir + "/tessera/testdata/testdata.cc");
    if (real.size() > kSuffix.size() &&
        real.compare(real.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
      return real.substr(0, real.size() - kSuffix.size());
    }
  }
  std::string cwd = RealPath(".");
  return cwd.empty() ? "." : cwd;
}

}  // namespace tessera::testing
