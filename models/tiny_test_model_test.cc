// //models:tiny_test: the spec'd shape (vocab 512, fixture ids, layers 3 and 7 global), runnable.
#include "gtest/gtest.h"
#include "models/model_checks.h"
#include "runtime/model/model_config.h"

namespace tessera::models {
namespace {

TEST(TinyTestModelTest, MatchesSpecAndRuns) {
  ExpectModelMatchesSpec("tiny_test");
  ExpectModelRuns("tiny_test");
  auto config = runtime::LoadModelConfig("models/tiny_test");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->text.vocab_size, 512);
  EXPECT_EQ(config->image_token_id, 500);
  EXPECT_EQ(config->num_layers_of(runtime::LayerType::kGlobal), 2);
  EXPECT_EQ(config->text.layers[3].head_dim, 32);
  EXPECT_EQ(config->text.layers[0].head_dim, 16);
}

}  // namespace
}  // namespace tessera::models
