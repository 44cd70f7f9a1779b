#include "tests/testdata.h"

#include <fstream>

#include "gtest/gtest.h"

namespace tessera::testing {
namespace {

TEST(TestdataTest, FindsWorkspaceAndFixtures) {
  std::ifstream self(WorkspaceDir() + "/tests/testdata.h");
  EXPECT_TRUE(self.good()) << WorkspaceDir();
  std::ifstream config(SharedFixturesDir() + "/gemma4-tiny/config.json");
  EXPECT_TRUE(config.good()) << SharedFixturesDir();
}

}  // namespace
}  // namespace tessera::testing
