#include "runtime/model/model_config.h"

#include <fstream>
#include <functional>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string FixtureDir() { return tessera::testing::FixturesDir() + "/gemma4-tiny"; }

nlohmann::json FixtureJson() {
  std::ifstream in(FixtureDir() + "/config.json");
  std::stringstream s;
  s << in.rdbuf();
  return nlohmann::json::parse(s.str());
}

TEST(ModelConfigTest, ReadsFixture) {
  auto c = LoadModelConfig(FixtureDir());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->text.vocab_size, 512);
  EXPECT_EQ(c->text.hidden_size, 64);
  EXPECT_EQ(c->text.num_layers, 6);
  EXPECT_EQ(c->text.num_heads, 4);
  EXPECT_EQ(c->text.sliding_window, 8);
  EXPECT_FLOAT_EQ(c->text.final_logit_softcapping, 30.0f);
  ASSERT_EQ(c->text.layers.size(), 6u);
  const LayerConfig& s = c->text.layers[0];
  EXPECT_EQ(s.type, LayerType::kSliding);
  EXPECT_EQ(s.head_dim, 16);
  EXPECT_EQ(s.num_kv_heads, 2);
  EXPECT_EQ(s.rope_pairs, 8);
  EXPECT_FLOAT_EQ(s.rope_theta, 1e4f);
  EXPECT_FALSE(s.k_eq_v);
  EXPECT_EQ(s.window, 8);
  const LayerConfig& g = c->text.layers[5];
  EXPECT_EQ(g.type, LayerType::kGlobal);
  EXPECT_EQ(g.head_dim, 32);
  EXPECT_EQ(g.num_kv_heads, 1);
  EXPECT_EQ(g.rope_pairs, 4);  // 0.25 * 32 / 2.
  EXPECT_FLOAT_EQ(g.rope_theta, 1e6f);
  EXPECT_TRUE(g.k_eq_v);
  EXPECT_EQ(g.window, 0);
  EXPECT_EQ(c->image_token_id, 500);
  EXPECT_EQ(c->boi_token_id, 501);
  EXPECT_EQ(c->eoa_token_id, 505);
  EXPECT_EQ(c->video_token_id, 506);
  EXPECT_TRUE(c->vision.present);
  EXPECT_EQ(c->vision.mm_embed_dim, 64);
  EXPECT_EQ(c->vision.mm_posemb_size, 32);
  EXPECT_TRUE(c->audio.present);
  EXPECT_EQ(c->audio.audio_embed_dim, 640);
  EXPECT_EQ(c->text.eos_token_ids, std::vector<int32_t>{1});
  EXPECT_EQ(c->num_layers_of(LayerType::kGlobal), 1);
  EXPECT_EQ(c->first_layer_of(LayerType::kGlobal), 5);
}

TEST(ModelConfigTest, GlobalFieldsOfThe12BConfig) {
  // The published 12B config names the global shape in text_config, not per_layer_config.
  nlohmann::json j = FixtureJson();
  j["text_config"].erase("per_layer_config");
  j["text_config"]["global_head_dim"] = 64;
  j["text_config"]["num_global_key_value_heads"] = 1;
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->text.layers[5].head_dim, 64);
  EXPECT_EQ(c->text.layers[5].num_kv_heads, 1);
  EXPECT_EQ(c->text.layers[5].rope_pairs, 8);
  EXPECT_EQ(c->text.layers[0].head_dim, 16);
}

// The fixture stretched to 12 layers (global at 5 and 11), with per_layer_config keyed as
// transformers 5.15+ writes it for that many layers: zero-padded to two digits.
nlohmann::json TwelveLayerJson() {
  nlohmann::json j = FixtureJson();
  nlohmann::json& t = j["text_config"];
  t["num_hidden_layers"] = 12;
  nlohmann::json types = nlohmann::json::array();
  for (int i = 0; i < 12; ++i) {
    types.push_back(i % 6 == 5 ? "full_attention" : "sliding_attention");
  }
  t["layer_types"] = types;
  t["per_layer_config"] = {{"05", {{"head_dim", 32}, {"num_key_value_heads", 1}}},
                           {"11", {{"head_dim", 32}, {"num_key_value_heads", 1}}}};
  return j;
}

TEST(ModelConfigTest, PerLayerKeysZeroPadded) {
  auto c = ParseModelConfig(TwelveLayerJson().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->text.layers.size(), 12u);
  for (int i : {5, 11}) {
    EXPECT_EQ(c->text.layers[i].type, LayerType::kGlobal) << i;
    EXPECT_EQ(c->text.layers[i].head_dim, 32) << i;
    EXPECT_EQ(c->text.layers[i].num_kv_heads, 1) << i;
    EXPECT_EQ(c->text.layers[i].rope_pairs, 4) << i;
  }
  EXPECT_EQ(c->text.layers[4].head_dim, 16);
  EXPECT_EQ(c->text.layers[4].num_kv_heads, 2);
}

TEST(ModelConfigTest, PerLayerKeysMustNameALayer) {
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    const char* expect;
  };
  std::vector<Case> cases = {
      {[](nlohmann::json& p) { p["layer5"] = p["05"]; }, "key 'layer5' is not a layer index"},
      {[](nlohmann::json& p) { p["-1"] = p["05"]; }, "key '-1' is not a layer index"},
      {[](nlohmann::json& p) { p[""] = p["05"]; }, "key '' is not a layer index"},
      {[](nlohmann::json& p) { p["12"] = p["05"]; }, "key '12' is layer 12, out of range"},
      {[](nlohmann::json& p) { p["0011"] = p["11"]; }, "'0011' and '11' both name layer 11"},
      {[](nlohmann::json& p) { p["5"] = p["05"]; }, "'05' and '5' both name layer 5"},
      {[](nlohmann::json& p) { p["05"] = 7; }, "per_layer_config.05 must be an object"},
      {[](nlohmann::json& p) { p["11"]["head_dim"] = "wide"; }, "per_layer_config.11.head_dim"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = TwelveLayerJson();
    c.edit(j["text_config"]["per_layer_config"]);
    auto r = ParseModelConfig(j.dump());
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status();
  }
}

TEST(ModelConfigTest, ErrorsNameTheField) {
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    const char* expect;
  };
  std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["model_type"] = "llama"; }, "model_type 'llama'"},
      {[](nlohmann::json& j) { j["architectures"][0] = "LlamaForCausalLM"; }, "LlamaForCausalLM"},
      {[](nlohmann::json& j) { j["text_config"].erase("hidden_size"); }, "text_config.hidden_size"},
      {[](nlohmann::json& j) { j["text_config"]["vocab_size"] = "big"; }, "text_config.vocab_size"},
      {[](nlohmann::json& j) { j["text_config"]["layer_types"][1] = "linear"; },
       "layer_types[1] 'linear'"},
      {[](nlohmann::json& j) { j["text_config"]["layer_types"].erase(0); }, "has 5 entries"},
      {[](nlohmann::json& j) { j["text_config"]["rope_parameters"].erase("full_attention"); },
       "rope_parameters.full_attention"},
      {[](nlohmann::json& j) {
         j["text_config"]["rope_parameters"]["sliding_attention"]["rope_type"] = "yarn";
       },
       "rope_type 'yarn'"},
      {[](nlohmann::json& j) { j["vision_config"].erase("mm_embed_dim"); },
       "vision_config.mm_embed_dim"},
      {[](nlohmann::json& j) { j["text_config"]["num_key_value_heads"] = 3; }, "not a multiple"},
      {[](nlohmann::json& j) { j.erase("text_config"); }, "text_config"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = FixtureJson();
    c.edit(j);
    auto r = ParseModelConfig(j.dump());
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status();
  }
  EXPECT_FALSE(ParseModelConfig("{not json").ok());
  EXPECT_EQ(LoadModelConfig("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera::runtime
