// Replays every input kept in tests/fuzz/corpus/wav/ (seeds and past findings) through the fuzz
// target's checks.
#include "gtest/gtest.h"
#include "tests/fuzz/corpus_replay.h"
#include "tests/fuzz/wav_fuzz.h"

namespace tessera::runtime {
namespace {

TEST(WavFuzzRegressionTest, KeptInputsPassTheChecks) {
  tessera::testing::ReplayCorpus("tests/fuzz/corpus/wav", 5, CheckWavFuzzInput);
}

}  // namespace
}  // namespace tessera::runtime
