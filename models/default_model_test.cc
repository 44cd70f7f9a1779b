// //models:default: the spec'd shape, runnable, and its special ids are the real tokenizer's.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/model_checks.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model_config.h"
#include "runtime/prompt/tokenizer.h"

namespace tessera::models {
namespace {

using json = nlohmann::json;

TEST(DefaultModelTest, MatchesSpecRunsAndSharesTheTokenizersIds) {
  ExpectModelMatchesSpec("default");
  ExpectModelRuns("default");
  auto config = runtime::LoadModelConfig("models/default");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->text.vocab_size, 262144);
  EXPECT_EQ(config->num_layers_of(runtime::LayerType::kGlobal), 1);
  const json gen = json::parse(ReadAll("models/default/generation_config.json"), nullptr, false);
  EXPECT_EQ(gen["eos_token_id"], json({1, 106}));

  // The real tokenizer (loaded by the runtime from the model directory) has every special token
  // where the config says it is, and matches each as one token in raw text.
  auto tokenizer = runtime::Tokenizer::FromFile("models/default/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), config->text.vocab_size);
  const std::map<std::string, int32_t> expected = {
      {"<pad>", 0},
      {"<eos>", 1},
      {"<bos>", 2},
      {"<turn|>", 106},
      {"<|image|>", config->image_token_id},
      {"<|image>", config->boi_token_id},
      {"<image|>", config->eoi_token_id},
      {"<|audio|>", config->audio_token_id},
      {"<|audio>", config->boa_token_id},
      {"<audio|>", config->eoa_token_id},
      {"<|video|>", config->video_token_id},
  };
  for (const auto& [content, id] : expected) {
    EXPECT_EQ((*tokenizer)->TokenId(content), std::optional<int32_t>(id)) << content;
    EXPECT_EQ((*tokenizer)->Encode(content), std::vector<int32_t>{id}) << content;
  }

  const std::string chat_template = ReadAll("models/default/chat_template.jinja");
  EXPECT_NE(chat_template.find("<|turn>"), std::string::npos);
}

}  // namespace
}  // namespace tessera::models
