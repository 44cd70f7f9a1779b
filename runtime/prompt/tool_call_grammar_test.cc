#include "runtime/prompt/tool_call_grammar.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/chat_template.h"
#include "runtime/prompt/output_parser.h"
#include "runtime/prompt/tokenizer.h"
#include "runtime/structured/grammar_matcher.h"
#include "runtime/structured/test_util.h"
#include "runtime/structured/token_bitmask.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

using Json = nlohmann::json;
using structured::CompiledGrammar;
using structured::GrammarMatcher;
using structured::Vocabulary;

// Tools whose every string is bounded (maxLength or enum), so that random text ends.
const char kTools[] = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {
      "city": {"type": "string", "maxLength": 12, "minLength": 1},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
      "days": {"type": "integer"}},
     "required": ["city"], "additionalProperties": false}}},
  {"type": "function", "function": {"name": "search", "parameters": {"type": "object",
    "properties": {
      "query": {"type": "string", "maxLength": 6},
      "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]},
               "minItems": 1, "maxItems": 3},
      "filter": {"$ref": "#/$defs/Filter"},
      "exact": {"type": "boolean"},
      "score": {"type": ["number", "null"]}},
    "required": ["query", "tags", "filter"],
    "$defs": {"Filter": {"type": "object", "properties": {
      "lang": {"const": "en"}, "max": {"type": "integer"},
      "Sub": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Filter"}]}},
      "required": ["lang", "Sub"]}}}}},
  {"type": "function", "function": {"name": "book", "parameters": {"type": "object",
    "properties": {
      "airport": {"type": "string", "pattern": "^[A-Z]{3}$"},
      "code": {"type": "string", "pattern": "^x[0-9]+y$"},
      "date": {"type": "string", "format": "date"},
      "seats": {"type": "integer", "minimum": 1, "maximum": 9},
      "budget": {"type": "number", "exclusiveMinimum": 0, "maximum": 5000}},
    "required": ["airport", "date", "seats", "budget"]}}},
  {"type": "function", "function": {"name": "ping"}}
])";

// Gemma 4's tokenizer, where the tool markers (<|tool_call>, <tool_call|>, <|"|>) are special tokens.
const Tokenizer& Gemma4Tokenizer() {
  static const Tokenizer* tokenizer = [] {
    auto tok =
        Tokenizer::FromFile(testing::RunfilePath("third_party/tokenizer/gemma4/tokenizer.json"));
    EXPECT_TRUE(tok.ok()) << tok.status();
    return tok->release();
  }();
  return *tokenizer;
}

std::shared_ptr<const Vocabulary> Gemma4Vocabulary() {
  static std::shared_ptr<const Vocabulary>* vocab = [] {
    auto v = Vocabulary::FromTokenizer(Gemma4Tokenizer());
    EXPECT_TRUE(v.ok()) << v.status();
    return new std::shared_ptr<const Vocabulary>(*v);
  }();
  return *vocab;
}

// Whether `grammar` accepts `text` as Gemma 4's tokenizer encodes it (markers become their special
// tokens, as in a model's output), ending where a stop token may follow.
bool MatchesEncoded(std::shared_ptr<const CompiledGrammar> grammar, const std::string& text) {
  GrammarMatcher matcher(grammar, {1});
  for (int32_t id : Gemma4Tokenizer().Encode(text)) {
    if (!matcher.AcceptToken(id).ok()) return false;
  }
  return matcher.IsAccepting();
}

std::shared_ptr<const CompiledGrammar> Compile(const Json& tools, ToolCallGrammarOptions options,
                                               std::shared_ptr<const Vocabulary> vocab) {
  absl::StatusOr<structured::Grammar> g = BuildToolCallGrammar(tools, options, *vocab);
  EXPECT_TRUE(g.ok()) << g.status();
  auto c = structured::testing::CompileFor(*g, vocab);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// The chat template's rendering of a call (what a trained Gemma 4 writes).
std::string TemplateCalls(const Json& calls) {
  ChatTemplateInput input;
  input.add_generation_prompt = false;
  input.messages = Json::array({{{"role", "assistant"}, {"tool_calls", calls}}});
  absl::StatusOr<std::string> rendered = RenderGemma4ChatTemplate(input);
  EXPECT_TRUE(rendered.ok()) << rendered.status();
  const std::string open = "<|turn>model\n";
  const size_t begin = rendered->find(open) + open.size();
  return rendered->substr(begin, rendered->rfind("<turn|>") - begin);
}

Json Call(const std::string& name, const Json& arguments) {
  return {{"function", {{"name", name}, {"arguments", arguments}}}};
}

TEST(ToolCallGrammarTest, AcceptsExactlyTheTemplateRenderingOfValidCalls) {
  const Json tools = Json::parse(kTools);
  auto grammar = Compile(tools, {}, Gemma4Vocabulary());
  const Json filter = {{"lang", "en"}, {"Sub", {{"lang", "en"}, {"Sub", nullptr}, {"max", 3}}}};
  const Json valid[] = {
      Json::array({Call("get_weather", {{"city", "Paris"}})}),
      Json::array(
          {Call("get_weather", {{"city", "São Paulo"}, {"unit", "celsius"}, {"days", -3}})}),
      Json::array({Call("search", {{"query", "a<b|\"c"},
                                   {"tags", {"a", "c"}},
                                   {"filter", filter},
                                   {"exact", true},
                                   {"score", 0.5}})}),
      Json::array({Call("search",
                        {{"query", ""}, {"tags", {"b"}}, {"filter", filter}, {"score", nullptr}})}),
      Json::array({Call("ping", Json::object())}),
      Json::array({Call("book", {{"airport", "CDG"},
                                 {"code", "x12y"},
                                 {"date", "2026-02-28"},
                                 {"seats", 9},
                                 {"budget", 1234.5}})}),
      Json::array({Call(
          "book", {{"airport", "NRT"}, {"date", "2025-12-01"}, {"seats", 1}, {"budget", 5000}})}),
      // Parallel calls.
      Json::array({Call("ping", Json::object()), Call("get_weather", {{"city", "Rome"}})}),
  };
  for (const Json& calls : valid) {
    const std::string text = TemplateCalls(calls);
    EXPECT_TRUE(MatchesEncoded(grammar, text)) << text;
  }
  const Json invalid[] = {
      Json::array({Call("get_weather", Json::object())}),                          // required
      Json::array({Call("get_weather", {{"city", ""}})}),                          // minLength
      Json::array({Call("get_weather", {{"city", "Llanfairpwllgwyngyll"}})}),      // maxLength
      Json::array({Call("get_weather", {{"city", "Oslo"}, {"unit", "kelvin"}})}),  // enum
      Json::array({Call("get_weather", {{"city", "Oslo"}, {"days", 1.5}})}),       // integer
      Json::array({Call("get_weather", {{"city", "Oslo"}, {"wind", true}})}),      // extra key
      Json::array({Call("search", {{"query", "q"}, {"tags", Json::array()}, {"filter", filter}})}),
      Json::array({Call(
          "search",
          {{"query", "q"}, {"tags", {"a", "a", "a", "a"}}, {"filter", filter}})}),  // maxItems
      Json::array({Call("search", {{"query", "q"},
                                   {"tags", {"a"}},
                                   {"filter", {{"lang", "fr"}, {"Sub", nullptr}}}})}),  // const
      Json::array({Call("unknown", Json::object())}),
      Json::array({Call(
          "book",
          {{"airport", "cdg"}, {"date", "2026-02-28"}, {"seats", 1}, {"budget", 1}})}),  // pattern
      Json::array({Call(
          "book",
          {{"airport", "CDG"}, {"date", "28/02/2026"}, {"seats", 1}, {"budget", 1}})}),  // format
      Json::array({Call(
          "book",
          {{"airport", "CDG"}, {"date", "2026-02-28"}, {"seats", 10}, {"budget", 1}})}),  // maximum
      Json::array({Call("book", {{"airport", "CDG"},
                                 {"date", "2026-02-28"},
                                 {"seats", 1},
                                 {"budget", 0}})}),  // exclusiveMinimum
  };
  for (const Json& calls : invalid) {
    const std::string text = TemplateCalls(calls);
    EXPECT_FALSE(MatchesEncoded(grammar, text)) << text;
  }
  // Not a call at all, or text around it.
  EXPECT_FALSE(MatchesEncoded(grammar, ""));
  EXPECT_FALSE(MatchesEncoded(grammar, "Sure! <|tool_call>call:ping{}<tool_call|>"));
  // A string may not contain the quote marker; keys in dictsort order only.
  EXPECT_FALSE(MatchesEncoded(
      grammar, "<|tool_call>call:get_weather{city:<|\"|>a<|\"|>b<|\"|>}<tool_call|>"));
  EXPECT_FALSE(MatchesEncoded(
      grammar,
      "<|tool_call>call:get_weather{unit:<|\"|>celsius<|\"|>,city:<|\"|>x<|\"|>}<tool_call|>"));
}

TEST(ToolCallGrammarTest, NamedFunctionAndSingleCall) {
  const Json tools = Json::parse(kTools);
  ToolCallGrammarOptions options;
  options.function = "ping";
  options.parallel_tool_calls = false;
  auto grammar = Compile(tools, options, Gemma4Vocabulary());
  EXPECT_TRUE(MatchesEncoded(grammar, "<|tool_call>call:ping{}<tool_call|>"));
  EXPECT_FALSE(MatchesEncoded(
      grammar, "<|tool_call>call:ping{}<tool_call|><|tool_call>call:ping{}<tool_call|>"));
  EXPECT_FALSE(MatchesEncoded(
      grammar, "<|tool_call>call:get_weather{city:<|\"|>x<|\"|>}<tool_call|>"));
  options.function = "nope";
  absl::StatusOr<structured::Grammar> g = BuildToolCallGrammar(tools, options, *Gemma4Vocabulary());
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("'nope', which is not among"), std::string::npos);
}

TEST(ToolCallGrammarTest, UnenforceableSchemasAreRefusedByKeyword) {
  const std::pair<const char*, const char*> kCases[] = {
      {R"({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}})",
       "at /properties/n: the keyword 'multipleOf' is not supported"},
      {R"({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}})",
       "the keyword 'uniqueItems'"},
      {R"({"type": "object", "properties": {"s": {"type": "string", "format": "color"}}})",
       "color"},
      {R"j({"type": "object", "properties": {"s": {"type": "string", "pattern": "(?=a)"}}})j",
       "pattern:"},
      {R"({"type": "object", "properties": {"s": {"pattern": "a", "maxLength": 3}}})",
       "only one of pattern, format, minLength/maxLength"},
      {R"({"type": "object", "properties": {"n": {"type": "number", "minimum": 0.5}}})",
       "non-integer bounds"},
      {R"({"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}]}}})",
       "the keyword 'oneOf'"},
      {R"({"type": "object", "properties": {"s": {"type": "string", "maxLength": 100000}}})",
       "'maxLength' must be an integer in [0, 1024]"},
      {R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]})",
       "'required' names \"b\""},
      {R"({"type": "object", "properties": {"r": {"$ref": "#/$defs/Missing"}}})",
       "must name an entry of $defs"},
      {R"({"type": "object", "properties": {"e": {"enum": [1.5]}}})", "constants must be"},
      {R"({"type": "array", "items": {}})", "must be an object schema"},
      {R"({"type": "object", "properties": {"t": {"type": "date"}}})", "'date' is not a JSON"},
  };
  for (const auto& [parameters, reason] : kCases) {
    SCOPED_TRACE(parameters);
    const Json tools =
        Json::array({{{"type", "function"},
                      {"function", {{"name", "f"}, {"parameters", Json::parse(parameters)}}}}});
    absl::StatusOr<structured::Grammar> g = BuildToolCallGrammar(tools, {}, *Gemma4Vocabulary());
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(reason), std::string::npos) << g.status();
    EXPECT_NE(g.status().message().find("tool 'f'"), std::string::npos) << g.status();
  }
}

// Checks parsed arguments against kTools' schemas (what ajv does in the end-to-end test).
void ExpectValid(const ParsedToolCall& call) {
  const Json args = Json::parse(call.arguments);
  ASSERT_TRUE(args.is_object());
  if (call.name == "get_weather") {
    ASSERT_TRUE(args.contains("city"));
    const std::string city = args["city"].get<std::string>();
    EXPECT_GE(city.size(), 1u);
    if (args.contains("unit")) {
      EXPECT_TRUE(args["unit"] == "celsius" || args["unit"] == "fahrenheit") << args;
    }
    if (args.contains("days")) EXPECT_TRUE(args["days"].is_number_integer()) << args;
    for (auto it = args.begin(); it != args.end(); ++it) {
      EXPECT_TRUE(it.key() == "city" || it.key() == "unit" || it.key() == "days") << it.key();
    }
  } else if (call.name == "search") {
    ASSERT_TRUE(args.contains("query") && args["query"].is_string());
    ASSERT_TRUE(args.contains("tags") && args["tags"].is_array());
    EXPECT_GE(args["tags"].size(), 1u);
    EXPECT_LE(args["tags"].size(), 3u);
    ASSERT_TRUE(args.contains("filter") && args["filter"].is_object());
    for (Json f = args["filter"]; !f.is_null(); f = f["Sub"]) {
      ASSERT_TRUE(f.is_object()) << f;
      EXPECT_EQ(f["lang"], "en");
      ASSERT_TRUE(f.contains("Sub"));
    }
    if (args.contains("score")) EXPECT_TRUE(args["score"].is_number() || args["score"].is_null());
  } else if (call.name == "book") {
    const std::string airport = args["airport"].get<std::string>();
    ASSERT_EQ(airport.size(), 3u);
    for (char c : airport) EXPECT_TRUE(c >= 'A' && c <= 'Z') << airport;
    if (args.contains("code")) {
      const std::string code = args["code"].get<std::string>();
      EXPECT_NE(code.find('x'), std::string::npos) << code;
    }
    const std::string date = args["date"].get<std::string>();
    EXPECT_EQ(date.size(), 10u) << date;
    EXPECT_TRUE(args["seats"].is_number_integer());
    EXPECT_GE(args["seats"].get<int>(), 1);
    EXPECT_LE(args["seats"].get<int>(), 9);
    EXPECT_GT(args["budget"].get<double>(), 0);
    EXPECT_LE(args["budget"].get<double>(), 5000);
  } else {
    EXPECT_EQ(call.name, "ping");
    EXPECT_TRUE(args.empty());
  }
}

// A uniformly random set bit of `mask`, or -1.
int32_t RandomAllowed(const std::vector<uint64_t>& mask, std::mt19937* rng) {
  int64_t total = 0;
  for (uint64_t w : mask) total += __builtin_popcountll(w);
  if (total == 0) return -1;
  int64_t k = std::uniform_int_distribution<int64_t>(0, total - 1)(*rng);
  for (size_t i = 0; i < mask.size(); ++i) {
    const int n = __builtin_popcountll(mask[i]);
    if (k >= n) {
      k -= n;
      continue;
    }
    uint64_t w = mask[i];
    for (; k > 0; --k) w &= w - 1;
    return static_cast<int32_t>(i * 64 + __builtin_ctzll(w));
  }
  return -1;
}

// Random tokens under the grammar's masks on Gemma 4's 262144-token vocabulary, as the built-in
// random model samples: every finished text is a call the output parser accepts, with valid
// arguments.
TEST(ToolCallGrammarTest, RandomTokensUnderTheMaskAlwaysMakeValidCalls) {
  const Json tools = Json::parse(kTools);
  auto vocab = Gemma4Vocabulary();
  auto grammar = Compile(tools, {}, vocab);
  const std::vector<int32_t> stops = {1, 106};
  std::mt19937 rng(7);
  int finished = 0;
  for (int walk = 0; walk < 30; ++walk) {
    GrammarMatcher matcher(grammar, stops);
    std::vector<uint64_t> mask(matcher.mask_words());
    std::string text;
    for (int step = 0; step < 300 && !matcher.IsTerminated(); ++step) {
      matcher.FillNextTokenMask(mask.data());
      const int32_t token_or_stop = RandomAllowed(mask, &rng);
      ASSERT_GE(token_or_stop, 0) << text;
      // Stop as soon as allowed half the time, as a model ending its turn.
      int32_t token = token_or_stop;
      if (matcher.IsAccepting() && rng() % 2 == 0) token = stops[rng() % 2];
      ASSERT_TRUE(matcher.AcceptToken(token).ok()) << token;
      // A special token (a marker) reads as its text, as the server's decoder keeps it.
      if (!matcher.IsTerminated()) {
        text += vocab->IsExcluded(token) ? Gemma4Tokenizer().TokenText(token)
                                         : vocab->TokenBytes(token);
      }
    }
    if (!matcher.IsTerminated()) continue;  // An integer that kept growing; rare.
    ++finished;
    Gemma4OutputParser parser;
    std::vector<OutputEvent> events;
    parser.Push(text, &events);
    parser.Finish(&events);
    const ParsedOutput& out = parser.output();
    EXPECT_EQ(out.content, "") << text;
    EXPECT_TRUE(out.problems.empty()) << text;
    ASSERT_FALSE(out.tool_calls.empty()) << text;
    for (const ParsedToolCall& call : out.tool_calls) ExpectValid(call);
  }
  EXPECT_GE(finished, 25);
}

// With the markers as special tokens (Gemma 4's real tokenizer), the grammar names them: the
// spelled-out text is refused and the token is required.
TEST(ToolCallGrammarTest, MarkersThatAreSpecialTokensAreThoseTokens) {
  std::vector<std::string> bytes = {"", "", "", ""};
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  auto vocab = Vocabulary::FromTokenBytes(
      bytes, {{0, "<eos>"}, {1, "<|tool_call>"}, {2, "<tool_call|>"}, {3, "<|\"|>"}});
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  const Json tools = Json::parse(kTools);
  ToolCallGrammarOptions options;
  options.function = "get_weather";
  auto grammar = Compile(tools, options, *vocab);
  auto byte = [](char c) { return 4 + static_cast<uint8_t>(c); };
  std::vector<int32_t> tokens = {1};
  for (char c : std::string("call:get_weather{city:")) tokens.push_back(byte(c));
  tokens.push_back(3);
  for (char c : std::string("Oslo")) tokens.push_back(byte(c));
  tokens.push_back(3);
  tokens.push_back(byte('}'));
  tokens.push_back(2);
  GrammarMatcher matcher(grammar, {0});
  // The spelled-out marker is not allowed at the start.
  std::vector<uint64_t> mask = matcher.NextTokenMask();
  EXPECT_FALSE(structured::BitmaskTest(mask.data(), byte('<')));
  for (int32_t t : tokens) {
    mask = matcher.NextTokenMask();
    ASSERT_TRUE(structured::BitmaskTest(mask.data(), t)) << t;
    ASSERT_TRUE(matcher.AcceptToken(t).ok());
  }
  EXPECT_TRUE(matcher.IsAccepting());
}

}  // namespace
}  // namespace tessera::runtime
