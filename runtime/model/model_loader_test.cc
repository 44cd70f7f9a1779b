#include "runtime/model/model_loader.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string FixtureDir() { return tessera::testing::FixturesDir() + "/gemma4-tiny"; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A copy of the fixture with model.safetensors replaced by `weights`.
std::string MakeModelDir(const std::string& name, const std::string& weights) {
  std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::string cmd = "mkdir -p " + dir;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::ofstream(dir + "/config.json") << ReadFile(FixtureDir() + "/config.json");
  std::ofstream(dir + "/model.safetensors", std::ios::binary) << weights;
  return dir;
}

// Splits a safetensors file into its header JSON and data.
void Split(const std::string& file, nlohmann::json* header, std::string* data) {
  uint64_t n;
  std::memcpy(&n, file.data(), 8);
  *header = nlohmann::json::parse(file.substr(8, n));
  *data = file.substr(8 + n);
}

std::string Join(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  uint64_t n = h.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + h + data;
}

TEST(ModelLoaderTest, LoadsFixture) {
  auto m = LoadModel(FixtureDir());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->weights->layers.size(), 6u);
  EXPECT_TRUE((*m)->weights->layers[5].v_proj.empty());  // K = V global layer.
  EXPECT_FALSE((*m)->weights->layers[0].v_proj.empty());
  EXPECT_EQ((*m)->weights->embed_scale, 8.0f);
  EXPECT_TRUE((*m)->weights->has_vision);
  EXPECT_TRUE((*m)->weights->has_audio);
  // Every tensor of the checkpoint is bound.
  EXPECT_EQ((*m)->weights->total_bytes, (*m)->weights->checkpoint->total_bytes());
}

TEST(ModelLoaderTest, TruncatedFile) {
  std::string file = ReadFile(FixtureDir() + "/model.safetensors");
  auto m = LoadModel(MakeModelDir("truncated", file.substr(0, file.size() - 1000)));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("truncated"), std::string::npos) << m.status();
}

TEST(ModelLoaderTest, LyingHeader) {
  nlohmann::json header;
  std::string data;
  Split(ReadFile(FixtureDir() + "/model.safetensors"), &header, &data);
  header["model.language_model.norm.weight"]["shape"] = {65};
  auto m = LoadModel(MakeModelDir("lying", Join(header, data)));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("model.language_model.norm.weight"), std::string::npos)
      << m.status();
  EXPECT_NE(m.status().message().find("needs 130 bytes"), std::string::npos) << m.status();
}

TEST(ModelLoaderTest, WrongShape) {
  nlohmann::json header;
  std::string data;
  Split(ReadFile(FixtureDir() + "/model.safetensors"), &header, &data);
  // Same byte size, wrong shape: [64, 128] -> [128, 64].
  header["model.language_model.layers.2.mlp.down_proj.weight"]["shape"] = {128, 64};
  auto m = LoadModel(MakeModelDir("shape", Join(header, data)));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "tensor model.language_model.layers.2.mlp.down_proj.weight has shape [128, 64]; the "
            "config implies [64, 128]");
}

TEST(ModelLoaderTest, MissingTensor) {
  nlohmann::json header;
  std::string data;
  Split(ReadFile(FixtureDir() + "/model.safetensors"), &header, &data);
  // Rename instead of delete so the file stays self-consistent.
  header["model.language_model.layers.3.self_attn.q_norm.weightX"] =
      header["model.language_model.layers.3.self_attn.q_norm.weight"];
  header.erase("model.language_model.layers.3.self_attn.q_norm.weight");
  auto m = LoadModel(MakeModelDir("missing", Join(header, data)));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "checkpoint is missing tensor model.language_model.layers.3.self_attn.q_norm.weight");
}

TEST(ModelLoaderTest, MissingFiles) {
  EXPECT_EQ(LoadModel("/nonexistent").status().code(), absl::StatusCode::kNotFound);
  std::string dir = MakeModelDir("noweights", "");
  std::remove((dir + "/model.safetensors").c_str());
  auto m = LoadModel(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("no model.safetensors"), std::string::npos) << m.status();
}

std::string GgufDir() { return tessera::testing::FixturesDir() + "/gguf/gemma4-tiny"; }

// A fresh directory holding copies (symlinks) of the given fixture files.
std::string LinkDir(const std::string& name, const std::vector<std::string>& files) {
  std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  EXPECT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  for (const std::string& f : files) {
    const std::string target = f[0] == '/' ? f : std::string(std::getenv("PWD")) + "/" + f;
    const std::string base = f.substr(f.find_last_of('/') + 1);
    EXPECT_EQ(std::system(("ln -s " + target + " " + dir + "/" + base).c_str()), 0);
  }
  return dir;
}

TEST(ModelLoaderTest, GgufDirectoryFindsTextAndMmproj) {
  const std::string dir = LinkDir("ggufdir", {GgufDir() + "/gemma4-tiny-bf16.gguf",
                                              GgufDir() + "/mmproj-gemma4-tiny-f32.gguf"});
  auto m = LoadModel(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->format, ModelFormat::kGguf);
  EXPECT_EQ((*m)->path, dir + "/gemma4-tiny-bf16.gguf");
  EXPECT_EQ((*m)->dir, dir);
  EXPECT_EQ((*m)->mmproj_path, dir + "/mmproj-gemma4-tiny-f32.gguf");
  EXPECT_TRUE((*m)->config.vision.present);
  EXPECT_TRUE((*m)->config.audio.present);
  EXPECT_FALSE((*m)->tokenizer_json.empty());
  EXPECT_FALSE((*m)->chat_template.empty());
  const std::string d = DescribeModel(**m);
  EXPECT_NE(d.find("GGUF tensors: 42 BF16, 44 F32"), std::string::npos) << d;
  EXPECT_NE(d.find("vision, audio"), std::string::npos) << d;
  // The tokenizer comes from the file's metadata: the directory has no tokenizer.json.
  auto t = LoadTokenizer(**m);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->TokenId("<|image|>"), 500);

  // A text GGUF alone: no vision or audio.
  auto text = LoadModel(GgufDir() + "/gemma4-tiny-f32.gguf");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_FALSE((*text)->config.vision.present);
  EXPECT_TRUE((*text)->mmproj_path.empty());
}

TEST(ModelLoaderTest, GgufPathErrors) {
  const std::string two = LinkDir(
      "twotext", {GgufDir() + "/gemma4-tiny-bf16.gguf", GgufDir() + "/gemma4-tiny-f32.gguf"});
  auto m = LoadModel(two);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("several text GGUF files"), std::string::npos) << m.status();
  const std::string mm_only = LinkDir("mmonly", {GgufDir() + "/mmproj-gemma4-tiny-f32.gguf"});
  m = LoadModel(mm_only);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("neither config.json"), std::string::npos) << m.status();
  LoadModelOptions o;
  o.mmproj = GgufDir() + "/mmproj-gemma4-tiny-f32.gguf";
  m = LoadModel(FixtureDir(), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("applies to GGUF models"), std::string::npos) << m.status();
  // The mmproj named as the model, and the model named as the mmproj.
  m = LoadModel(GgufDir() + "/mmproj-gemma4-tiny-f32.gguf");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("general.architecture is 'clip'"), std::string::npos)
      << m.status();
  o.mmproj = GgufDir() + "/gemma4-tiny-f32.gguf";
  m = LoadModel(GgufDir() + "/gemma4-tiny-f32.gguf", o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("an mmproj file has 'clip'"), std::string::npos)
      << m.status();
  // Not GGUF at all.
  m = LoadModel(FixtureDir() + "/config.json");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("not a GGUF file"), std::string::npos) << m.status();
}

TEST(ModelLoaderTest, SafetensorsTokenizerFromTheDirectory) {
  auto m = LoadModel(tessera::testing::FixturesDir() + "/gguf/gemma4-quant-s/hf");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->format, ModelFormat::kSafetensors);
  EXPECT_TRUE((*m)->tokenizer_json.empty());
  auto t = LoadTokenizer(**m);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 512);
}

}  // namespace
}  // namespace tessera::runtime
