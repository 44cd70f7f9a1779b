// Replays every input kept in tests/fuzz/corpus/image/ (seeds and past findings) through the fuzz
// target's checks.
#include "gtest/gtest.h"
#include "tests/fuzz/corpus_replay.h"
#include "tests/fuzz/image_fuzz.h"

namespace tessera::runtime {
namespace {

TEST(ImageFuzzRegressionTest, KeptInputsPassTheChecks) {
  tessera::testing::ReplayCorpus("tests/fuzz/corpus/image", 5, CheckImageFuzzInput);
}

}  // namespace
}  // namespace tessera::runtime
