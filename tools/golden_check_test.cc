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

// llama.cpp's logits files (testdata/gguf): each GGUF the CPU runner computes with matches
// llama.cpp's logits on it within the tolerance of its weight types; the safetensors checkpoint the
// quant-s GGUFs came from matches llama.cpp's f32 GGUF logits too.
TEST(GoldenCheckTest, LlamaCppLogits) {
  const std::string g = tessera::testing::FixturesDir() + "/gguf/";
  for (const std::string f :
       {"gemma4-tiny/gemma4-tiny-f32", "gemma4-tiny/gemma4-tiny-bf16",
        "gemma4-quant-s/gemma4-quant-s-bf16", "gemma4-quant-s/gemma4-quant-s-Q8_0",
        "gemma4-quant-s/gemma4-quant-s-Q6_K", "gemma4-quant-s/gemma4-quant-s-Q5_K_M",
        "gemma4-quant-s/gemma4-quant-s-Q4_K_M", "gemma4-quant-s/gemma4-quant-s-Q4_0"}) {
    EXPECT_EQ(RunGoldenCheck("--model " + g + f + ".gguf --golden " + g + f +
                             ".logits.safetensors --threads 1"),
              0)
        << f;
  }
  EXPECT_EQ(RunGoldenCheck("--model " + g + "gemma4-quant-s/hf --golden " + g +
                           "gemma4-quant-s/gemma4-quant-s-f32.logits.safetensors"),
            0);
  // The quantized files are further from llama.cpp's f32 logits than their tolerance allows for
  // Q4_K_M (the quantization error itself, 1.8e-1): the check tells a quantized file from its
  // source.
  EXPECT_EQ(RunGoldenCheck("--model " + g + "gemma4-quant-s/gemma4-quant-s-Q4_K_M.gguf --golden " +
                           g + "gemma4-quant-s/gemma4-quant-s-f32.logits.safetensors"),
            1);
  // Another model's logits, or an impossible tolerance, fail.
  EXPECT_EQ(RunGoldenCheck("--model " + g + "gemma4-tiny/gemma4-tiny-f32.gguf --golden " + g +
                           "gemma4-quant-s/gemma4-quant-s-f32.logits.safetensors"),
            1);
  EXPECT_EQ(RunGoldenCheck("--model " + g + "gemma4-tiny/gemma4-tiny-f32.gguf --golden " + g +
                           "gemma4-tiny/gemma4-tiny-f32.logits.safetensors --tolerance 1e-7"),
            1);
}

TEST(GoldenCheckTest, DumpWritesTheSameFormat) {
  const std::string g = tessera::testing::FixturesDir() + "/gguf/gemma4-tiny/";
  const std::string dump = std::string(std::getenv("TEST_TMPDIR")) + "/tessera.logits.safetensors";
  ASSERT_EQ(RunGoldenCheck("--model " + g + "gemma4-tiny-f32.gguf --golden " + g +
                           "gemma4-tiny-f32.logits.safetensors --dump " + dump),
            0);
  // The dump is a logits file of the same ids: checking the model against it is exact.
  EXPECT_EQ(RunGoldenCheck("--model " + g + "gemma4-tiny-f32.gguf --golden " + dump +
                           " --tolerance 1e-30"),
            0);
  // --dump needs llama.cpp's layout.
  EXPECT_EQ(RunGoldenCheck("--model " + tessera::testing::FixturesDir() + "/gemma4-tiny --golden " +
                           tessera::testing::FixturesDir() +
                           "/gemma4-tiny/golden.safetensors --dump " + dump),
            2);
}

}  // namespace
