// The compiler front door: every spec kind, the LRU cache (hits, eviction by count and bytes),
// concurrent compiles of one spec sharing the work, and spec size limits.
#include "runtime/structured/grammar_compiler.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/structured/grammar_matcher.h"
#include "runtime/structured/test_util.h"

namespace tessera::runtime::structured {
namespace {

using ::testing::HasSubstr;

TEST(GrammarCompilerTest, EveryKindCompiles) {
  GrammarCompiler compiler(testing::SmallVocabulary());
  for (const GrammarSpec& spec :
       {GrammarSpec::JsonSchema(R"({"type": "integer"})"), GrammarSpec::JsonObject(),
        GrammarSpec::Regex("[0-9]+"), GrammarSpec::Gbnf(R"(root ::= "a"+)")}) {
    auto g = compiler.Compile(spec);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_GT((*g)->stats().states, 0);
  }
  auto bad = compiler.Compile(GrammarSpec::JsonSchema(R"({"not": {}})"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrammarCompilerTest, CachesBySpecAndEvictsLeastRecentlyUsed) {
  GrammarCompilerOptions options;
  options.cache_entries = 2;
  GrammarCompiler compiler(testing::SmallVocabulary(), options);
  auto a1 = compiler.Compile(GrammarSpec::Regex("a"));
  auto a2 = compiler.Compile(GrammarSpec::Regex("a"));
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(a1->get(), a2->get());
  // The same text as another kind is another grammar.
  auto g = compiler.Compile(GrammarSpec::Gbnf("root ::= \"a\""));
  ASSERT_TRUE(g.ok());
  EXPECT_NE(g->get(), a1->get());
  compiler.Compile(GrammarSpec::Regex("a")).IgnoreError();  // a is now most recent
  compiler.Compile(GrammarSpec::Regex("b")).IgnoreError();  // evicts the GBNF one
  auto stats = compiler.cache_stats();
  EXPECT_EQ(stats.entries, 2u);
  EXPECT_EQ(stats.hits, 2);
  EXPECT_EQ(stats.misses, 3);
  auto a3 = compiler.Compile(GrammarSpec::Regex("a"));
  EXPECT_EQ(a3->get(), a1->get());
  compiler.Compile(GrammarSpec::Gbnf("root ::= \"a\"")).IgnoreError();
  EXPECT_EQ(compiler.cache_stats().misses, 4);
}

TEST(GrammarCompilerTest, CacheIsBoundedByBytes) {
  GrammarCompilerOptions options;
  options.cache_bytes = 1;  // nothing fits: every compile is a miss, nothing is kept
  GrammarCompiler compiler(testing::SmallVocabulary(), options);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(compiler.Compile(GrammarSpec::Regex("x")).ok());
  EXPECT_EQ(compiler.cache_stats().entries, 0u);
  EXPECT_EQ(compiler.cache_stats().misses, 3);
}

TEST(GrammarCompilerTest, ConcurrentCompilesShareOneResult) {
  GrammarCompiler compiler(testing::SmallVocabulary());
  const GrammarSpec spec = GrammarSpec::JsonSchema(
      R"({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}})");
  std::vector<std::shared_ptr<const CompiledGrammar>> results(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto g = compiler.Compile(spec);
      if (g.ok()) results[i] = *g;
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_EQ(r.get(), results[0].get());
  EXPECT_EQ(compiler.cache_stats().misses, 1);
  // And matchers on several threads over one grammar.
  std::vector<int> ok(8, 0);
  threads.clear();
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      GrammarMatcher m(results[0], {testing::kEos});
      ok[i] = m.AcceptBytes(R"({"a": ["x", "y"]})").ok() && m.IsAccepting();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, std::vector<int>(8, 1));
}

TEST(GrammarCompilerTest, CustomGrammarsAreCachedByKey) {
  GrammarCompiler compiler(testing::SmallVocabulary());
  int builds = 0;
  auto build = [&]() -> absl::StatusOr<Grammar> {
    ++builds;
    Grammar g;
    g.root = g.AddRule("root");
    g.rule_bodies[g.root] = Literal("call");
    return g;
  };
  auto a = compiler.CompileCustom("tools-v1", build);
  auto b = compiler.CompileCustom("tools-v1", build);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_EQ(builds, 1);
  EXPECT_TRUE(testing::Matches(**a, "call"));
  auto bad = compiler.CompileCustom(
      "broken", []() -> absl::StatusOr<Grammar> { return absl::InvalidArgumentError("no"); });
  EXPECT_EQ(bad.status().message(), "no");
}

TEST(GrammarCompilerTest, SpecSizeIsLimited) {
  GrammarCompilerOptions options;
  options.max_spec_bytes = 10;
  GrammarCompiler compiler(testing::SmallVocabulary(), options);
  EXPECT_THAT(compiler.Compile(GrammarSpec::Regex(std::string(11, 'a'))).status().message(),
              HasSubstr("11 bytes; the limit is 10"));
}

}  // namespace
}  // namespace tessera::runtime::structured
