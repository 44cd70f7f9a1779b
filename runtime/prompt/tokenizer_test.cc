#include "runtime/prompt/tokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// A small Gemma-shaped tokenizer.json: Replace ' ' -> U+2581, Split on ' ' (a no-op after it, as in
// Gemma's file), BPE with byte fallback, and Gemma's decoder. Ids: 0 <pad>, 1 <unk>, 2..257 the
// byte tokens <0x00>..<0xFF>, then `tokens`; merges as given.
json SmallTokenizer(const std::vector<std::string>& tokens,
                    const std::vector<std::pair<std::string, std::string>>& merges,
                    bool byte_fallback = true) {
  json vocab = json::object();
  vocab["<pad>"] = 0;
  vocab["<unk>"] = 1;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 2 + b;
  }
  int next = 258;
  for (const std::string& t : tokens) vocab[t] = next++;
  json merge_list = json::array();
  for (const auto& [a, b] : merges) merge_list.push_back({a, b});
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 0}, {"content", "<pad>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}},
      {"pre_tokenizer",
       {{"type", "Split"},
        {"pattern", {{"String", " "}}},
        {"behavior", "MergedWithPrevious"},
        {"invert", false}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", byte_fallback},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
}

std::unique_ptr<Tokenizer> Load(const json& j) {
  auto tokenizer = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

int32_t Id(const Tokenizer& t, const std::string& token) {
  auto id = t.TokenId(token);
  EXPECT_TRUE(id.has_value()) << token;
  return id.value_or(-1);
}

TEST(TokenizerTest, MergesApplyByRankNotByPosition) {
  // b+c has the best rank, so "abc" goes a|bc -> abc even though a+b comes first in the text.
  auto t = Load(
      SmallTokenizer({"a", "b", "c", "ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}, {"a", "bc"}}));
  EXPECT_THAT(t->Encode("abc"), ElementsAre(Id(*t, "abc")));
  EXPECT_THAT(t->Encode("abab"), ElementsAre(Id(*t, "ab"), Id(*t, "ab")));
  // Without a merge joining "ab" and "c", the result is two tokens, chosen by rank: bc first.
  auto u = Load(SmallTokenizer({"a", "b", "c", "ab", "bc"}, {{"b", "c"}, {"a", "b"}}));
  EXPECT_THAT(u->Encode("abc"), ElementsAre(Id(*u, "a"), Id(*u, "bc")));
  auto v = Load(SmallTokenizer({"a", "b", "c", "ab", "bc"}, {{"a", "b"}, {"b", "c"}}));
  EXPECT_THAT(v->Encode("abc"), ElementsAre(Id(*v, "ab"), Id(*v, "c")));
}

TEST(TokenizerTest, EqualRanksMergeLeftmostFirst) {
  auto t = Load(SmallTokenizer({"a", "aa"}, {{"a", "a"}}));
  EXPECT_THAT(t->Encode("aaa"), ElementsAre(Id(*t, "aa"), Id(*t, "a")));
  EXPECT_THAT(t->Encode("aaaa"), ElementsAre(Id(*t, "aa"), Id(*t, "aa")));
}

TEST(TokenizerTest, SpacesBecomeMetaspaceAndDecodeBack) {
  auto t = Load(SmallTokenizer({"\u2581", "h", "i", "\u2581h", "\u2581hi"},
                               {{"\u2581", "h"}, {"\u2581h", "i"}}));
  const std::vector<int32_t> ids = t->Encode(" hi hi");
  EXPECT_THAT(ids, ElementsAre(Id(*t, "\u2581hi"), Id(*t, "\u2581hi")));
  EXPECT_EQ(t->Decode(ids), " hi hi");
  EXPECT_EQ(t->TokenText(ids[0]), "\u2581hi");
}

TEST(TokenizerTest, ByteFallbackForCharactersOutsideTheVocabulary) {
  auto t = Load(SmallTokenizer({"a"}, {}));
  // U+00E9 is C3 A9 in UTF-8; <0xNN> has id 2 + NN.
  EXPECT_THAT(t->Encode("a\xC3\xA9"), ElementsAre(Id(*t, "a"), 2 + 0xC3, 2 + 0xA9));
  EXPECT_EQ(t->Decode(t->Encode("a\xC3\xA9")), "a\xC3\xA9");
}

TEST(TokenizerTest, UnknownCharactersFuseIntoOneUnkWithoutByteFallback) {
  auto t = Load(SmallTokenizer({"a"}, {}, /*byte_fallback=*/false));
  EXPECT_THAT(t->Encode("xya\xC3\xA9z"), ElementsAre(1, Id(*t, "a"), 1));
}

TEST(TokenizerTest, InvalidUtf8FallsBackToBytesWithoutCrashing) {
  auto t = Load(SmallTokenizer({"a"}, {}));
  // A lone continuation byte, a truncated 3-byte sequence, an overlong encoding and 0xFF.
  const std::string bad = std::string("a\x80") + "\xE4\xBD" + "a\xC0\xAF\xFF";
  EXPECT_THAT(t->Encode(bad), ElementsAre(Id(*t, "a"), 2 + 0x80, 2 + 0xE4, 2 + 0xBD, Id(*t, "a"),
                                          2 + 0xC0, 2 + 0xAF, 2 + 0xFF));
}

TEST(TokenizerTest, AddedTokensMatchFirstLeftmostLongest) {
  json j = SmallTokenizer({"<", ">", "s", "t"}, {});
  j["model"]["vocab"]["<s>"] = 500;
  j["model"]["vocab"]["<s><t>"] = 501;
  j["added_tokens"].push_back({{"id", 500}, {"content", "<s>"}, {"special", true}});
  j["added_tokens"].push_back({{"id", 501}, {"content", "<s><t>"}, {"special", false}});
  auto t = Load(j);
  EXPECT_THAT(t->Encode("s<s><t><s>t"), ElementsAre(Id(*t, "s"), 501, 500, Id(*t, "t")));
  EXPECT_TRUE(t->IsSpecial(500));
  EXPECT_FALSE(t->IsSpecial(501));
  EXPECT_EQ(t->Decode({500, 501}), "<s><s><t>");
  EXPECT_EQ(t->Decode({500, 501}, /*skip_special=*/true), "<s><t>");
}

TEST(TokenizerTest, AddedTokenStripsWhitespaceWhenAsked) {
  json j = SmallTokenizer({"\u2581", "x"}, {});
  j["added_tokens"].push_back(
      {{"id", 600}, {"content", "<m>"}, {"lstrip", true}, {"rstrip", true}, {"special", true}});
  auto t = Load(j);
  EXPECT_THAT(t->Encode("x  <m> \tx"), ElementsAre(Id(*t, "x"), 600, Id(*t, "x")));
  EXPECT_EQ(t->vocab_size(), 601);
}

TEST(TokenizerTest, DecodeHandlesByteRunsLikeHuggingFace) {
  auto t = Load(SmallTokenizer({"a"}, {}));
  const int32_t a = Id(*t, "a");
  // A valid run becomes its text; a run that is not valid UTF-8 as a whole becomes one U+FFFD per
  // byte token (HF decoders/byte_fallback.rs), even when a prefix of it is valid.
  EXPECT_EQ(t->Decode({2 + 0xE4, 2 + 0xBD, 2 + 0xA0, a}),
            "\xE4\xBD\xA0"
            "a");
  EXPECT_EQ(t->Decode({2 + 0x41, 2 + 0xE4, 2 + 0xBD, a}),
            std::string(kReplacement) + kReplacement + kReplacement + "a");
  EXPECT_EQ(t->Decode({a, 2 + 0xFF}), std::string("a") + kReplacement);
  // Out-of-range ids are dropped, as HF does.
  EXPECT_EQ(t->Decode({-5, a, 1 << 20}), "a");
  EXPECT_EQ(t->TokenText(1 << 20), "");
}

TEST(TokenizerTest, RefusesWhatItDoesNotImplement) {
  const auto error = [](const json& j) {
    auto t = Tokenizer::FromJson(j.dump());
    EXPECT_FALSE(t.ok());
    return t.ok() ? std::string() : std::string(t.status().message());
  };
  json j = SmallTokenizer({"a"}, {});
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_THAT(error(j), HasSubstr("normalizer type \"NFKC\""));
  j = SmallTokenizer({"a"}, {});
  j["normalizer"]["pattern"] = {{"Regex", "\\s+"}};
  EXPECT_THAT(error(j), HasSubstr("Regex"));
  j = SmallTokenizer({"a"}, {});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}};
  EXPECT_THAT(error(j), HasSubstr("pre_tokenizer type \"ByteLevel\""));
  j = SmallTokenizer({"a"}, {});
  j["model"]["type"] = "WordPiece";
  EXPECT_THAT(error(j), HasSubstr("model type \"WordPiece\""));
  j = SmallTokenizer({"a"}, {});
  j["decoder"] = {{"type", "Metaspace"}};
  EXPECT_THAT(error(j), HasSubstr("decoder type \"Metaspace\""));
  j = SmallTokenizer({"a"}, {});
  j["decoder"] = nullptr;
  EXPECT_THAT(error(j), HasSubstr("no decoder"));
  j = SmallTokenizer({"a"}, {{"a", "q"}});
  EXPECT_THAT(error(j), HasSubstr("not in model.vocab"));
  j = SmallTokenizer({"a"}, {});
  j["added_tokens"].push_back({{"id", 700}, {"content", "<w>"}, {"single_word", true}});
  EXPECT_THAT(error(j), HasSubstr("single_word"));
  j = SmallTokenizer({"a"}, {}, /*byte_fallback=*/false);
  j["model"].erase("unk_token");
  EXPECT_THAT(error(j), HasSubstr("neither an unk_token nor byte_fallback"));
  EXPECT_THAT(error(json::array()), HasSubstr("not an object"));
  // Found by tests/fuzz/tokenizer_fuzz.cc: a field of the wrong type is an error, not an exception.
  j = SmallTokenizer({"a"}, {});
  j["normalizer"]["content"] = 2;
  EXPECT_THAT(error(j), HasSubstr("\"content\" must be a string"));
  j = SmallTokenizer({"a"}, {});
  j["added_tokens"][0]["special"] = "yes";
  EXPECT_THAT(error(j), HasSubstr("\"special\" must be a boolean"));
  j = SmallTokenizer({"a"}, {});
  j["model"]["vocab"]["b"] = 1.5;
  EXPECT_THAT(error(j), HasSubstr("is not an integer id"));
  auto t = Tokenizer::FromJson("{\"model\": ");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("not valid JSON"));
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/tokenizer.json"));
}

TEST(TokenizerTest, ByteTokensAreRecognisedAsHuggingFaceDoes) {
  uint8_t byte = 0;
  EXPECT_TRUE(ParseByteToken("<0x0A>", &byte));
  EXPECT_EQ(byte, 0x0A);
  EXPECT_TRUE(ParseByteToken("<0xff>", &byte));
  EXPECT_EQ(byte, 0xFF);
  EXPECT_TRUE(ParseByteToken("<0x+F>", &byte));  // u8::from_str_radix("+F", 16) == 15
  EXPECT_EQ(byte, 0x0F);
  EXPECT_FALSE(ParseByteToken("<0x-F>", &byte));
  EXPECT_FALSE(ParseByteToken("<0xG0>", &byte));
  EXPECT_FALSE(ParseByteToken("<0x0A", &byte));
  EXPECT_FALSE(ParseByteToken("<0x0AB>", &byte));
  EXPECT_FALSE(ParseByteToken("<1x0A>", &byte));
}

TEST(TokenizerTest, AcceptsLegacyStringMerges) {
  json j = SmallTokenizer({"a", "b", "ab"}, {});
  j["model"]["merges"] = json::array({"a b"});
  auto t = Load(j);
  EXPECT_THAT(t->Encode("ab"), ElementsAre(Id(*t, "ab")));
}

// The real vocabulary: Gemma 4's file derived by third_party/tokenizer/derive_gemma4_tokenizer.js.
class Gemma4TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = Tokenizer::FromFile("third_party/tokenizer/gemma4/tokenizer.json");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  static const Tokenizer* tokenizer_;
};
const Tokenizer* Gemma4TokenizerTest::tokenizer_ = nullptr;

TEST_F(Gemma4TokenizerTest, ControlTokensHaveGemma4Ids) {
  const std::pair<const char*, int32_t> kControl[] = {
      {"<pad>", 0},         {"<eos>", 1},         {"<bos>", 2},          {"<|think|>", 98},
      {"<|channel>", 100},  {"<channel|>", 101},  {"<|turn>", 105},      {"<turn|>", 106},
      {"<|image>", 255999}, {"<|audio>", 256000}, {"<|image|>", 258880}, {"<|audio|>", 258881},
      {"<image|>", 258882}, {"<audio|>", 258883}, {"<|video|>", 258884},
  };
  for (const auto& [text, id] : kControl) {
    EXPECT_EQ(tokenizer_->TokenId(text), id) << text;
    EXPECT_EQ(tokenizer_->TokenText(id), text);
    EXPECT_TRUE(tokenizer_->IsSpecial(id)) << text;
    // Written in the text, each is matched as the control token itself.
    EXPECT_THAT(tokenizer_->Encode(text), ElementsAre(id)) << text;
  }
  EXPECT_EQ(tokenizer_->vocab_size(), 262144);
  // Gemma 3's names for those ids are gone and encode as ordinary text.
  EXPECT_FALSE(tokenizer_->TokenId("<start_of_turn>").has_value());
  EXPECT_GT(tokenizer_->Encode("<start_of_turn>").size(), 1u);
}

TEST_F(Gemma4TokenizerTest, ChatTurnEncodesAroundControlTokens) {
  const std::vector<int32_t> ids =
      tokenizer_->Encode("<|turn>user\nHello<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
  ASSERT_GE(ids.size(), 8u);
  EXPECT_EQ(ids.front(), 105);
  EXPECT_EQ(ids.back(), 101);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 105), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 106), 1);
  EXPECT_EQ(tokenizer_->Decode(ids),
            "<|turn>user\nHello<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
  EXPECT_EQ(tokenizer_->Decode(ids, /*skip_special=*/true), "user\nHello\nmodel\nthought\n");
}

TEST_F(Gemma4TokenizerTest, InvalidUtf8RoundTripsThroughByteTokens) {
  const std::string bad = "ok \xFF\xFE tail \xE2\x82 x \xED\xA0\x80";
  const std::vector<int32_t> ids = tokenizer_->Encode(bad);
  uint8_t byte;
  int byte_tokens = 0;
  for (int32_t id : ids) byte_tokens += ParseByteToken(tokenizer_->TokenText(id), &byte);
  EXPECT_EQ(byte_tokens, 7);
  // Invalid runs decode to U+FFFD, one per byte token, and the result is valid UTF-8 again.
  EXPECT_EQ(tokenizer_->Decode(ids), std::string("ok ") + kReplacement + kReplacement + " tail " +
                                         kReplacement + kReplacement + " x " + kReplacement +
                                         kReplacement + kReplacement);
}

// Independent of the tokenizer's own check: nlohmann's UTF-8 validation in dump(), told to replace
// invalid bytes, changes the text exactly when it is not valid UTF-8.
bool IsValidUtf8ForTest(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace) ==
         json(s).dump(-1, ' ', false, json::error_handler_t::ignore);
}

TEST_F(Gemma4TokenizerTest, IncrementalDecodeConcatenatesToDecode) {
  std::mt19937 rng(1234);
  // Ids from real text, with byte tokens and specials mixed in at random, and random ids.
  const std::vector<int32_t> text = tokenizer_->Encode(
      "Streaming 日本語 and emoji 👩‍👩‍👧 with \xF0\x9F rare 𓀀 "
      "chars\n<|turn>model\n");
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int32_t> ids;
    const int n = 1 + rng() % 40;
    for (int k = 0; k < n; ++k) {
      switch (rng() % 4) {
        case 0:
          ids.push_back(text[rng() % text.size()]);
          break;
        case 1:
          ids.push_back(tokenizer_->TokenId("<0xE6>").value() + rng() % 32);
          break;
        case 2:
          ids.push_back(static_cast<int32_t>(rng() % 262144));
          break;
        default:
          ids.push_back(rng() % 2 ? 106 : 3);
          break;
      }
    }
    for (bool skip : {false, true}) {
      IncrementalDecoder decoder(tokenizer_, skip);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string delta = decoder.Push(id);
        ASSERT_TRUE(IsValidUtf8ForTest(delta));
        streamed += delta;
      }
      streamed += decoder.Flush();
      ASSERT_EQ(streamed, tokenizer_->Decode(ids, skip)) << "trial " << trial;
    }
  }
}

// Skipping special tokens but keeping the markup the output parser reads (<|channel> 100,
// <channel|> 101): the kept ones appear verbatim, in place, byte runs before them completed.
TEST_F(Gemma4TokenizerTest, IncrementalDecodeKeepsChosenSpecialTokens) {
  std::vector<int32_t> ids = tokenizer_->Encode("<|channel>thought\nhm 𓀀<channel|>Yes<turn|>");
  ids.insert(ids.begin(), 2);  // <bos>
  IncrementalDecoder decoder(tokenizer_, /*skip_special=*/true, {101, 100});
  std::string streamed;
  for (int32_t id : ids) streamed += decoder.Push(id);
  streamed += decoder.Flush();
  EXPECT_EQ(streamed, "<|channel>thought\nhm 𓀀<channel|>Yes");
  // The same ids with nothing kept: Decode's skip_special.
  IncrementalDecoder plain(tokenizer_, /*skip_special=*/true);
  std::string skipped;
  for (int32_t id : ids) skipped += plain.Push(id);
  EXPECT_EQ(skipped + plain.Flush(), tokenizer_->Decode(ids, /*skip_special=*/true));
}

TEST_F(Gemma4TokenizerTest, IncrementalDecodeHoldsBackOnlyByteRuns) {
  const std::vector<int32_t> ids = tokenizer_->Encode("Hi 𓀀!");  // 𓀀 is four byte tokens
  IncrementalDecoder decoder(tokenizer_);
  std::vector<std::string> deltas;
  for (int32_t id : ids) deltas.push_back(decoder.Push(id));
  EXPECT_EQ(decoder.Flush(), "");
  std::string all;
  for (const std::string& d : deltas) all += d;
  EXPECT_EQ(all, "Hi 𓀀!");
  EXPECT_EQ(deltas.back(), "𓀀!");
}

}  // namespace
}  // namespace tessera::runtime
