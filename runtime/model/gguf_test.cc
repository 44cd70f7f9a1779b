#include "runtime/model/gguf.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "gtest/gtest.h"
#include "runtime/model/gguf_writer.h"
#include "runtime/model/safetensors.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string GgufDir() { return tessera::testing::FixturesDir() + "/gguf"; }

// Raw GGUF bytes built field by field, so a test can write what no valid writer would.
class Raw {
 public:
  Raw& U8(uint8_t v) { return Bytes(&v, 1); }
  Raw& U32(uint32_t v) { return Bytes(&v, 4); }
  Raw& U64(uint64_t v) { return Bytes(&v, 8); }
  Raw& F32(float v) { return Bytes(&v, 4); }
  Raw& Str(std::string_view s) {
    U64(s.size());
    out_.append(s.data(), s.size());
    return *this;
  }
  Raw& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    out_.append("GGUF", 4);
    return U32(version).U64(n_tensors).U64(n_kv);
  }
  // A tensor record.
  Raw& Tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) U64(d);
    return U32(type).U64(offset);
  }
  Raw& PadTo(size_t alignment) {
    out_.append((alignment - out_.size() % alignment) % alignment, '\0');
    return *this;
  }
  Raw& Zeros(size_t n) {
    out_.append(n, '\0');
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  Raw& Bytes(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string out_;
};

// One valid file: two metadata entries and one F32 [4, 2] tensor.
Raw ValidRaw() {
  Raw r;
  r.Header(1, 2).Str("general.architecture").U32(8).Str("gemma4");
  r.Str("a.count").U32(4).U32(7);
  r.Tensor("w", {4, 2}, 0, 0).PadTo(32);
  for (int i = 0; i < 8; ++i) r.F32(static_cast<float>(i));
  return r;
}

absl::Status ParseStatus(const std::string& bytes) {
  return GgufFile::Parse(bytes, "test.gguf").status();
}

TEST(GgufTest, ReadsTheConvertersFile) {
  auto f = GgufFile::Open(GgufDir() + "/gemma4-tiny/gemma4-tiny-f32.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->alignment(), 32u);
  EXPECT_EQ((*f)->data_offset() % 32, 0u);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "gemma4");
  EXPECT_EQ(*(*f)->GetInt("gemma4.block_count"), 6);
  EXPECT_EQ(*(*f)->GetIntArray("gemma4.attention.head_count_kv"),
            (std::vector<int64_t>{2, 2, 2, 2, 2, 1}));
  EXPECT_EQ(*(*f)->GetBoolArray("gemma4.attention.sliding_window_pattern"),
            (std::vector<bool>{true, true, true, true, true, false}));
  EXPECT_FLOAT_EQ(*(*f)->GetFloat("gemma4.final_logit_softcapping"), 30.0);
  auto tokens = (*f)->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ((*tokens)->size(), 512u);
  EXPECT_EQ((**tokens)[2], "<bos>");
  EXPECT_EQ((*f)->tensors().size(), 86u);
  // gguf-py pads every tensor, the last one too, to the alignment.
  const GgufTensor& last = (*f)->tensors().back();
  EXPECT_EQ((*f)->data_offset() + last.offset + (last.num_bytes + 31) / 32 * 32, (*f)->file_size());

  // The tensors hold the checkpoint's values: the converter widened the bf16 embedding to f32.
  const GgufTensor* embd = (*f)->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->ne, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(embd->ggml_type(), GgmlType::kF32);
  EXPECT_EQ(embd->ShapeString(), "[64, 512]");
  auto ckpt =
      Checkpoint::OpenFile(tessera::testing::FixturesDir() + "/gemma4-tiny/model.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const TensorView* ref = (*ckpt)->Find("model.language_model.embed_tokens.weight");
  ASSERT_NE(ref, nullptr);
  auto want = ToFloatVector(*ref);
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(want->size(), 64u * 512u);
  std::vector<float> got(want->size());
  std::memcpy(got.data(), embd->data, got.size() * 4);
  EXPECT_EQ(got, *want);

  // rope_freqs: 1 for the 4 rotated pairs of the global layer (0.25 * 32 / 2), 1e30 after.
  const GgufTensor* rf = (*f)->FindTensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  ASSERT_EQ(rf->ne, std::vector<int64_t>{16});
  float freqs[16];
  std::memcpy(freqs, rf->data, sizeof(freqs));
  for (int i = 0; i < 16; ++i) EXPECT_EQ(freqs[i], i < 4 ? 1.0f : 1e30f) << i;
}

TEST(GgufTest, ReadsQuantizedTypes) {
  auto f = GgufFile::Open(GgufDir() + "/gemma4-quant-s/gemma4-quant-s-Q4_K_M.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufTensor* q = (*f)->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ggml_type(), GgmlType::kQ4_K);
  EXPECT_EQ(q->num_bytes, 256u / 256 * 144 * 256);  // 256 rows of one 144-byte block each.
  EXPECT_EQ((*f)->FindTensor("token_embd.weight")->ggml_type(), GgmlType::kQ6_K);
  EXPECT_EQ(GgmlTypeName(GgmlType::kQ6_K), "Q6_K");
  EXPECT_EQ(GgmlTypeName(99), "type 99");
}

TEST(GgufTest, WriterRoundTrip) {
  GgufWriter w;
  w.SetAlignment(64);
  w.AddString("s", "h\xc3\xa9llo");
  w.AddUint32("u32", 4000000000u);
  w.AddInt32("i32", -5);
  w.AddUint64("u64", 1ull << 40);
  w.AddFloat32("f", 0.25f);
  w.AddBool("b", true);
  w.AddStringArray("sa", {"a", "", "b c"});
  w.AddInt32Array("ia", {1, -2, 3});
  w.AddUint32Array("ua", {7});
  w.AddFloat32Array("fa", {1.5f, -2.0f});
  w.AddBoolArray("ba", {false, true});
  std::string q8(34 * 2, '\x01');
  w.AddTensor("q", GgmlType::kQ8_0, {32, 2}, q8);
  w.AddTensor("v", GgmlType::kF32, {3}, std::string(12, '\x02'));
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto f = GgufFile::Parse(*bytes, "rt.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ(*(*f)->GetString("s"), "h\xc3\xa9llo");
  EXPECT_EQ(*(*f)->GetInt("u32"), 4000000000);
  EXPECT_EQ(*(*f)->GetInt("i32"), -5);
  EXPECT_EQ(*(*f)->GetInt("u64"), 1ll << 40);
  EXPECT_EQ(*(*f)->GetFloat("f"), 0.25);
  EXPECT_TRUE(*(*f)->GetBool("b"));
  EXPECT_EQ(**(*f)->GetStringArray("sa"), (std::vector<std::string_view>{"a", "", "b c"}));
  EXPECT_EQ(*(*f)->GetIntArray("ia"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*(*f)->GetIntArray("ua"), std::vector<int64_t>{7});
  EXPECT_EQ(*(*f)->GetFloatArray("fa"), (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(*(*f)->GetBoolArray("ba"), (std::vector<bool>{false, true}));
  EXPECT_EQ((*f)->keys().front(), "general.alignment");
  ASSERT_EQ((*f)->tensors().size(), 2u);
  const GgufTensor* q = (*f)->FindTensor("q");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(q->data), q->num_bytes), q8);
  const GgufTensor* v = (*f)->FindTensor("v");
  EXPECT_EQ(v->offset, 128u);  // 68 bytes of q padded to 64.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data) - reinterpret_cast<uintptr_t>(bytes->data()),
            (*f)->data_offset() + 128);

  // Typed reads name the key and both types.
  auto wrong = (*f)->GetInt("s");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(
      wrong.status().message().find("rt.gguf: metadata s has type string; expected an integer"),
      std::string::npos)
      << wrong.status();
  EXPECT_NE((*f)->GetFloatArray("ia").status().message().find("array of int32"), std::string::npos);
  EXPECT_NE((*f)->GetString("nope").status().message().find("nope is missing"), std::string::npos);

  // A producer that lies about its size fails the write.
  GgufWriter bad;
  bad.AddTensor("x", GgmlType::kF32, {4}, std::string(15, '\0'));
  EXPECT_FALSE(bad.Serialize().ok());
  GgufWriter ragged;
  ragged.AddTensor("x", GgmlType::kQ4_K, {100}, std::string(144, '\0'));
  EXPECT_FALSE(ragged.Serialize().ok());
}

TEST(GgufTest, ValidRawParses) {
  auto f = GgufFile::Parse(ValidRaw().str(), "test.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  float x[8];
  std::memcpy(x, (*f)->FindTensor("w")->data, sizeof(x));
  EXPECT_EQ(x[7], 7.0f);
  EXPECT_EQ((*f)->FindTensor("w")->num_rows(), 2);
}

TEST(GgufTest, EveryTruncationIsAnError) {
  const std::string full = ValidRaw().str();
  for (size_t n = 0; n < full.size(); ++n) {
    absl::Status s = ParseStatus(full.substr(0, n));
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_EQ(s.message().rfind("test.gguf: ", 0), 0u) << s;
  }
}

TEST(GgufTest, BadFilesNameTheProblem) {
  struct Case {
    std::string bytes;
    const char* expect;
  };
  std::vector<Case> cases;
  {
    std::string b = ValidRaw().str();
    b[0] = 'X';
    cases.push_back({b, "not a GGUF file: the magic is 'XGUF'"});
  }
  cases.push_back({Raw().Header(0, 0, 1).str(), "version 1 is not supported"});
  cases.push_back(
      {Raw().Header(0, 0, 0x03000000).str(), "big-endian GGUF files are not supported"});
  cases.push_back({Raw().Header(0, 0, 4).str(), "GGUF version 4 is not supported"});
  cases.push_back(
      {Raw().Header(0, 1ull << 60).str(), "claims 1152921504606846976 metadata entries"});
  cases.push_back({Raw().Header(1ull << 40, 0).str(), "claims 1099511627776 tensors"});
  cases.push_back({Raw().Header(0, 1).U64(1ull << 62).Zeros(16).str(), "ends inside the key"});
  cases.push_back({Raw().Header(0, 1).Str("").U32(4).U32(1).str(), "empty key"});
  cases.push_back(
      {Raw().Header(0, 1).Str("k").U32(13).U32(1).str(), "'k' has an invalid value type 13"});
  cases.push_back({Raw().Header(0, 1).Str("k").U32(8).U64(1000).Zeros(8).str(),
                   "ends inside the string metadata 'k'"});
  cases.push_back(
      {Raw().Header(0, 1).Str("k").U32(9).U32(9).U64(1).Zeros(12).str(), "array of arrays"});
  cases.push_back(
      {Raw().Header(0, 1).Str("k").U32(9).U32(14).U64(1).Zeros(12).str(), "invalid value type 14"});
  cases.push_back({Raw().Header(0, 1).Str("k").U32(9).U32(4).U64(1ull << 61).Zeros(16).str(),
                   "claims 2305843009213693952 elements of 4 bytes"});
  cases.push_back({Raw().Header(0, 1).Str("k").U32(9).U32(8).U64(1ull << 40).Zeros(16).str(),
                   "claims 1099511627776 strings"});
  cases.push_back(
      {Raw().Header(0, 1).Str("k").U32(9).U32(8).U64(2).Str("a").U64(99).Zeros(16).str(),
       "ends inside string 1 of metadata 'k'"});
  cases.push_back({Raw().Header(0, 1).Str("k").U32(7).U8(2).Zeros(12).str(), "'k' is not a bool"});
  cases.push_back({Raw().Header(0, 1).Str("k").U32(9).U32(7).U64(2).U8(1).U8(3).Zeros(12).str(),
                   "element 1 is not a bool"});
  cases.push_back({Raw().Header(0, 2).Str("k").U32(4).U32(1).Str("k").U32(4).U32(1).str(),
                   "duplicate metadata key 'k'"});
  cases.push_back({Raw().Header(0, 1).Str("general.alignment").U32(4).U32(48).str(),
                   "general.alignment 48 is not a power of 2"});
  cases.push_back({Raw().Header(0, 1).Str("general.alignment").U32(4).U32(0).str(),
                   "general.alignment 0 is not a power of 2"});
  cases.push_back({Raw().Header(0, 1).Str("general.alignment").U32(10).U64(32).str(),
                   "general.alignment has type uint64; expected uint32"});
  cases.push_back(
      {Raw().Header(1, 0).Tensor(std::string(64, 'n'), {4}, 0, 0).PadTo(32).Zeros(16).str(),
       "is 64 bytes; the limit is 63"});
  cases.push_back(
      {Raw().Header(2, 0).Tensor("t", {8}, 0, 0).Tensor("t", {8}, 0, 32).PadTo(32).Zeros(64).str(),
       "duplicate tensor name 't'"});
  cases.push_back(
      {Raw().Header(1, 0).Tensor("t", {}, 0, 0).PadTo(32).Zeros(32).str(), "'t' has 0 dimensions"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {1, 1, 1, 1, 1}, 0, 0).PadTo(32).Zeros(32).str(),
                   "'t' has 5 dimensions"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {1ull << 63}, 0, 0).PadTo(32).str(),
                   "dimension 0 is 9223372036854775808, above INT64_MAX"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {1ull << 32, 1ull << 32}, 0, 0).PadTo(32).str(),
                   "more than INT64_MAX elements"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {1ull << 62}, 0, 0).PadTo(32).str(),
                   "larger than INT64_MAX bytes"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {8}, 31, 0).PadTo(32).Zeros(32).str(),
                   "unknown ggml type 31"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {48}, 12, 0).PadTo(32).Zeros(256).str(),
                   "type Q4_K has rows of 48 elements, not a multiple of its block of 256"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {8}, 0, 32).PadTo(32).Zeros(64).str(),
                   "'t' has offset 32, expected 0"});
  cases.push_back(
      {Raw().Header(2, 0).Tensor("a", {4}, 0, 0).Tensor("b", {4}, 0, 16).PadTo(32).Zeros(64).str(),
       "'b' has offset 16, expected 32"});
  cases.push_back({Raw().Header(1, 0).Tensor("t", {8}, 0, 0).PadTo(32).Zeros(31).str(),
                   "'t' (F32 [8], 32 bytes at data offset 0) extends past the end of the file (31 "
                   "bytes of data)"});
  cases.push_back(
      {Raw().Header(1, 0).Tensor("t", {8}, 0, 0).str(), "ends before its data section"});
  {
    // Names with bytes that are not printable are escaped in messages.
    cases.push_back({Raw().Header(0, 2).Str("\x01k").U32(4).U32(1).Str("\x01k").U32(4).U32(1).str(),
                     "duplicate metadata key '\\x01k'"});
  }
  for (const Case& c : cases) {
    absl::Status s = ParseStatus(c.bytes);
    ASSERT_FALSE(s.ok()) << c.expect;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s << "\nwanted: " << c.expect;
  }
}

TEST(GgufTest, OpenErrors) {
  EXPECT_EQ(GgufFile::Open("/nonexistent.gguf").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(GgufFile::Open(GgufDir()).status().code(), absl::StatusCode::kInvalidArgument);
  const std::string empty = ::testing::TempDir() + "/empty.gguf";
  std::ofstream(empty).close();
  auto f = GgufFile::Open(empty);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("empty"), std::string::npos);
  const std::string json = tessera::testing::FixturesDir() + "/gemma4-tiny/config.json";
  auto j = GgufFile::Open(json);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("not a GGUF file"), std::string::npos) << j.status();
}

}  // namespace
}  // namespace tessera::runtime
