// Replays every input kept in tests/fuzz/corpus/image/ (seeds and past findings) through the fuzz
// target's checks.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/image_fuzz.h"

namespace tessera::runtime {
namespace {

TEST(ImageFuzzRegressionTest, KeptInputsPassTheChecks) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator("tests/fuzz/corpus/image")) {
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 5u) << "the seeds are missing";
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(CheckImageFuzzInput(reinterpret_cast<const uint8_t*>(data.data()), data.size()), "")
        << path;
  }
}

}  // namespace
}  // namespace tessera::runtime
