// Regex -> grammar: accept/reject tables over whole strings (the tables follow ECMAScript / Python
// semantics for these constructs), and the refusals.
#include "runtime/structured/regex_parser.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/structured/test_util.h"

namespace tessera::runtime::structured {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string pattern;
  std::vector<std::string> accept;
  std::vector<std::string> reject;
};

TEST(RegexParserTest, AcceptRejectTables) {
  const std::vector<Case> cases = {
      {"abc", {"abc"}, {"", "ab", "abcd", "ABC"}},
      {"^a|b$", {"a", "b"}, {"ab", ""}},
      {"a*b+c?", {"b", "aab", "abbbc"}, {"", "ac", "abcc"}},
      {"(ab){2,3}", {"abab", "ababab"}, {"ab", "abababab"}},
      {"x{3}", {"xxx"}, {"xx", "xxxx"}},
      {"x{2,}", {"xx", "xxxxxxx"}, {"x"}},
      {"a{,2}", {"a{,2}"}, {"a", "aa"}},  // not a quantifier: literal braces
      {"[a-c]+[^a-c]", {"abcd", "a!"}, {"abc", "ad1"}},
      {"[-a]", {"-", "a"}, {"b"}},
      {"[a-]", {"-", "a"}, {"b"}},
      {"\\d\\D\\w\\W\\s\\S", {"1a_ \t!", "9-z-\nx"}, {"aa_ \t!", "1a_a\tx"}},
      {"[\\d.]+", {"3.14", "."}, {"3,14"}},
      {".", {"a", "\xC3\xA9", "\xF0\x9F\x98\x80", "\r"}, {"\n", "", "ab"}},
      {"\\.\\*\\(\\)\\[\\]\\{\\}\\|\\\\\\^\\$\\+\\?", {".*()[]{}|\\^$+?"}, {""}},
      {"\\x41\\u00e9\\u{1F600}", {"A\xC3\xA9\xF0\x9F\x98\x80"}, {"A"}},
      {"(?:a|b)(?<n>c)(?P<m>d)", {"acd", "bcd"}, {"cd"}},
      {"\xC3\xA9+[\xE4\xB8\x80-\xE9\xBE\xA5]",
       {"\xC3\xA9\xC3\xA9\xE4\xB8\xAD"},
       {"\xC3\xA9"
        "a"}},
      {"[^a]", {"b", "\xE4\xB8\xAD"}, {"a", "\xED\xA0\x80"}},  // no surrogate encodings
      {"a+?b*?", {"a", "aabb"}, {"b"}},
      {"[]", {}, {"", "a"}},
      {"(a|)b", {"ab", "b"}, {"a"}},
  };
  auto vocab = testing::SmallVocabulary();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.pattern);
    auto g = RegexToGrammar(c.pattern);
    ASSERT_TRUE(g.ok()) << g.status();
    auto compiled = testing::CompileFor(*g, vocab);
    if (c.accept.empty()) {
      EXPECT_THAT(compiled.status().message(), HasSubstr("matches no text"));
      continue;
    }
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    for (const auto& s : c.accept) EXPECT_TRUE(testing::Matches(**compiled, s)) << "'" << s << "'";
    for (const auto& s : c.reject) EXPECT_FALSE(testing::Matches(**compiled, s)) << "'" << s << "'";
  }
}

TEST(RegexParserTest, EcmascriptDotExcludesLineTerminators) {
  RegexOptions o;
  o.ecmascript_dot = true;
  auto g = RegexToGrammar(".", o);
  ASSERT_TRUE(g.ok());
  auto c = testing::CompileFor(*g, testing::SmallVocabulary());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(testing::Matches(**c, "a"));
  EXPECT_FALSE(testing::Matches(**c, "\r"));
  EXPECT_FALSE(testing::Matches(**c, "\xE2\x80\xA8"));  // U+2028
}

TEST(RegexParserTest, AnchorsAreReported) {
  auto p = ParseRegex("^ab$", CodepointSet);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->anchored_start);
  EXPECT_TRUE(p->anchored_end);
  p = ParseRegex("ab\\$", CodepointSet);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->anchored_end);
}

TEST(RegexParserTest, RefusesWhatItCannotHonour) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"(a)\\1", "backreferences"},
      {"a(?=b)", "lookahead"},
      {"(?<=a)b", "lookbehind"},
      {"\\bword", "word boundary"},
      {"a++", "possessive"},
      {"(?i)a", "inline flags"},
      {"\\p{L}", "property"},
      {"a^b", "anchor '^'"},
      {"a$b", "anchor '$'"},
      {"(ab", "missing ')'"},
      {"ab)", "unexpected ')'"},
      {"[ab", "missing ']'"},
      {"*a", "nothing to repeat"},
      {"a{3,1}", "max < min"},
      {"[z-a]", "out of order"},
      {"\\q", "unknown escape"},
      {"\xFF", "UTF-8"},
      {std::string(300, '(') + std::string(300, ')'), "nested more than"},
  };
  for (const auto& [pattern, message] : cases) {
    auto g = RegexToGrammar(pattern);
    EXPECT_FALSE(g.ok()) << pattern;
    EXPECT_THAT(g.status().message(), HasSubstr(message)) << pattern;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace tessera::runtime::structured
