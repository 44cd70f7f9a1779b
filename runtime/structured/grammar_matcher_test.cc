// The matcher on a small synthetic vocabulary: tokens that span several grammar terminals and rule
// boundaries, byte tokens that split UTF-8 characters, special tokens, stop tokens, rollback and
// forking. Every mask is compared with the brute-force mask (each token tried on a copy).
#include "runtime/structured/grammar_matcher.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/structured/gbnf_parser.h"
#include "runtime/structured/regex_parser.h"
#include "runtime/structured/test_util.h"
#include "runtime/structured/token_bitmask.h"

namespace tessera::runtime::structured {
namespace {

using testing::BruteForceMask;
using testing::ByteToken;
using testing::CompileFor;
using ::testing::HasSubstr;
using testing::kEos;
using testing::MaskDifference;
using testing::SmallVocabulary;

std::shared_ptr<const CompiledGrammar> Gbnf(const std::string& text,
                                            std::shared_ptr<const Vocabulary> vocab) {
  auto g = ParseGbnf(text, vocab.get());
  EXPECT_TRUE(g.ok()) << g.status();
  auto c = CompileFor(*g, vocab);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

void ExpectMaskIsExact(const GrammarMatcher& m, const std::string& where) {
  const std::vector<uint64_t> fast = m.NextTokenMask();
  const std::vector<uint64_t> brute = BruteForceMask(m);
  EXPECT_EQ(fast, brute) << where << ": tokens differ: "
                         << ::testing::PrintToString(MaskDifference(fast, brute, m.vocab_size()));
}

// Feeds `tokens` one by one, checking the mask before each and that it allows the token.
void WalkTokens(GrammarMatcher& m, const Vocabulary& v, const std::vector<int32_t>& tokens) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    ExpectMaskIsExact(m, "before token " + std::to_string(i));
    const auto mask = m.NextTokenMask();
    ASSERT_TRUE(BitmaskTest(mask.data(), tokens[i]))
        << "token " << i << " '" << v.TokenBytes(tokens[i]) << "'";
    ASSERT_TRUE(m.AcceptToken(tokens[i]).ok()) << i;
  }
  ExpectMaskIsExact(m, "at the end");
}

int32_t Id(const Vocabulary& v, const std::string& bytes) {
  for (int32_t id = 0; id < v.size(); ++id) {
    if (!v.IsExcluded(id) && v.TokenBytes(id) == bytes && bytes.size() > 1) return id;
  }
  return bytes.size() == 1 ? ByteToken(bytes[0]) : -1;
}

TEST(GrammarMatcherTest, TokensSpanningTerminalsAndRuleBoundaries) {
  auto vocab = SmallVocabulary({"{\"", "\":", "\": ", "\", \"", "\"}", "ab", "1}", "}\n", "\"a"});
  auto g = Gbnf(R"(
root ::= "{" pair ("," ws pair)* "}"
pair ::= str ":" ws (str | num)
str  ::= "\"" [a-z]* "\""
num  ::= [0-9]+
ws   ::= " "?
)",
                vocab);
  GrammarMatcher m(g, {kEos});
  const Vocabulary& v = *vocab;
  WalkTokens(m, v,
             {Id(v, "{\""), Id(v, "ab"), Id(v, "\": "), Id(v, "\"a"), Id(v, "\", \""),
              ByteToken('b'), Id(v, "\":"), Id(v, "1}")});
  EXPECT_TRUE(m.IsAccepting());
  EXPECT_TRUE(m.IsCompleted());
  // "}\n" would need a newline after the object: never allowed.
  const auto mask = m.NextTokenMask();
  EXPECT_FALSE(BitmaskTest(mask.data(), Id(v, "}\n")));
  EXPECT_TRUE(BitmaskTest(mask.data(), kEos));
  ASSERT_TRUE(m.AcceptToken(kEos).ok());
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_EQ(CountAllowed(m.NextTokenMask().data(), m.vocab_size()), 0);
  EXPECT_EQ(m.AcceptToken(ByteToken('x')).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(GrammarMatcherTest, ByteTokensSplitUtf8Characters) {
  auto vocab = SmallVocabulary({"\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC"});  // é, 日本
  auto g = Gbnf(R"(root ::= ("é" | "日本")+)", vocab);
  GrammarMatcher m(g, {kEos});
  // é as its two byte tokens, then 日本 as one token, then 日 byte by byte.
  WalkTokens(
      m, *vocab,
      {ByteToken(0xC3), ByteToken(0xA9), Id(*vocab, "\xE6\x97\xA5\xE6\x9C\xAC"), ByteToken(0xE6),
       ByteToken(0x97), ByteToken(0xA5), ByteToken(0xE6), ByteToken(0x9C), ByteToken(0xAC)});
  EXPECT_TRUE(m.IsAccepting());
  // Mid-character, only the one continuation byte is allowed (and no stop token).
  ASSERT_TRUE(m.AcceptToken(ByteToken(0xC3)).ok());
  EXPECT_EQ(AllowedTokens(m.NextTokenMask().data(), m.vocab_size()),
            std::vector<int32_t>{ByteToken(0xA9)});
  EXPECT_FALSE(m.IsAccepting());
}

TEST(GrammarMatcherTest, SpecialTokensOnlyWhereNamed) {
  auto vocab = SmallVocabulary();
  auto any = Gbnf(R"(root ::= .*)", vocab);
  GrammarMatcher m(any, {kEos});
  const auto mask = m.NextTokenMask();
  EXPECT_FALSE(BitmaskTest(mask.data(), 1));
  EXPECT_FALSE(BitmaskTest(mask.data(), 2));
  EXPECT_TRUE(BitmaskTest(mask.data(), kEos));  // the empty text is complete
  EXPECT_FALSE(m.AcceptToken(1).ok());

  auto call = Gbnf(R"(root ::= "x" <|call> [a-z]+ <call|>)", vocab);
  GrammarMatcher c(call, {kEos});
  WalkTokens(c, *vocab, {ByteToken('x'), 1, ByteToken('f'), ByteToken('n'), 2});
  EXPECT_TRUE(c.IsCompleted());
  auto by_id = Gbnf(R"(root ::= <[1]> "y")", vocab);
  GrammarMatcher d(by_id, {kEos});
  WalkTokens(d, *vocab, {1, ByteToken('y')});
  EXPECT_TRUE(d.IsAccepting());
}

TEST(GrammarMatcherTest, StopTokensOnlyWhenComplete) {
  auto vocab = SmallVocabulary({"ab"});
  auto g = Gbnf(R"(root ::= "a" "b"+)", vocab);
  GrammarMatcher m(g, {kEos});
  EXPECT_EQ(m.AcceptToken(kEos).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(m.AcceptToken(Id(*vocab, "ab")).ok());
  EXPECT_TRUE(m.IsAccepting());
  EXPECT_FALSE(m.IsCompleted());  // more b's may follow
  const auto mask = m.NextTokenMask();
  EXPECT_TRUE(BitmaskTest(mask.data(), kEos));
  EXPECT_TRUE(BitmaskTest(mask.data(), ByteToken('b')));
  EXPECT_EQ(CountAllowed(mask.data(), m.vocab_size()), 2);
}

TEST(GrammarMatcherTest, RejectedTokenLeavesStateUnchanged) {
  auto vocab = SmallVocabulary();
  auto g = Gbnf(R"(root ::= "ab")", vocab);
  GrammarMatcher m(g, {kEos});
  const StackSet before = m.state();
  const absl::Status s = m.AcceptToken(ByteToken('b'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.state(), before);
  EXPECT_EQ(m.AcceptToken(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AcceptToken(vocab->size()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrammarMatcherTest, RollbackRestoresEarlierStates) {
  auto vocab = SmallVocabulary({"ab"});
  auto g = Gbnf(R"(root ::= ("ab" | "ac")+)", vocab);
  GrammarMatcher m(g, {kEos}, /*max_rollback_tokens=*/3);
  const std::vector<uint64_t> initial = m.NextTokenMask();
  ASSERT_TRUE(m.AcceptToken(ByteToken('a')).ok());
  const std::vector<uint64_t> after_a = m.NextTokenMask();
  ASSERT_TRUE(m.AcceptToken(ByteToken('c')).ok());
  ASSERT_TRUE(m.AcceptToken(kEos).ok());
  EXPECT_TRUE(m.IsTerminated());
  ASSERT_TRUE(m.Rollback(2).ok());
  EXPECT_FALSE(m.IsTerminated());
  EXPECT_EQ(m.NextTokenMask(), after_a);
  ASSERT_TRUE(m.Rollback(1).ok());
  EXPECT_EQ(m.NextTokenMask(), initial);
  EXPECT_EQ(m.Rollback(1).code(), absl::StatusCode::kInvalidArgument);
  // The history is bounded: 5 tokens, 3 can be undone.
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(m.AcceptToken(i % 2 ? ByteToken('b') : ByteToken('a')).ok());
  EXPECT_EQ(m.rollback_available(), 3);
  EXPECT_THAT(m.Rollback(4).message(), HasSubstr("3 available"));
}

TEST(GrammarMatcherTest, CopiesAreIndependent) {
  auto vocab = SmallVocabulary();
  auto g = Gbnf(R"(root ::= "a" ("b" | "c"))", vocab);
  GrammarMatcher a(g, {kEos});
  ASSERT_TRUE(a.AcceptToken(ByteToken('a')).ok());
  GrammarMatcher b = a;
  ASSERT_TRUE(a.AcceptToken(ByteToken('b')).ok());
  ASSERT_TRUE(b.AcceptToken(ByteToken('c')).ok());
  EXPECT_TRUE(a.IsCompleted());
  EXPECT_TRUE(b.IsCompleted());
}

TEST(GrammarMatcherTest, RecursionMasksMatchBruteForce) {
  auto vocab = SmallVocabulary({"((", "))", ")),", "x)", "[x", "],", "),(", "x,x"});
  auto g = Gbnf(R"g(
root ::= item ("," item)*
item ::= "x" | "(" root ")" | "[" root "]"
)g",
                vocab);
  EXPECT_EQ(g->stats().rules, 2);  // root and item call each other: nothing inlined
  GrammarMatcher m(g, {kEos});
  const Vocabulary& v = *vocab;
  WalkTokens(m, v,
             {Id(v, "(("), Id(v, "[x"), Id(v, "],"), Id(v, "x)"), Id(v, "),("), Id(v, "x,x"),
              ByteToken(')')});  // (([x],x)),(x,x)
  EXPECT_TRUE(m.IsAccepting());
}

TEST(GrammarMatcherTest, RightRecursionRunsInConstantStack) {
  auto vocab = SmallVocabulary();
  auto g = Gbnf(R"(
root ::= "a" root | "b" more
more ::= "c" more | ""
)",
                vocab);
  GrammarMatcher m(g, {kEos});
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(m.AcceptToken(ByteToken('a')).ok());
  EXPECT_LE(m.state().MaxDepth(), 2);
  ASSERT_TRUE(m.AcceptToken(ByteToken('b')).ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(m.AcceptToken(ByteToken('c')).ok());
  EXPECT_TRUE(m.IsAccepting());
  ExpectMaskIsExact(m, "after abc...");
}

TEST(GrammarMatcherTest, DeepNestingStaysExactNearTheDepthLimit) {
  auto vocab = SmallVocabulary({"((", "))"});
  auto parsed = ParseGbnf(R"g(root ::= "(" root ")" | "x")g", vocab.get());
  ASSERT_TRUE(parsed.ok());
  StepLimits limits;
  limits.max_depth = 40;
  auto g = CompiledGrammar::Create(*parsed, vocab, AutomatonLimits(), limits);
  ASSERT_TRUE(g.ok()) << g.status();
  GrammarMatcher m(*g, {kEos});
  for (int i = 0; i < 45; ++i) {
    ExpectMaskIsExact(m, "depth " + std::to_string(i));
    if (!m.AcceptToken(ByteToken('(')).ok()) {
      EXPECT_GE(i, 38);  // refused only at the limit, and the mask said so
      break;
    }
  }
}

TEST(GrammarMatcherTest, GrammarsThatCannotWorkAreRefused) {
  auto vocab = SmallVocabulary();
  auto left = ParseGbnf(R"(root ::= root "a" | "b")", vocab.get());
  ASSERT_TRUE(left.ok());
  EXPECT_THAT(CompileFor(*left, vocab).status().message(), HasSubstr("left-recursive"));
  auto never_ends = ParseGbnf(R"(root ::= "a" root)", vocab.get());
  ASSERT_TRUE(never_ends.ok());
  EXPECT_THAT(CompileFor(*never_ends, vocab).status().message(), HasSubstr("matches no text"));
  auto huge = ParseGbnf(R"(root ::= ("a" | "b"){5000} "c"{9000})", vocab.get());
  ASSERT_TRUE(huge.ok());
  AutomatonLimits small;
  small.max_nfa_states = 10000;
  EXPECT_THAT(CompiledGrammar::Create(*huge, vocab, small, StepLimits()).status().message(),
              HasSubstr("exceeds 10000 states"));
  auto bounded = ParseGbnf(R"(root ::= [a-z]{0,500} "!")", vocab.get());
  ASSERT_TRUE(bounded.ok());
  AutomatonLimits few_tables;
  few_tables.max_token_tables = 100;
  // Every position of the bounded run masks differently within a token's length (the small
  // vocabulary's tokens are 1 byte long, so only two tables are needed here)...
  EXPECT_TRUE(CompiledGrammar::Create(*bounded, vocab, few_tables, StepLimits()).ok());
  // ...but with tokens up to 200 bytes long, positions differ up to 200 apart.
  auto long_tokens = SmallVocabulary({std::string(200, 'a')});
  EXPECT_THAT(
      CompiledGrammar::Create(*bounded, long_tokens, few_tables, StepLimits()).status().message(),
      HasSubstr("token tables; the limit is 100"));
}

TEST(GrammarMatcherTest, AcceptBytesForcesText) {
  auto vocab = SmallVocabulary();
  auto g = Gbnf(R"(root ::= "{\"name\": \"" [a-z]+ "\"}")", vocab);
  GrammarMatcher m(g, {kEos});
  ASSERT_TRUE(m.AcceptBytes("{\"name\": \"").ok());
  EXPECT_FALSE(m.AcceptBytes("\"").ok());
  ASSERT_TRUE(m.AcceptBytes("abc\"}").ok());
  EXPECT_TRUE(m.IsCompleted());
  ASSERT_TRUE(m.Rollback(1).ok());
  EXPECT_FALSE(m.IsAccepting());
}

}  // namespace
}  // namespace tessera::runtime::structured
