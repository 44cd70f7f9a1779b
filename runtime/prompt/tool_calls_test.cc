#include "runtime/prompt/tool_calls.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/chat_template.h"
#include "runtime/prompt/prompt_builder.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

using Json = nlohmann::json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What the chat template writes for an assistant message calling `name` with `arguments`: the text
// between <|tool_call> and the last <tool_call|> of the render.
std::string TemplateCallBody(const std::string& name, const Json& arguments) {
  ChatTemplateInput input;
  input.add_generation_prompt = false;
  input.messages =
      Json::array({{{"role", "assistant"},
                    {"tool_calls", {{{"function", {{"name", name}, {"arguments", arguments}}}}}}}});
  absl::StatusOr<std::string> rendered = RenderGemma4ChatTemplate(input);
  EXPECT_TRUE(rendered.ok()) << rendered.status();
  const size_t begin = rendered->find(kToolCallBegin);
  const size_t end = rendered->rfind(kToolCallEnd);
  EXPECT_NE(begin, std::string::npos);
  EXPECT_NE(end, std::string::npos);
  return rendered->substr(begin + kToolCallBegin.size(), end - begin - kToolCallBegin.size());
}

// Arguments the template renders, each of which must parse back to itself (JSON equality: numbers
// by value, objects regardless of key order, since dictsort reorders keys).
const char* const kRoundTripArguments[] = {
    R"({})",
    R"({"city": "Paris"})",
    R"({"city": "Paris", "unit": "celsius", "days": 3})",
    // Nested objects and arrays, empty ones included.
    R"({"a": {"b": {"c": {"d": 1}}}})",
    R"({"a": {}, "b": [], "c": [{}], "d": [[]]})",
    R"({"xs": [1, 2, 3], "m": [[1, [2, [3]]], {"k": "v", "n": [true]}]})",
    R"({"filter": {"tags": ["a", "b"], "range": {"min": -1, "max": 1}}})",
    // Numbers as Python's str() prints them: ints, repr floats, exponents both ways.
    R"({"zero": 0, "neg": -3, "two": 2.0, "tenth": 0.1, "big": 1e20, "small": 1e-05})",
    R"({"pi": 3.141592653589793, "tiny": -1.5e-7, "huge": 12345678901234567890, "e": 6.02e23})",
    R"({"i64": -9223372036854775808, "f": 123456.789, "g": 1e16, "h": 1e15})",
    // Booleans and null (rendered None), alone and inside containers.
    R"({"t": true, "f": false, "n": null, "list": [true, false, null], "o": {"x": null}})",
    // Strings: quotes, backslashes, control characters, markup-like text, separators.
    R"({"q": "say \"hi\"", "s": "it's", "path": "C:\\Users\\me", "re": "^\\d+$"})",
    R"({"text": "line1\nline2\ttab\r\nend", "nul": "a\u0001b"})",
    R"({"code": "if (x) { return [1, 2]; }", "kv": "a:b,c", "json": "{\"k\": [1]}"})",
    R"({"markup": "<tool_call|> and <|tool_call> and <turn|> inside a string"})",
    R"({"empty": "", "spaces": "  padded  ", "newline": "\n"})",
    R"({"lookalikes": ["123", "true", "None", "null", "-1e5", "[]", "{}"]})",
    // Unicode, in values and keys.
    R"({"greeting": "héllo ✓ 😀 日本語 — ünïcödé", "clé": "valeur", "emoji🙂": "😀"})",
    // Keys: dictsort order is case-insensitive; spaces and symbols inside keys.
    R"({"b": 1, "B": 2, "a": 3, "my key": 4, "dash-key": 5, "dot.key": 6, "_": 7})",
    // A realistic agent call.
    R"({"path": "src/main.cc", "edits": [{"old": "int x = 1;", "new": "int x = 2;"}],
        "dry_run": false, "context_lines": 3})",
};

TEST(ToolCallsTest, TemplateRendersParseBackToTheSameArguments) {
  for (const char* text : kRoundTripArguments) {
    SCOPED_TRACE(text);
    const Json arguments = Json::parse(text);
    const std::string body = TemplateCallBody("do_it", arguments);
    absl::StatusOr<ParsedToolCall> call = ParseGemmaToolCall(body);
    ASSERT_TRUE(call.ok()) << call.status() << "\nbody: " << body;
    EXPECT_EQ(call->name, "do_it");
    const Json parsed = Json::parse(call->arguments, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << call->arguments;
    EXPECT_EQ(parsed, arguments) << "body: " << body << "\njson: " << call->arguments;
  }
}

TEST(ToolCallsTest, DeepNestingWithinTheLimitRoundTrips) {
  Json value = "leaf";
  for (int i = 0; i < kMaxToolArgumentDepth - 2; ++i) {
    value = (i % 2 == 0) ? Json::array({value}) : Json{{"k", value}};
  }
  const Json arguments = {{"deep", value}};
  absl::StatusOr<ParsedToolCall> call = ParseGemmaToolCall(TemplateCallBody("f", arguments));
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ(Json::parse(call->arguments), arguments);
}

TEST(ToolCallsTest, FunctionNamesAsAgentsWriteThem) {
  for (const char* name : {"get_weather", "tools.shell-exec", "mcp__github__create_issue", "f1"}) {
    absl::StatusOr<ParsedToolCall> call =
        ParseGemmaToolCall(TemplateCallBody(name, Json::object()));
    ASSERT_TRUE(call.ok()) << call.status();
    EXPECT_EQ(call->name, name);
    EXPECT_EQ(call->arguments, "{}");
  }
}

// Values convert to JSON exactly: strings escaped for JSON, number text kept digit for digit.
TEST(ToolCallsTest, ValuesConvertToExactJsonText) {
  const std::pair<const char*, const char*> kCases[] = {
      {R"(<|"|>say "hi"<|"|>)", R"("say \"hi\"")"},
      {"<|\"|>a\\b<|\"|>", R"("a\\b")"},
      {"<|\"|>tab\there\nnew<|\"|>", R"("tab\there\nnew")"},
      {"<|\"|>日本<|\"|>", "\"日本\""},
      {"1e+20", "1e+20"},
      {"2.0", "2.0"},
      {"-0.5", "-0.5"},
      {"123456789012345678901234567890", "123456789012345678901234567890"},
      {"None", "null"},
      {"null", "null"},
      {"true", "true"},
      {"[1,<|\"|>x<|\"|>,None]", R"([1,"x",null])"},
      {"{b:1,a:{c:[]}}", R"({"b":1,"a":{"c":[]}})"},
      // Leniencies: whitespace between tokens, quoted keys.
      {" { a : 1 , b : [ 1 , 2 ] } ", R"({"a":1,"b":[1,2]})"},
      {"{<|\"|>odd:key<|\"|>:1}", R"({"odd:key":1})"},
      {"{\n  a: <|\"|>x<|\"|>\n}", R"({"a":"x"})"},
  };
  for (const auto& [gemma, json] : kCases) {
    SCOPED_TRACE(gemma);
    absl::StatusOr<std::string> out = GemmaValueToJson(gemma);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, json);
  }
}

TEST(ToolCallsTest, MalformedCallsAreRefusedWithTheReason) {
  const std::pair<const char*, const char*> kCases[] = {
      {"call:f{a:hello}", "strings must be written"},
      {"call:f{a:1,}", "a key followed by ':'"},
      {"call:f{a:1,a:2}", "duplicate key 'a'"},
      {"call:f{a:nan}", "NaN and infinities"},
      {"call:f{a:-inf}", "NaN and infinities"},
      {"call:f{a:1e999}", "overflows to infinity"},
      {"call:f{a:<|\"|>open}", "a string closed by"},
      {"call:f{a:1} trailing", "the end of the arguments"},
      {"call:f{a:1", "',' or '}'"},
      {"call:f{a:[1,2}", "',' or ']'"},
      {"call:f{a}", "a key followed by ':'"},
      {"call:f{a:01}", "a number followed by"},
      {"call:f{a:.5}", "a value"},
      {"call:f{a:1.}", "digits after '.'"},
      {"call:f{a:1e}", "exponent digits"},
      {"call:f{a:}", "a value"},
      {"f{a:1}", "expected 'call:NAME{...}'"},
      {"call:{a:1}", "a function name"},
      {"call:f", "a function name"},
      {"call:bad name{}", "is not a name"},
      {"", "expected 'call:NAME{...}'"},
  };
  for (const auto& [body, reason] : kCases) {
    SCOPED_TRACE(body);
    absl::StatusOr<ParsedToolCall> call = ParseGemmaToolCall(body);
    ASSERT_FALSE(call.ok()) << call->arguments;
    EXPECT_EQ(call.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(call.status().message().find(reason), std::string::npos) << call.status();
  }
  // The position is named.
  absl::StatusOr<ParsedToolCall> call = ParseGemmaToolCall("call:f{a:1,b:oops}");
  ASSERT_FALSE(call.ok());
  EXPECT_NE(call.status().message().find("at byte 13"), std::string::npos) << call.status();
}

TEST(ToolCallsTest, HostileNestingIsAnErrorNotACrash) {
  std::string body = "call:f{a:" + std::string(100000, '[') + std::string(100000, ']') + "}";
  absl::StatusOr<ParsedToolCall> call = ParseGemmaToolCall(body);
  ASSERT_FALSE(call.ok());
  EXPECT_NE(call.status().message().find("nest deeper"), std::string::npos) << call.status();
}

Message Text(const std::string& role, const std::string& text) {
  Message m;
  m.role = role;
  m.parts.push_back(ContentPart::Text(text));
  return m;
}

Message Calls(std::vector<ToolCall> calls) {
  Message m;
  m.role = "assistant";
  m.tool_calls = std::move(calls);
  return m;
}

class FoldToolResultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok =
        Tokenizer::FromFile(testing::RunfilePath("third_party/tokenizer/gemma4/tokenizer.json"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok).release();
    fixture_ = new Json(
        Json::parse(ReadFile(testing::FixturesDir() + "/chat_template/renders.json"))["cases"]);
  }
  static const Json& Case(const std::string& name) {
    for (const Json& c : *fixture_) {
      if (c["name"] == name) return c;
    }
    ADD_FAILURE() << "no fixture case " << name;
    return fixture_->at(0);
  }
  absl::StatusOr<std::string> Build(const Conversation& conv) {
    auto ids = SpecialTokenIds::FromTokenizer(*tokenizer_);
    EXPECT_TRUE(ids.ok()) << ids.status();
    PromptBuilder builder(tokenizer_, *ids);
    absl::StatusOr<BuiltPrompt> built = builder.Build(conv);
    if (!built.ok()) return built.status();
    return built->text;
  }

  static inline Tokenizer* tokenizer_ = nullptr;
  static inline Json* fixture_ = nullptr;
};

// OpenAI's shape (an assistant message with tool_calls, then a `tool` message holding the result as
// text) renders exactly as jinja2 rendered the template's own shape (tool_responses on the
// assistant message) in testdata/chat_template/renders.json.
TEST_F(FoldToolResultsTest, OpenAiToolTurnRendersAsTheReferenceRender) {
  const Json& c = Case("tool_call_and_response");
  Conversation conv;
  conv.tools_json = c["input"]["tools"].dump();
  conv.messages.push_back(Text("user", "Weather in Paris?"));
  conv.messages.push_back(Calls({{"get_weather", R"({"city": "Paris", "unit": "celsius"})"}}));
  conv.messages.push_back(Text("tool", R"({"temperature": 21, "sky": "clear"})"));
  // PromptBuilder folds the tool message itself.
  absl::StatusOr<std::string> text = Build(conv);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, c["rendered"].get<std::string>());
}

TEST_F(FoldToolResultsTest, ParallelCallsTakeTheirResultsInOrderAndTheAnswerJoinsTheTurn) {
  std::vector<Message> messages = {
      Text("user", "Weather in Paris and Rome?"),
      Calls({{"get_weather", R"({"city": "Paris"})"}, {"get_time", R"({"city": "Rome"})"}}),
      Text("tool", R"({"temperature": 21})"),
      Text("tool", "14:05"),
      Text("assistant", "Paris is at 21 C; it is 14:05 in Rome."),
      Text("user", "Thanks"),
  };
  absl::StatusOr<std::vector<Message>> folded = FoldToolResults(messages);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_EQ(folded->size(), 3u);
  const Message& turn = (*folded)[1];
  EXPECT_EQ(turn.role, "assistant");
  ASSERT_EQ(turn.tool_responses.size(), 2u);
  EXPECT_EQ(turn.tool_responses[0].name, "get_weather");
  EXPECT_EQ(turn.tool_responses[0].response, R"({"temperature": 21})");
  EXPECT_EQ(turn.tool_responses[1].name, "get_time");
  EXPECT_EQ(turn.tool_responses[1].response, "14:05");
  ASSERT_EQ(turn.parts.size(), 1u);
  EXPECT_EQ(turn.parts[0].text, "Paris is at 21 C; it is 14:05 in Rome.");
  Conversation conv;
  conv.messages = *folded;
  absl::StatusOr<std::string> text = Build(conv);
  ASSERT_TRUE(text.ok()) << text.status();
  // Calls, results (a JSON object as a mapping, other text as value:) and the answer in one turn.
  EXPECT_NE(text->find("<|turn>model\n<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}"
                       "<tool_call|><|tool_call>call:get_time{city:<|\"|>Rome<|\"|>}<tool_call|>"
                       "<|tool_response>response:get_weather{temperature:21}<tool_response|>"
                       "<|tool_response>response:get_time{value:<|\"|>14:05<|\"|>}"
                       "<tool_response|>Paris is at 21 C; it is 14:05 in Rome.<turn|>\n"
                       "<|turn>user\nThanks<turn|>\n"),
            std::string::npos)
      << *text;
}

TEST_F(FoldToolResultsTest, ResultsGivenByNameAndSeveralRounds) {
  Message named;
  named.role = "tool";
  named.tool_responses.push_back({"lookup", R"({"hits": 2})"});
  std::vector<Message> messages = {
      Text("user", "Find it"),
      Calls({{"lookup", R"({"q": "x"})"}}),
      named,
      Calls({{"open", R"({"id": 1})"}}),
      Text("tool", "opened"),
  };
  absl::StatusOr<std::vector<Message>> folded = FoldToolResults(messages);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_EQ(folded->size(), 3u);
  EXPECT_EQ((*folded)[1].tool_responses.size(), 1u);
  EXPECT_EQ((*folded)[1].tool_responses[0].name, "lookup");
  ASSERT_EQ((*folded)[2].tool_responses.size(), 1u);
  EXPECT_EQ((*folded)[2].tool_responses[0].name, "open");
}

TEST(FoldToolResultsByIdTest, ResultsNameTheCallTheirIdAnswers) {
  Message calls = Calls({{"get_weather", "{}", "call_a"}, {"get_time", "{}", "call_b"}});
  Message second = Text("tool", "14:05");
  second.tool_call_id = "call_b";  // Answered first, out of order.
  Message first = Text("tool", "sunny");
  first.tool_call_id = "call_a";
  absl::StatusOr<std::vector<Message>> folded =
      FoldToolResults({Text("user", "?"), calls, second, first});
  ASSERT_TRUE(folded.ok()) << folded.status();
  const auto& responses = (*folded)[1].tool_responses;
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].name, "get_time");
  EXPECT_EQ(responses[0].response, "14:05");
  EXPECT_EQ(responses[1].name, "get_weather");
  Message unknown = Text("tool", "x");
  unknown.tool_call_id = "call_zzz";
  absl::Status s = FoldToolResults({Text("user", "?"), calls, unknown}).status();
  EXPECT_NE(s.message().find("tool_call_id 'call_zzz'"), std::string::npos) << s;
}

TEST(FoldToolResultsErrorsTest, ToolMessagesOutOfPlaceAreRefusedByIndex) {
  EXPECT_EQ(FoldToolResults({Text("tool", "x")}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status after_user = FoldToolResults({Text("user", "hi"), Text("tool", "x")}).status();
  EXPECT_NE(after_user.message().find("messages[1]"), std::string::npos) << after_user;
  absl::Status too_many = FoldToolResults({Text("user", "hi"), Calls({{"f", "{}"}}),
                                           Text("tool", "1"), Text("tool", "2")})
                              .status();
  EXPECT_NE(too_many.message().find("more tool results than the 1 tool_calls"), std::string::npos)
      << too_many;
  Message image;
  image.role = "tool";
  image.parts.push_back(ContentPart{ContentPart::Type::kImage});
  absl::Status media = FoldToolResults({Text("user", "hi"), Calls({{"f", "{}"}}), image}).status();
  EXPECT_NE(media.message().find("must be text"), std::string::npos) << media;
  // A user turn in between closes the assistant's calls.
  absl::Status late = FoldToolResults({Text("user", "hi"), Calls({{"f", "{}"}}), Text("user", "?"),
                                       Text("tool", "1")})
                          .status();
  EXPECT_EQ(late.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::runtime
