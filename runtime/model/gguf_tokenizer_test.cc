#include "runtime/model/gguf_tokenizer.h"

#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/model/gguf_writer.h"
#include "runtime/prompt/chat_template.h"
#include "runtime/prompt/tokenizer.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string TinyDir() { return tessera::testing::FixturesDir() + "/gguf/gemma4-tiny"; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Tokenizer> FromGguf(const GgufFile& f) {
  auto json = GgufTokenizerJson(f);
  EXPECT_TRUE(json.ok()) << json.status();
  if (!json.ok()) return nullptr;
  auto t = Tokenizer::FromJson(*json);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

// Texts over the fixture vocabulary's characters, its special tokens, bytes outside it and
// invalid UTF-8.
std::vector<std::string> Prompts(const Tokenizer& ref) {
  std::vector<std::string> texts = {
      "",
      " ",
      "hello world",
      "  two  spaces and\nnewlines\n\n\nhere ",
      "<bos><|turn>user\nWhat is in this image? <|image><|image|><|image|><image|><turn|>\n"
      "<|turn>model\n<|channel>thought\n<channel|>It is a cat.<turn|>",
      "<|audio><|audio|><audio|> and <|video|>",
      "caf\xC3\xA9 \xE2\x82\xAC 100 \xF0\x9F\x98\x80 emoji",
      "bad \xFF\xFE bytes \xC3",
      "<unk><mask><pad><eos>",
      "<|turn<turn|>|>",
  };
  std::mt19937 rng(7);
  for (int k = 0; k < 200; ++k) {
    std::string s;
    const int len = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) {
      std::string piece = ref.TokenText(static_cast<int32_t>(rng() % ref.vocab_size()));
      for (size_t p; (p = piece.find("\xE2\x96\x81")) != std::string::npos;) {
        piece.replace(p, 3, " ");
      }
      uint8_t byte;
      if (ParseByteToken(piece, &byte)) piece = std::string(1, static_cast<char>(byte));
      s += piece;
    }
    texts.push_back(s);
  }
  return texts;
}

TEST(GgufTokenizerTest, ConvertersMetadataTokenizesLikeTheTokenizerJson) {
  auto f = GgufFile::Open(TinyDir() + "/gemma4-tiny-f32.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  auto ref = Tokenizer::FromFile(TinyDir() + "/tokenizer.json");
  ASSERT_TRUE(ref.ok()) << ref.status();
  std::unique_ptr<Tokenizer> got = FromGguf(**f);
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(got->vocab_size(), (*ref)->vocab_size());
  for (int32_t id = 0; id < got->vocab_size(); ++id) {
    ASSERT_EQ(got->TokenText(id), (*ref)->TokenText(id)) << id;
    // <|channel> and <channel|> are USER_DEFINED in the file; special again here.
    ASSERT_EQ(got->IsSpecial(id), (*ref)->IsSpecial(id)) << id << " " << got->TokenText(id);
    ASSERT_EQ(got->TokenId(got->TokenText(id)), (*ref)->TokenId((*ref)->TokenText(id)));
  }
  for (const std::string& text : Prompts(**ref)) {
    const std::vector<int32_t> ids = (*ref)->Encode(text);
    EXPECT_EQ(got->Encode(text), ids) << text;
    EXPECT_EQ(got->Decode(ids), (*ref)->Decode(ids)) << text;
    EXPECT_EQ(got->Decode(ids, true), (*ref)->Decode(ids, true)) << text;
  }
}

TEST(GgufTokenizerTest, ChatTemplateIsTheOneTesseraRenders) {
  auto f = GgufFile::Open(TinyDir() + "/gemma4-tiny-bf16.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  auto t = GgufChatTemplate(**f);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, ReadFile(TinyDir() + "/chat_template.jinja"));
  EXPECT_TRUE(CheckChatTemplateSupported(*t).ok());
}

// Our writer's tokenizer metadata for the fixture's tokenizer files equals what llama.cpp's
// converter wrote, key by key, in the same order.
TEST(GgufTokenizerTest, WriterMatchesTheConverter) {
  auto conv = GgufFile::Open(TinyDir() + "/gemma4-tiny-f32.gguf");
  ASSERT_TRUE(conv.ok()) << conv.status();
  GgufWriter w;
  HfTokenizerFiles files;
  files.tokenizer_json = ReadFile(TinyDir() + "/tokenizer.json");
  files.tokenizer_config_json = ReadFile(TinyDir() + "/tokenizer_config.json");
  files.chat_template = ReadFile(TinyDir() + "/chat_template.jinja");
  ASSERT_TRUE(AddGgufTokenizerMetadata(files, &w).ok());
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  auto ours = GgufFile::Parse(*bytes, "ours.gguf");
  ASSERT_TRUE(ours.ok()) << ours.status();
  std::vector<std::string_view> conv_keys;
  for (std::string_view k : (*conv)->keys()) {
    if (k.rfind("tokenizer.", 0) == 0) conv_keys.push_back(k);
  }
  EXPECT_EQ((*ours)->keys(), conv_keys);
  for (std::string_view k : conv_keys) {
    const GgufValue* a = (*ours)->Find(k);
    const GgufValue* b = (*conv)->Find(k);
    ASSERT_NE(a, nullptr) << k;
    ASSERT_EQ(a->TypeString(), b->TypeString()) << k;
    ASSERT_EQ(a->count, b->count) << k;
    EXPECT_EQ(a->strings, b->strings) << k;
    if (a->data != nullptr) {
      const size_t n = a->count * GgufScalarSize(a->is_array() ? a->element_type : a->type);
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(a->data), n),
                std::string(reinterpret_cast<const char*>(b->data), n))
          << k;
    }
  }
}

// Gemma 4's real vocabulary through our writer and back: identical except where the format loses
// information (HF's non-special added tokens inside the base vocabulary become NORMAL; see the
// header), which the texts here avoid.
TEST(GgufTokenizerTest, RealVocabularyRoundTrip) {
  const std::string json = ReadFile("third_party/tokenizer/gemma4/tokenizer.json");
  ASSERT_FALSE(json.empty());
  auto ref = Tokenizer::FromJson(json);
  ASSERT_TRUE(ref.ok()) << ref.status();
  GgufWriter w;
  HfTokenizerFiles files;
  files.tokenizer_json = json;
  ASSERT_TRUE(AddGgufTokenizerMetadata(files, &w).ok());
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  auto f = GgufFile::Parse(*bytes, "gemma4-vocab.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  std::unique_ptr<Tokenizer> got = FromGguf(**f);
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(got->vocab_size(), (*ref)->vocab_size());
  for (const int32_t id : {0, 1, 2, 98, 100, 101, 105, 106, 255999, 256000, 258880, 258884}) {
    EXPECT_EQ(got->TokenText(id), (*ref)->TokenText(id)) << id;
    EXPECT_EQ(got->IsSpecial(id), (*ref)->IsSpecial(id)) << id;
  }
  const std::vector<std::string> texts = {
      "Hello, world! How are you today?",
      "<bos><|turn>user\nDescribe <|image><|image|><image|> in one line.<turn|>\n<|turn>model\n",
      "Les \xC3\xA9l\xC3\xA8ves \xC3\xA9tudient. \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE"
      "\xE6\x96\x87\xE7\xAB\xA0 \xF0\x9F\x98\x80",
      "def f(x):\n  return x * 2  # comment",
      "numbers 1234567890 and symbols #$%&*()[]{}",
  };
  for (const std::string& text : texts) {
    EXPECT_EQ(got->Encode(text), (*ref)->Encode(text)) << text;
  }
  // The parity corpus: every text whose reference encoding uses no non-special added token
  // encodes identically; the others are counted (docs/gguf.md quotes the count).
  const size_t begin = json.find("\"added_tokens\"");
  const size_t end = json.find("\"normalizer\"", begin);
  ASSERT_NE(end, std::string::npos);
  std::string added_text = "{" + json.substr(begin, end - begin);
  added_text.erase(added_text.find_last_of(',')) += "}";
  const nlohmann::json added = nlohmann::json::parse(added_text)["added_tokens"];
  std::set<int32_t> lost;
  for (const auto& t : added) {
    if (!t["special"].get<bool>()) lost.insert(t["id"].get<int32_t>());
  }
  EXPECT_GT(lost.size(), 6000u);
  const nlohmann::json corpus =
      nlohmann::json::parse(ReadFile("third_party/tokenizer/testdata/parity_corpus.json"));
  int differ = 0, with_lost = 0;
  for (const auto& item : corpus) {
    const std::string text = item.get<std::string>();
    const std::vector<int32_t> want = (*ref)->Encode(text);
    bool uses_lost = false;
    for (int32_t id : want) uses_lost = uses_lost || lost.count(id) != 0;
    with_lost += uses_lost;
    if (!uses_lost) {
      EXPECT_EQ(got->Encode(text), want) << text;
    } else {
      differ += got->Encode(text) != want;
    }
  }
  std::printf("parity corpus: %zu texts, %d use non-special added tokens, %d of those differ\n",
              corpus.size(), with_lost, differ);
}

TEST(GgufTokenizerTest, ErrorsNameTheKey) {
  struct Case {
    std::function<void(GgufWriter&)> build;
    const char* expect;
  };
  std::vector<Case> cases = {
      {[](GgufWriter& w) {
         w.AddString("tokenizer.ggml.model", "llama");
         w.AddStringArray("tokenizer.ggml.tokens", {"a"});
       },
       "tokenizer.ggml.model is 'llama'"},
      {[](GgufWriter& w) {
         w.AddString("tokenizer.ggml.model", "gemma4");
         w.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
         w.AddInt32Array("tokenizer.ggml.token_type", {1});
       },
       "token_type has 1 entries for 2 tokens"},
      {[](GgufWriter& w) {
         w.AddString("tokenizer.ggml.model", "gemma4");
         w.AddStringArray("tokenizer.ggml.tokens", {"a", "\xFF"});
       },
       "tokens[1] is not valid UTF-8"},
      {[](GgufWriter& w) {
         w.AddString("tokenizer.ggml.model", "gemma4");
         w.AddStringArray("tokenizer.ggml.tokens", {"a", "b", "a"});
       },
       "tokens[2] repeats token 0"},
      {[](GgufWriter& w) {
         w.AddString("tokenizer.ggml.model", "gemma4");
         w.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
         w.AddStringArray("tokenizer.ggml.merges", {"ab"});
       },
       "merges[0] is not a UTF-8 pair"},
      {[](GgufWriter& w) {
         w.AddString("tokenizer.ggml.model", "gemma4");
         w.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
         w.AddUint32("tokenizer.ggml.unknown_token_id", 9);
       },
       "unknown_token_id 9 is not a token id"},
  };
  for (const Case& c : cases) {
    GgufWriter w;
    c.build(w);
    auto bytes = w.Serialize();
    ASSERT_TRUE(bytes.ok());
    auto f = GgufFile::Parse(*bytes, "t.gguf");
    ASSERT_TRUE(f.ok());
    auto json = GgufTokenizerJson(**f);
    ASSERT_FALSE(json.ok()) << c.expect;
    EXPECT_NE(json.status().message().find(c.expect), std::string::npos) << json.status();
  }
  GgufWriter none;
  none.AddString("general.architecture", "gemma4");
  const std::string none_bytes = *none.Serialize();
  auto f = GgufFile::Parse(none_bytes, "none.gguf");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(GgufTokenizerJson(**f).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(GgufChatTemplate(**f).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera::runtime
