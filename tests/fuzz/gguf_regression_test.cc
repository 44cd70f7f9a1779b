// Replays every input kept in tests/fuzz/corpus/gguf/ (seeds and past findings) through the fuzz
// target's checks, and makes sure the seeds are files the loader accepts (a refused seed would
// leave the fuzzer exploring only the reader's error paths).
#include <filesystem>
#include <fstream>
#include <iterator>

#include "gtest/gtest.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_model.h"
#include "tests/fuzz/corpus_replay.h"
#include "tests/fuzz/gguf_fuzz.h"

namespace tessera::runtime {
namespace {

constexpr char kCorpus[] = "tests/fuzz/corpus/gguf";

TEST(GgufFuzzRegressionTest, KeptInputsPassTheChecks) {
  tessera::testing::ReplayCorpus(kCorpus, 5, CheckGgufFuzzInput);
}

TEST(GgufFuzzRegressionTest, SeedsAreAccepted) {
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("seed-text-", 0) != 0) continue;
    ++seeds;
    auto f = GgufFile::Open(entry.path().string());
    ASSERT_TRUE(f.ok()) << f.status();
    auto config = GgufModelConfig(**f, nullptr);
    EXPECT_TRUE(config.ok()) << name << ": " << config.status();
  }
  EXPECT_GE(seeds, 4);
  auto text = GgufFile::Open(std::string(kCorpus) + "/seed-text-f32-tokenizer.gguf");
  auto mm = GgufFile::Open(std::string(kCorpus) + "/seed-mmproj-bf16.gguf");
  ASSERT_TRUE(text.ok() && mm.ok());
  auto config = GgufModelConfig(**text, mm->get());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->vision.present && config->audio.present);
}

}  // namespace
}  // namespace tessera::runtime
