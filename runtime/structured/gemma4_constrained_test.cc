// The engine on Gemma 4's real 262144-token vocabulary:
// - masks equal the brute-force mask (every token tried on a copy of the matcher, through the
//   byte-stepping path that shares nothing with the precomputed tables) at states along random
//   walks, for schemas with and without recursion, a regex and a GBNF grammar;
// - random walks that sample only allowed tokens always finish, parse as JSON, and validate against
//   their schema according to ajv (run under Node.js by ajv_validate.js);
// - byte-fallback tokens split a character exactly; special tokens are never allowed unnamed.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/tokenizer.h"
#include "runtime/structured/grammar_compiler.h"
#include "runtime/structured/grammar_matcher.h"
#include "runtime/structured/test_util.h"
#include "runtime/structured/token_bitmask.h"
#include "runtime/structured/vocabulary.h"
#include "testdata/testdata.h"

namespace tessera::runtime::structured {
namespace {

using json = nlohmann::ordered_json;

constexpr int32_t kEosId = 1;
constexpr int32_t kEndOfTurnId = 106;

struct Env {
  std::unique_ptr<Tokenizer> tokenizer;
  std::shared_ptr<const Vocabulary> vocabulary;
  std::unique_ptr<GrammarCompiler> compiler;
};

const Env& GetEnv() {
  static Env* env = [] {
    auto* e = new Env;
    auto tok = Tokenizer::FromFile(
        tessera::testing::RunfilePath("third_party/tokenizer/gemma4/tokenizer.json"));
    EXPECT_TRUE(tok.ok()) << tok.status();
    e->tokenizer = *std::move(tok);
    e->vocabulary = *Vocabulary::FromTokenizer(*e->tokenizer);
    e->compiler = std::make_unique<GrammarCompiler>(e->vocabulary);
    return e;
  }();
  return *env;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Gemma4ConstrainedTest, MasksEqualBruteForceAlongWalks) {
  const Env& env = GetEnv();
  auto specs =
      testing::LoadSpecs(tessera::testing::RunfilePath("runtime/structured/testdata/specs.json"));
  ASSERT_TRUE(specs.ok()) << specs.status();
  for (const auto& [name, spec] : *specs) {
    SCOPED_TRACE(name);
    auto grammar = env.compiler->Compile(spec);
    ASSERT_TRUE(grammar.ok()) << grammar.status();
    GrammarMatcher walker(*grammar, {kEosId, kEndOfTurnId});
    const testing::Walk walk = testing::RandomWalk(walker, /*seed=*/11);
    ASSERT_TRUE(walk.finished);
    const size_t n = walk.tokens.size();
    std::vector<size_t> checkpoints = {0, 1, 2, n / 3, n / 2, 2 * n / 3, n};
    // No rollback history: the brute force copies the matcher once per token.
    GrammarMatcher m(*grammar, {kEosId, kEndOfTurnId}, /*max_rollback_tokens=*/0);
    for (size_t i = 0; i <= n; ++i) {
      if (std::find(checkpoints.begin(), checkpoints.end(), i) != checkpoints.end()) {
        const std::vector<uint64_t> fast = m.NextTokenMask();
        const std::vector<uint64_t> brute = testing::BruteForceMask(m);
        ASSERT_EQ(fast, brute) << "after " << i << " tokens of '" << walk.text << "': differ at "
                               << ::testing::PrintToString(
                                      testing::MaskDifference(fast, brute, m.vocab_size()));
      }
      if (i < n) ASSERT_TRUE(m.AcceptToken(walk.tokens[i]).ok());
    }
  }
}

TEST(Gemma4ConstrainedTest, RandomWalksValidateWithAjv) {
  const Env& env = GetEnv();
  const json schemas = json::parse(ReadFile(
      tessera::testing::RunfilePath("runtime/structured/testdata/validation_schemas.json")));
  const json specs = json::parse(
      ReadFile(tessera::testing::RunfilePath("runtime/structured/testdata/specs.json")));
  std::vector<std::pair<std::string, json>> cases;
  for (const auto& [name, schema] : schemas.items()) cases.emplace_back(name, schema);
  for (const auto& [name, s] : specs.items()) {
    if (s["kind"] == "json_schema") cases.emplace_back("spec:" + name, s["schema"]);
  }
  cases.emplace_back("json_object", json{{"type", "object"}});
  constexpr int kWalks = 20;
  json input = json::array();
  for (const auto& [name, schema] : cases) {
    SCOPED_TRACE(name);
    const GrammarSpec spec =
        name == "json_object" ? GrammarSpec::JsonObject() : GrammarSpec::JsonSchema(schema.dump());
    auto grammar = env.compiler->Compile(spec);
    ASSERT_TRUE(grammar.ok()) << grammar.status();
    json docs = json::array();
    for (int seed = 0; seed < kWalks; ++seed) {
      GrammarMatcher m(*grammar, {kEosId, kEndOfTurnId});
      const testing::Walk walk = testing::RandomWalk(m, 1000 + seed);
      ASSERT_TRUE(walk.finished) << "seed " << seed << ": " << walk.text.substr(0, 400);
      const json parsed = json::parse(walk.text, nullptr, /*allow_exceptions=*/false);
      EXPECT_FALSE(parsed.is_discarded()) << walk.text;
      docs.push_back(walk.text);
    }
    input.push_back({{"name", name}, {"schema", schema}, {"docs", docs}});
  }
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/ajv_input.json";
  std::ofstream(path) << input.dump();
  const std::string node_modules =
      tessera::testing::WorkspaceDir() + "/third_party/node/node_modules";
  // stdout is the answer; stderr (ajv's warnings, a stack trace) is shown only on failure.
  const std::string command = "NODE_PATH='" + node_modules + "' node " +
                              tessera::testing::RunfilePath("runtime/structured/ajv_validate.js") +
                              " '" + path + "' 2>'" + path + ".stderr'";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[1 << 16];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, got);
  const int status = pclose(pipe);
  const std::string err = ReadFile(path + ".stderr");
  ASSERT_EQ(status, 0) << out.substr(0, 2000) << err.substr(0, 2000);
  const json result = json::parse(out, nullptr, false);
  ASSERT_FALSE(result.is_discarded()) << out.substr(0, 2000) << err.substr(0, 2000);
  for (const auto& [name, schema] : cases) {
    ASSERT_TRUE(result.contains(name)) << name;
    EXPECT_EQ(result[name]["valid"], kWalks) << name << ": " << result[name]["invalid"].dump(2);
  }
}

TEST(Gemma4ConstrainedTest, ByteFallbackSplitsACharacterExactly) {
  const Env& env = GetEnv();
  auto grammar = env.compiler->Compile(GrammarSpec::JsonSchema(R"({"enum": ["日本語"]})"));
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  GrammarMatcher m(*grammar, {kEosId});
  const Tokenizer& t = *env.tokenizer;
  ASSERT_TRUE(m.AcceptToken(*t.TokenId("\"")).ok());
  ASSERT_TRUE(m.AcceptToken(*t.TokenId("<0xE6>")).ok());  // the first byte of 日
  EXPECT_EQ(AllowedTokens(m.NextTokenMask().data(), m.vocab_size()),
            std::vector<int32_t>{*t.TokenId("<0x97>")});
  ASSERT_TRUE(m.AcceptToken(*t.TokenId("<0x97>")).ok());
  ASSERT_TRUE(m.AcceptToken(*t.TokenId("<0xA5>")).ok());
  // The rest as the tokenizer writes it.
  for (int32_t id : t.Encode("本語\"")) ASSERT_TRUE(m.AcceptToken(id).ok()) << id;
  EXPECT_TRUE(m.IsCompleted());
}

TEST(Gemma4ConstrainedTest, SpecialTokensAreNeverAllowedUnnamed) {
  const Env& env = GetEnv();
  auto grammar = env.compiler->Compile(GrammarSpec::JsonObject());
  ASSERT_TRUE(grammar.ok());
  GrammarMatcher m(*grammar, {kEosId, kEndOfTurnId});
  const Vocabulary& v = *env.vocabulary;
  for (const char* prefix : {"", "{\"", "k\": \"text "}) {
    ASSERT_TRUE(m.AcceptBytes(prefix).ok());
    const std::vector<uint64_t> mask = m.NextTokenMask();
    int allowed_special = 0;
    for (int32_t id = 0; id < v.size(); ++id)
      allowed_special += v.IsExcluded(id) && BitmaskTest(mask.data(), id);
    EXPECT_EQ(allowed_special, 0) << "after '" << prefix << "'";
  }
  // Inside a string almost everything else is allowed (not `"`-free tokens only, so a check that
  // the mask is not trivially small).
  EXPECT_GT(CountAllowed(m.NextTokenMask().data(), m.vocab_size()), 250000);
}

}  // namespace
}  // namespace tessera::runtime::structured
