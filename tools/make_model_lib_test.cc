#include "tools/make_model_lib.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model_config.h"
#include "runtime/model/safetensors.h"
#include "testdata/testdata.h"

namespace tessera::tools {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string FixtureDir() { return tessera::testing::FixturesDir() + "/gemma4-tiny"; }

// The JSON header of a safetensors file, exactly as stored (with its padding).
std::string HeaderOf(const std::string& path) {
  const std::string bytes = ReadAll(path);
  EXPECT_GE(bytes.size(), 8u) << path;
  if (bytes.size() < 8) return "";
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  return bytes.substr(8, n);
}

std::string TempDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return std::string(tmp ? tmp : "/tmp") + "/" + name;
}

TEST(MakeModelTest, FixtureShapeGivesTheFixtureHeaderByteForByte) {
  const ModelSpec spec;  // The defaults are the fixture's shape.
  const std::string ours = SafetensorsHeader(CheckpointTensors(spec), WeightDType::kBF16);
  const std::string theirs = HeaderOf(FixtureDir() + "/model.safetensors");
  ASSERT_FALSE(theirs.empty());
  // Names, shapes, dtypes and offsets one by one first, for a readable failure.
  const json a = json::parse(ours, nullptr, false);
  const json b = json::parse(theirs, nullptr, false);
  ASSERT_FALSE(a.is_discarded());
  ASSERT_FALSE(b.is_discarded());
  EXPECT_EQ(a.size(), b.size());
  for (auto it = b.begin(); it != b.end(); ++it) {
    ASSERT_TRUE(a.contains(it.key())) << "missing " << it.key();
    EXPECT_EQ(a[it.key()], it.value()) << it.key();
  }
  EXPECT_EQ(ours, theirs);
}

TEST(MakeModelTest, FixtureShapeGivesTheFixtureConfigs) {
  const ModelSpec spec;
  const json ours = json::parse(ConfigJson(spec), nullptr, false);
  const json theirs = json::parse(ReadAll(FixtureDir() + "/config.json"), nullptr, false);
  ASSERT_FALSE(theirs.is_discarded());
  EXPECT_EQ(ours, theirs) << json::diff(theirs, ours).dump(1);
  const json gen_ours = json::parse(GenerationConfigJson(spec), nullptr, false);
  const json gen_theirs =
      json::parse(ReadAll(FixtureDir() + "/generation_config.json"), nullptr, false);
  EXPECT_EQ(gen_ours, gen_theirs) << json::diff(gen_theirs, gen_ours).dump(1);
}

TEST(MakeModelTest, WrittenCheckpointOpensAndHoldsTheGoldenDistributions) {
  ModelSpec spec;
  spec.dtype = WeightDType::kF32;  // F32 so the test can check values are bf16-exact.
  const std::string dir = TempDir("fixture_shape_f32");
  ASSERT_TRUE(WriteModel(spec, dir).ok());
  auto file = runtime::SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const std::vector<TensorSpec> expected = CheckpointTensors(spec);
  ASSERT_EQ((*file)->tensors().size(), expected.size());
  for (const TensorSpec& t : expected) {
    const runtime::TensorView* v = (*file)->Find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->dtype, runtime::DType::kF32);
    EXPECT_EQ(v->shape, t.shape) << t.name;
    auto values = runtime::ToFloatVector(*v);
    ASSERT_TRUE(values.ok());
    // The file holds exactly what TensorValues gives, and every value is bf16-exact.
    EXPECT_EQ(*values, TensorValues(spec, t)) << t.name;
    for (float x : *values) {
      ASSERT_EQ(x, Bf16ToFloat(FloatToBf16(x))) << t.name;
      ASSERT_TRUE(std::isfinite(x)) << t.name;
    }
  }

  auto stats = [&](const std::string& name) {
    std::vector<float> v = *runtime::ToFloatVector(*(*file)->Find(name));
    double sum = 0, sq = 0;
    for (float x : v) sum += x;
    const double mean = sum / v.size();
    for (float x : v) sq += (x - mean) * (x - mean);
    return std::make_pair(mean, std::sqrt(sq / v.size()));
  };
  // Sample sizes >= 6912 except where noted: a 5-sigma band on the mean is about 0.06 sd, and the
  // sample sd of n normals is within 5 sqrt(1/(2n)) relative, i.e. 4-9%: use 10%.
  auto [emb_mean, emb_sd] = stats("model.language_model.embed_tokens.weight");  // 32768 values.
  EXPECT_NEAR(emb_mean, 0.0, 0.5 * 0.03);
  EXPECT_NEAR(emb_sd, 0.5, 0.05);
  auto [ln_mean, ln_sd] = stats("model.vision_embedder.patch_ln1.weight");
  EXPECT_NEAR(ln_mean, 1.0, 0.2 * 0.06);
  EXPECT_NEAR(ln_sd, 0.2, 0.02);
  auto [dense_mean, dense_sd] = stats("model.vision_embedder.patch_dense.weight");
  EXPECT_NEAR(dense_mean, 0.0, 0.001);
  EXPECT_NEAR(dense_sd, 1.0 / std::sqrt(6912.0), 0.1 / std::sqrt(6912.0));
  auto [down_mean, down_sd] = stats("model.language_model.layers.0.mlp.down_proj.weight");
  EXPECT_NEAR(down_sd, 1.0 / std::sqrt(128.0), 0.1 / std::sqrt(128.0));
  // 64 values: the bias band is wide (0.1 sd with 5 sigma / sqrt(64) on the mean, 50% on sd).
  auto [bias_mean, bias_sd] = stats("model.vision_embedder.patch_dense.bias");
  EXPECT_NEAR(bias_mean, 0.0, 0.1 * 5 / 8);
  EXPECT_NEAR(bias_sd, 0.1, 0.05);
  for (int i = 0; i < spec.num_layers; ++i) {
    const float s = (*runtime::ToFloatVector(
        *(*file)->Find("model.language_model.layers." + std::to_string(i) + ".layer_scalar")))[0];
    EXPECT_GE(s, 0.5f);
    EXPECT_LE(s, 1.5f);
  }
}

TEST(MakeModelTest, DeterministicFromTheSeed) {
  ModelSpec spec;
  const std::string a = TempDir("seed_a"), b = TempDir("seed_b"), c = TempDir("seed_c");
  ASSERT_TRUE(WriteModel(spec, a).ok());
  ASSERT_TRUE(WriteModel(spec, b).ok());
  spec.seed = 99;
  ASSERT_TRUE(WriteModel(spec, c).ok());
  const std::string fa = ReadAll(a + "/model.safetensors");
  EXPECT_EQ(fa, ReadAll(b + "/model.safetensors"));
  const std::string fc = ReadAll(c + "/model.safetensors");
  ASSERT_EQ(fa.size(), fc.size());
  EXPECT_NE(fa, fc);
  // bf16 and f32 files of one seed hold the same values.
  ModelSpec f32 = spec;
  f32.dtype = WeightDType::kF32;
  const TensorSpec q{"model.language_model.layers.1.self_attn.q_proj.weight", {64, 64}};
  EXPECT_EQ(TensorValues(spec, q), TensorValues(f32, q));
}

TEST(MakeModelTest, RealVocabularyConfigParsesWithGemma4Ids) {
  auto spec = ParseModelSpec(
      R"({"num_layers": 8, "global_layers": [3, 7], "hidden_size": 96, "vocab_size": 262144,
          "sliding_window": 16, "head_dim": 24, "global_head_dim": 48})",
      ModelSpec{});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->ids.image, 258880);
  EXPECT_TRUE(ValidateModelSpec(*spec).ok());
  auto config = runtime::ParseModelConfig(ConfigJson(*spec));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->text.vocab_size, 262144);
  EXPECT_EQ(config->text.hidden_size, 96);
  EXPECT_EQ(config->image_token_id, 258880);
  EXPECT_EQ(config->boi_token_id, 255999);
  EXPECT_EQ(config->eoi_token_id, 258882);
  EXPECT_EQ(config->audio_token_id, 258881);
  EXPECT_EQ(config->boa_token_id, 256000);
  EXPECT_EQ(config->eoa_token_id, 258883);
  EXPECT_EQ(config->video_token_id, 258884);
  EXPECT_EQ(config->text.eos_token_ids, (std::vector<int32_t>{1, 106}));
  ASSERT_EQ(config->text.layers.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    const bool global = i == 3 || i == 7;
    EXPECT_EQ(config->text.layers[i].type,
              global ? runtime::LayerType::kGlobal : runtime::LayerType::kSliding);
    EXPECT_EQ(config->text.layers[i].head_dim, global ? 48 : 24);
  }
  const json gen = json::parse(GenerationConfigJson(*spec), nullptr, false);
  EXPECT_EQ(gen["eos_token_id"], json({1, 106}));
  // Layer 3 is global: no v_proj, K and Q sized by the global head_dim.
  bool has_v3 = false;
  for (const TensorSpec& t : CheckpointTensors(*spec)) {
    if (t.name == "model.language_model.layers.3.self_attn.v_proj.weight") has_v3 = true;
    if (t.name == "model.language_model.layers.3.self_attn.k_proj.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{48, 96}));
    }
  }
  EXPECT_FALSE(has_v3);
}

TEST(MakeModelTest, SpecErrorsNameTheProblem) {
  auto unknown = ParseModelSpec(R"({"layers": 4})", ModelSpec{});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown key \"layers\""));
  EXPECT_FALSE(ParseModelSpec("not json", ModelSpec{}).ok());
  EXPECT_FALSE(ParseModelSpec(R"({"dtype": "f16"})", ModelSpec{}).ok());
  EXPECT_FALSE(ParseModelSpec(R"({"hidden_size": -3})", ModelSpec{}).ok());

  ModelSpec small_vocab;
  small_vocab.vocab_size = 300;  // The small ids (500..506) do not fit.
  absl::Status st = ValidateModelSpec(small_vocab);
  EXPECT_THAT(st.message(), HasSubstr("special id image = 500 is outside the vocabulary of 300"));
  ModelSpec heads;
  heads.num_kv_heads = 3;
  EXPECT_THAT(ValidateModelSpec(heads).message(), HasSubstr("multiple of num_kv_heads 3"));
  ModelSpec layers;
  layers.global_layers = {6};
  EXPECT_THAT(ValidateModelSpec(layers).message(), HasSubstr("global layer 6"));
  EXPECT_FALSE(WriteModel(layers, TempDir("bad")).ok());
}

TEST(MakeModelTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + 0x1.0p-8f), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * 0x1.0p-8f), 0x3f82);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToBf16(1.0f + 0x1.0p-8f + 0x1.0p-20f), 0x3f81);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace tessera::tools
