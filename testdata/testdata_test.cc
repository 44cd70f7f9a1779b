#include "testdata/testdata.h"

#include <fstream>

#include "gtest/gtest.h"

namespace tessera::testing {
namespace {

TEST(TestdataTest, FindsWorkspaceAndFixtures) {
  std::ifstream self(WorkspaceDir() + "/testdata/testdata.h");
  EXPECT_TRUE(self.good()) << WorkspaceDir();
  // Declared in this test's data: found through the runfiles.
  const std::string config = FixturesDir() + "/gemma4-tiny/config.json";
  std::ifstream f(config);
  EXPECT_TRUE(f.good()) << config;
  EXPECT_NE(config.find("runfiles"), std::string::npos) << config;
}

}  // namespace
}  // namespace tessera::testing
