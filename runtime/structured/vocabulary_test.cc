// The token-bytes table and trie on Gemma 4's real vocabulary, and on a hand-made one.
#include "runtime/structured/vocabulary.h"

#include <set>

#include "gtest/gtest.h"
#include "runtime/prompt/tokenizer.h"
#include "testdata/testdata.h"

namespace tessera::runtime::structured {
namespace {

// Every token is found by walking its bytes down the trie, and every trie token lies on its path.
void ExpectTrieIsConsistent(const Vocabulary& v) {
  const TokenTrie& t = v.trie();
  std::vector<std::string> path;
  std::string prefix;
  int tokens_seen = 0;
  for (int i = 0; i < t.num_nodes(); ++i) {
    const int d = t.depth[i];
    ASSERT_GE(d, 1);
    ASSERT_LE(static_cast<size_t>(d), prefix.size() + 1) << i;
    prefix.resize(d - 1);
    prefix.push_back(static_cast<char>(t.byte[i]));
    ASSERT_GT(t.end[i], i);
    if (i + 1 < t.num_nodes() && i + 1 < t.end[i]) {
      ASSERT_EQ(t.depth[i + 1], d + 1);
    }
    for (int k = t.token_begin[i]; k < t.token_begin[i + 1]; ++k) {
      ASSERT_EQ(v.TokenBytes(t.tokens[k]), prefix) << "node " << i;
      ++tokens_seen;
    }
  }
  int ordinary = 0;
  for (int32_t id = 0; id < v.size(); ++id) ordinary += !v.IsExcluded(id);
  EXPECT_EQ(tokens_seen, ordinary);
}

TEST(VocabularyTest, HandMadeVocabulary) {
  auto v = Vocabulary::FromTokenBytes({"", "a", "ab", "b", "ab", "abc", "", "\xC3"},
                                      {{0, "<eos>"}, {6, "<|turn>"}});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE((*v)->IsExcluded(0));
  EXPECT_TRUE((*v)->IsExcluded(6));
  EXPECT_FALSE((*v)->IsExcluded(4));
  EXPECT_EQ((*v)->ExcludedTokenId("<|turn>"), 6);
  EXPECT_EQ((*v)->ExcludedTokenId("a"), std::nullopt);
  EXPECT_EQ((*v)->max_token_bytes(), 3);
  // Nodes: a, ab, abc, b, \xC3.
  EXPECT_EQ((*v)->trie().num_nodes(), 5);
  ExpectTrieIsConsistent(**v);
}

TEST(VocabularyTest, Gemma4) {
  auto tok = Tokenizer::FromFile(
      tessera::testing::RunfilePath("third_party/tokenizer/gemma4/tokenizer.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto v = Vocabulary::FromTokenizer(**tok);
  ASSERT_TRUE(v.ok()) << v.status();
  const Vocabulary& vocab = **v;
  EXPECT_EQ(vocab.size(), 262144);
  // Control tokens and Gemma's reserved placeholders are excluded; whitespace runs and HTML tags
  // (added, not special) are ordinary text.
  for (const char* name : {"<eos>", "<bos>", "<pad>", "<|turn>", "<turn|>", "<|think|>",
                           "<unused0>", "<unused6233>", "<mask>", "[multimodal]"}) {
    auto id = (*tok)->TokenId(name);
    ASSERT_TRUE(id.has_value()) << name;
    EXPECT_TRUE(vocab.IsExcluded(*id)) << name;
  }
  EXPECT_EQ(vocab.ExcludedTokenId("<turn|>"), 106);
  for (const char* name : {"<table>", "</code>"}) {
    auto id = (*tok)->TokenId(name);
    ASSERT_TRUE(id.has_value()) << name;
    EXPECT_EQ(vocab.TokenBytes(*id), name);
  }
  // U+2581 decodes to a space; byte fallback tokens are single bytes.
  EXPECT_EQ(vocab.TokenBytes(*(*tok)->TokenId("\xE2\x96\x81Hello")), " Hello");
  EXPECT_EQ(vocab.TokenBytes(*(*tok)->TokenId("<0x0A>")), "\n");
  EXPECT_EQ(vocab.TokenBytes(*(*tok)->TokenId("<0xC3>")), "\xC3");
  EXPECT_EQ(vocab.TokenBytes(*(*tok)->TokenId("\xE2\x96\x81\xE2\x96\x81")), "  ");
  EXPECT_GE(vocab.max_token_bytes(), 16);
  EXPECT_LT(vocab.num_excluded(), 6500);
  ExpectTrieIsConsistent(vocab);
}

}  // namespace
}  // namespace tessera::runtime::structured
