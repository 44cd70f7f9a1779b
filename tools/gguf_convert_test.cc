// tools/gguf_convert against llama.cpp's own outputs (testdata/gguf): the converter's f32 / bf16
// text files and f32 mmproj byte for byte, and llama-quantize's files tensor for tensor and value
// for value.
#include "tools/gguf_convert.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "runtime/model/gguf.h"
#include "runtime/model/model_loader.h"
#include "testdata/testdata.h"

namespace tessera::tools {
namespace {

using runtime::GgmlType;
using runtime::GgufFile;

std::string Fixtures() { return tessera::testing::FixturesDir(); }
std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

GgufConvertOptions TinyOptions(const std::string& type) {
  GgufConvertOptions o;
  const std::string tok = Fixtures() + "/gguf/gemma4-tiny/";
  o.model_dir = Fixtures() + "/gemma4-tiny";
  o.type = type;
  o.name = "Gemma4 Tiny";
  o.tokenizer_json = tok + "tokenizer.json";
  o.tokenizer_config_json = tok + "tokenizer_config.json";
  o.chat_template = tok + "chat_template.jinja";
  return o;
}

TEST(GgufConvertTest, TinyFilesAreTheConvertersBytes) {
  GgufConvertOptions o = TinyOptions("F32");
  o.out = Tmp("tiny-f32.gguf");
  o.mmproj_out = Tmp("mmproj-tiny-f32.gguf");
  ASSERT_TRUE(ConvertToGguf(o).ok()) << ConvertToGguf(o);
  const std::string dir = Fixtures() + "/gguf/gemma4-tiny/";
  EXPECT_TRUE(ReadFile(o.out) == ReadFile(dir + "gemma4-tiny-f32.gguf"));
  EXPECT_TRUE(ReadFile(o.mmproj_out) == ReadFile(dir + "mmproj-gemma4-tiny-f32.gguf"));
  o = TinyOptions("BF16");
  o.out = Tmp("tiny-bf16.gguf");
  ASSERT_TRUE(ConvertToGguf(o).ok());
  EXPECT_TRUE(ReadFile(o.out) == ReadFile(dir + "gemma4-tiny-bf16.gguf"));
  // The bf16 mmproj loads with the text model (no fixture to compare bytes with).
  o.mmproj_out = Tmp("mmproj-tiny-bf16.gguf");
  o.mmproj_type = "BF16";
  ASSERT_TRUE(ConvertToGguf(o).ok());
  runtime::LoadModelOptions lo;
  lo.mmproj = o.mmproj_out;
  auto model = runtime::LoadModel(o.out, lo);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->config.vision.present && (*model)->config.audio.present);
  auto mm = GgufFile::Open(o.mmproj_out);
  ASSERT_TRUE(mm.ok());
  EXPECT_EQ((*mm)->FindTensor("v.patch_embd.weight")->ggml_type(), GgmlType::kBF16);
  EXPECT_EQ((*mm)->FindTensor("v.position_embd.weight")->ggml_type(), GgmlType::kF32);
}

// Same tensors (names, shapes, types, bytes) and the same metadata values as llama-quantize's
// files of the same checkpoint (its key order differs: it moves general.file_type last).
TEST(GgufConvertTest, QuantizedFilesMatchLlamaQuantize) {
  const std::string dir = Fixtures() + "/gguf/gemma4-quant-s/";
  for (const std::string type : {"BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"}) {
    GgufConvertOptions o;
    o.model_dir = dir + "hf";
    o.type = type;
    o.name = "Hf";
    o.out = Tmp("qs-" + type + ".gguf");
    ASSERT_TRUE(ConvertToGguf(o).ok()) << type;
    auto ours = GgufFile::Open(o.out);
    auto ref = GgufFile::Open(dir + "gemma4-quant-s-" + (type == "BF16" ? "bf16" : type) + ".gguf");
    ASSERT_TRUE(ours.ok() && ref.ok()) << type;
    ASSERT_EQ((*ours)->tensors().size(), (*ref)->tensors().size()) << type;
    for (const runtime::GgufTensor& r : (*ref)->tensors()) {
      const runtime::GgufTensor* t = (*ours)->FindTensor(r.name);
      ASSERT_NE(t, nullptr) << type << " " << r.name;
      EXPECT_EQ(t->ne, r.ne) << type << " " << r.name;
      ASSERT_EQ(t->type, r.type) << type << " " << r.name << ": " << runtime::GgmlTypeName(t->type)
                                 << " vs " << runtime::GgmlTypeName(r.type);
      EXPECT_TRUE(std::equal(t->data, t->data + t->num_bytes, r.data)) << type << " " << r.name;
    }
    ASSERT_EQ((*ours)->keys().size(), (*ref)->keys().size()) << type;
    for (std::string_view k : (*ref)->keys()) {
      const runtime::GgufValue* a = (*ours)->Find(k);
      const runtime::GgufValue* b = (*ref)->Find(k);
      ASSERT_NE(a, nullptr) << type << " " << k;
      EXPECT_EQ(a->TypeString(), b->TypeString()) << type << " " << k;
      EXPECT_EQ(a->strings, b->strings) << type << " " << k;
      if (b->data != nullptr) {
        const size_t n =
            b->count * runtime::GgufScalarSize(b->is_array() ? b->element_type : b->type);
        EXPECT_TRUE(std::equal(a->data, a->data + n, b->data)) << type << " " << k;
      }
    }
    if (type == "BF16") EXPECT_TRUE(ReadFile(o.out) == ReadFile(dir + "gemma4-quant-s-bf16.gguf"));
  }
}

TEST(GgufConvertTest, PlanFallbacksAndRefusals) {
  // Rows of 64: k-quants do not fit. Q6_K falls back to Q8_0 as llama-quantize does; Q4_K_M's
  // Q4_K would fall back to Q5_0, which runtime/quant does not write.
  const std::vector<MatrixInfo> small = {{"token_embd.weight", 64}, {"blk.0.attn_q.weight", 64}};
  auto q6 = QuantizationPlan("Q6_K", small);
  ASSERT_TRUE(q6.ok()) << q6.status();
  EXPECT_EQ((*q6)[0].second, GgmlType::kQ8_0);
  EXPECT_EQ((*q6)[1].second, GgmlType::kQ8_0);
  auto q4 = QuantizationPlan("Q4_K_M", small);
  ASSERT_FALSE(q4.ok());
  EXPECT_NE(q4.status().message().find("blk.0.attn_q.weight: llama-quantize would write Q5_0"),
            std::string::npos)
      << q4.status();
  // Rows of 48: not even a 32-block: F16.
  auto q8 = QuantizationPlan("Q8_0", {{"blk.0.ffn_up.weight", 48}});
  ASSERT_TRUE(q8.ok());
  EXPECT_EQ((*q8)[0].second, GgmlType::kF16);
  EXPECT_FALSE(QuantizationPlan("Q3_K_M", small).ok());
  EXPECT_EQ(*LlamaFileType("Q4_K_M"), 15u);
  EXPECT_EQ(*LlamaFileType("BF16"), 32u);
}

TEST(GgufConvertTest, SizeLabels) {
  EXPECT_EQ(SizeLabel(261942), "262K");
  EXPECT_EQ(SizeLabel(505664), "506K");
  EXPECT_EQ(SizeLabel(3800000), "3.8M");
  EXPECT_EQ(SizeLabel(11959730224ull), "12B");
  EXPECT_EQ(SizeLabel(1500), "1.5K");
}

TEST(GgufConvertTest, Errors) {
  GgufConvertOptions o = TinyOptions("Q9_9");
  o.out = Tmp("x.gguf");
  absl::Status s = ConvertToGguf(o);
  EXPECT_NE(s.message().find("unknown GGUF file type 'Q9_9'"), std::string::npos) << s;
  o = TinyOptions("F32");
  o.model_dir = "/nonexistent";
  o.out = Tmp("x.gguf");
  EXPECT_FALSE(ConvertToGguf(o).ok());
  o = TinyOptions("F32");
  o.out = "/nonexistent/dir/x.gguf";
  EXPECT_FALSE(ConvertToGguf(o).ok());
}

}  // namespace
}  // namespace tessera::tools
