// GBNF -> grammar: grammars in llama.cpp's syntax (several adapted from its grammars/ directory's
// documented features), accept/reject tables, and refusals with line and column.
#include "runtime/structured/gbnf_parser.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/structured/test_util.h"

namespace tessera::runtime::structured {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string grammar;
  std::vector<std::string> accept;
  std::vector<std::string> reject;
};

TEST(GbnfParserTest, AcceptRejectTables) {
  const std::vector<Case> cases = {
      {R"(root ::= "yes" | "no")", {"yes", "no"}, {"", "yesno", "maybe"}},
      // Comments, newlines inside parentheses, a continuation after `|`.
      {R"(# a list
root ::= (
    "- " item  # one item
  )+
item ::= [a-z]+ "\n"
)",
       {"- a\n", "- ab\n- c\n"},
       {"- \n", "- a"}},
      {"root ::= a |\n  b\na ::= \"x\"\nb ::= \"y\"", {"x", "y"}, {"xy"}},
      {R"(root ::= [0-9]{2,4} "." [0-9]{0,2} "-"{3})",
       {"12.---", "1234.56---"},
       {"1.---", "12.345---"}},
      {R"(root ::= "\x41\u00e9\U0001F600\n\t\\\"")", {"A\xC3\xA9\xF0\x9F\x98\x80\n\t\\\""}, {"A"}},
      {R"(root ::= [^"\\\x7F\x00-\x1F]+)", {"abc", "\xC3\xA9"}, {"a\"", "\x7F", "\n"}},
      {R"(root ::= "日本" [ぁ-ゟ]?)", {"日本", "日本あ"}, {"日本ア"}},
      {R"(root ::= . .)", {"ab", "\xC3\xA9x"}, {"a", "abc"}},
      // Recursion (not left): balanced parentheses.
      {R"g(root ::= "(" root ")" root | "")g", {"", "()", "(())()"}, {"(", "())"}},
      {R"(root ::= x
x ::= "a" x? "b")",
       {"ab", "aabb"},
       {"aab", ""}},
      {R"(root ::= ws "a" ws
ws ::= [ \t\n]*)",
       {"a", "  a\n"},
       {"b"}},
      {R"(root ::= [a-]+)", {"a-a"}, {"b"}},
  };
  auto vocab = testing::SmallVocabulary();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.grammar);
    auto g = ParseGbnf(c.grammar, vocab.get());
    ASSERT_TRUE(g.ok()) << g.status();
    auto compiled = testing::CompileFor(*g, vocab);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    for (const auto& s : c.accept) EXPECT_TRUE(testing::Matches(**compiled, s)) << "'" << s << "'";
    for (const auto& s : c.reject) EXPECT_FALSE(testing::Matches(**compiled, s)) << "'" << s << "'";
  }
}

TEST(GbnfParserTest, TokenReferences) {
  auto vocab = testing::SmallVocabulary({"<b>"});
  auto g = ParseGbnf(R"(root ::= <|call> <[2]> <b>)", vocab.get());
  ASSERT_TRUE(g.ok()) << g.status();
  // Special tokens become symbols; an ordinary token stands for its bytes.
  EXPECT_EQ(g->token_symbols, (std::vector<int32_t>{1, 2}));
  EXPECT_FALSE(ParseGbnf(R"(root ::= <nope>)", vocab.get()).ok());
  EXPECT_THAT(ParseGbnf(R"(root ::= <[999]>)", vocab.get()).status().message(),
              HasSubstr("outside the vocabulary"));
  EXPECT_THAT(ParseGbnf(R"(root ::= <|call>)", nullptr).status().message(),
              HasSubstr("need a vocabulary"));
}

TEST(GbnfParserTest, RefusesWithPosition) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"root ::= x", "'x' is used but not defined"},
      {"item ::= \"a\"", "no 'root' rule"},
      {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
      {"root ::= \"a", "unterminated string"},
      {"root ::= [a", "unterminated character class"},
      {"root ::= (\"a\"", "missing ')'"},
      {"root ::= !<[1]>", "not supported"},
      {"root := \"a\"", "expected '::='"},
      {"root ::= \"a\"{2,1}", "max < min"},
      {"root ::= \"\\q\"", "unknown escape"},
      {"root ::= \"a\" @", "line 1 column 14"},
      {"root ::= \"a\"\n  other ::= \"b\"\nx ::= \"c\" y ::= \"d\"", "starts before"},
  };
  auto vocab = testing::SmallVocabulary();
  for (const auto& [text, message] : cases) {
    auto g = ParseGbnf(text, vocab.get());
    EXPECT_FALSE(g.ok()) << text;
    EXPECT_THAT(g.status().message(), HasSubstr(message)) << text;
  }
}

}  // namespace
}  // namespace tessera::runtime::structured
