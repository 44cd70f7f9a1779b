// Runs the golden_check binary on the fixture: it must pass at the stated tolerance, fail (exit 1)
// at an impossible one, and report load errors with exit 2.
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "testdata/testdata.h"

namespace {

int RunGoldenCheck(const std::string& args) {
  const std::string bin = std::string(std::getenv("TEST_SRCDIR")) + "/tessera/tools/golden_check";
  const std::string cmd = bin + " " + args + " > /dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(GoldenCheckTest, FixtureVerdicts) {
  const std::string dir = tessera::testing::FixturesDir() + "/gemma4-tiny";
  const std::string golden = dir + "/golden.safetensors";
  EXPECT_EQ(RunGoldenCheck("--model " + dir + " --golden " + golden), 0);
  EXPECT_EQ(RunGoldenCheck("--model=" + dir + " --golden=" + golden + " --chunk=5 --threads=1"), 0);
  EXPECT_EQ(RunGoldenCheck("--model " + dir + " --golden " + golden + " --tolerance 1e-9"), 1);
  EXPECT_EQ(RunGoldenCheck("--model /nonexistent --golden " + golden), 2);
  EXPECT_EQ(RunGoldenCheck("--model " + dir + " --golden " + dir + "/config.json"), 2);
  EXPECT_EQ(RunGoldenCheck("--model " + dir), 2);
}

}  // namespace
