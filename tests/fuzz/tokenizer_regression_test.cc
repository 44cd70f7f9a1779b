// Replays every input kept in tests/fuzz/corpus/tokenizer/ (seeds and past crashes) through the
// fuzz target's checks.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/prompt/tokenizer.h"
#include "tests/fuzz/tokenizer_fuzz.h"

namespace tessera::runtime {
namespace {

TEST(TokenizerFuzzRegressionTest, KeptInputsPassTheChecks) {
  auto tokenizer = Tokenizer::FromFile("third_party/tokenizer/gemma4/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator("tests/fuzz/corpus/tokenizer")) {
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 5u) << "the seeds are missing";
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(CheckTokenizerFuzzInput(**tokenizer, reinterpret_cast<const uint8_t*>(data.data()),
                                      data.size()),
              "")
        << path;
  }
}

}  // namespace
}  // namespace tessera::runtime
