#include "runtime/model/safetensors.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string TempDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : "/tmp";
}

// Writes header length + header + data.
std::string WriteRaw(const std::string& name, const std::string& header, const std::string& data) {
  std::string path = TempDir() + "/" + name;
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
  return path;
}

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

TEST(SafetensorsTest, ReadsFixtureCheckpoint) {
  auto ckpt = Checkpoint::Open(tessera::testing::FixturesDir() + "/gemma4-tiny");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const TensorView* emb = (*ckpt)->Find("model.language_model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::kBF16);
  EXPECT_EQ(emb->ShapeString(), "[512, 64]");
  EXPECT_EQ(emb->num_bytes, 512u * 64 * 2);
  EXPECT_EQ((*ckpt)->Find("nope"), nullptr);
  // layer_scalar values were drawn from U(0.5, 1.5).
  auto ls = ToFloatVector(*(*ckpt)->Find("model.language_model.layers.0.layer_scalar"));
  ASSERT_TRUE(ls.ok());
  EXPECT_GT((*ls)[0], 0.5f);
  EXPECT_LT((*ls)[0], 1.5f);
}

TEST(SafetensorsTest, ReadsGoldenIntsAndFloats) {
  auto f =
      SafetensorsFile::Open(tessera::testing::FixturesDir() + "/gemma4-tiny/golden.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  auto ids = ToInt64Vector(*(*f)->Find("mm_input_ids"));
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 41u);
  EXPECT_EQ((*ids)[0], 2);     // BOS.
  EXPECT_EQ((*ids)[13], 501);  // <|image> after BOS and 12 text ids.
  EXPECT_FALSE(ToFloatVector(*(*f)->Find("mm_input_ids")).ok());
}

TEST(SafetensorsTest, DTypeConversions) {
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x0001), 5.9604644775390625e-08f);  // Smallest subnormal.
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // sqrt(3840) = 61.9677 rounds to 62 in bf16 (MODEL.md).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::sqrt(3840.0f))), 62.0f);
  // Ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f);
}

TEST(SafetensorsTest, ValidFileRoundTrip) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  auto path = WriteRaw("ok.safetensors", header, Bytes({1, 2, 3, 4}));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto b = ToFloatVector(*(*f)->Find("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, (std::vector<float>{3, 4}));
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
}

struct BadCase {
  const char* label;
  std::string header;
  std::string data;
  const char* expect;  // Substring of the error.
};

TEST(SafetensorsTest, RejectsBadHeaders) {
  const std::string d8 = Bytes({1, 2});
  std::vector<BadCase> cases = {
      {"not json", "{oops", d8, "not a JSON object"},
      {"dup",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       d8, "'a' appears twice"},
      {"lying shape", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8,
       "needs 12 bytes but data_offsets span 8"},
      {"past end", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8,
       "run past the end"},
      {"gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8, "gap in the data"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       d8, "overlaps"},
      {"trailing", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8, "cover 4 of 8"},
      {"dtype", R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", d8,
       "unsupported dtype 'Q4'"},
      {"negative", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8,
       "non-negative"},
      {"missing", R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", d8, "'shape'"},
      {"huge shape",
       R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8,
       "exceeds the file size"},
  };
  for (const auto& c : cases) {
    auto path = WriteRaw("bad.safetensors", c.header, c.data);
    auto f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << c.label;
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos)
        << c.label << ": " << f.status();
  }
}

TEST(SafetensorsTest, RejectsTruncatedAndOversizedHeader) {
  // A header length pointing past the end of the file.
  std::string path = TempDir() + "/trunc.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    uint64_t n = 1000;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << "{}";
  }
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("runs past the end"), std::string::npos) << f.status();
  {
    std::ofstream out(path, std::ios::binary);
    uint64_t n = 1ull << 40;
    out.write(reinterpret_cast<const char*>(&n), 8);
  }
  f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("exceeds the limit"), std::string::npos) << f.status();
  {
    std::ofstream out(path, std::ios::binary);
    out << "abc";
  }
  f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("too short"), std::string::npos) << f.status();
  EXPECT_EQ(SafetensorsFile::Open(TempDir() + "/absent").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, ShardedCheckpoint) {
  std::string dir = TempDir() + "/sharded";
  std::string mk = "mkdir -p " + dir;
  ASSERT_EQ(std::system(mk.c_str()), 0);
  std::string h1 = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string h2 = R"({"y":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  WriteRaw("sharded/s1.safetensors", h1, Bytes({7}));
  WriteRaw("sharded/s2.safetensors", h2, Bytes({8, 9}));
  {
    std::ofstream idx(dir + "/model.safetensors.index.json");
    idx << R"({"metadata":{},"weight_map":{"x":"s1.safetensors","y":"s2.safetensors"}})";
  }
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->num_files(), 2);
  EXPECT_EQ((*ckpt)->total_bytes(), 12u);
  auto y = ToFloatVector(*(*ckpt)->Find("y"));
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(*y, (std::vector<float>{8, 9}));
  {
    std::ofstream idx(dir + "/model.safetensors.index.json");
    idx << R"({"weight_map":{"x":"s1.safetensors","y":"s1.safetensors"}})";
  }
  auto bad = Checkpoint::Open(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'y' is listed in shard s1.safetensors"), std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace tessera::runtime
