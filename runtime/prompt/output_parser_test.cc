#include "runtime/prompt/output_parser.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/chat_template.h"

namespace tessera::runtime {
namespace {

using Json = nlohmann::json;

// What the parser reports, with the streamed events folded back together.
struct Collected {
  std::string content;
  std::string reasoning;
  std::vector<ParsedToolCall> calls;
  std::vector<int32_t> indices;
  ParsedOutput output;
};

Collected Run(const std::vector<std::string>& deltas, OutputParserOptions options = {}) {
  Gemma4OutputParser parser(options);
  std::vector<OutputEvent> events;
  for (const std::string& d : deltas) parser.Push(d, &events);
  parser.Finish(&events);
  Collected c;
  for (const OutputEvent& e : events) {
    switch (e.type) {
      case OutputEvent::Type::kContent:
        EXPECT_FALSE(e.text.empty());
        c.content += e.text;
        break;
      case OutputEvent::Type::kReasoning:
        EXPECT_FALSE(e.text.empty());
        c.reasoning += e.text;
        break;
      case OutputEvent::Type::kToolCall:
        c.calls.push_back(e.tool_call);
        c.indices.push_back(e.tool_index);
        break;
    }
  }
  c.output = parser.output();
  // The events and the accumulated output agree.
  EXPECT_EQ(c.content, c.output.content);
  EXPECT_EQ(c.reasoning, c.output.reasoning);
  EXPECT_EQ(c.calls.size(), c.output.tool_calls.size());
  return c;
}

std::vector<std::string> Bytes(const std::string& text) {
  std::vector<std::string> out;
  for (char ch : text) out.push_back(std::string(1, ch));
  return out;
}

std::vector<std::string> RandomSplit(const std::string& text, std::mt19937* rng) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = std::uniform_int_distribution<size_t>(1, 9)(*rng);
    out.push_back(text.substr(pos, n));
    pos += n;
  }
  return out;
}

// Parses `text` whole, byte by byte and in random pieces; the three must agree (markers split
// anywhere), and the whole-text result is returned.
Collected RunEverySplit(const std::string& text, OutputParserOptions options = {}) {
  const Collected whole = Run({text}, options);
  std::vector<std::vector<std::string>> splits = {Bytes(text)};
  std::mt19937 rng(1234);
  for (int i = 0; i < 20; ++i) splits.push_back(RandomSplit(text, &rng));
  for (const auto& split : splits) {
    const Collected c = Run(split, options);
    EXPECT_EQ(c.content, whole.content) << text;
    EXPECT_EQ(c.reasoning, whole.reasoning) << text;
    EXPECT_EQ(c.indices, whole.indices) << text;
    EXPECT_EQ(c.output.problems.size(), whole.output.problems.size()) << text;
    EXPECT_EQ(c.output.reasoning_unterminated, whole.output.reasoning_unterminated) << text;
    for (size_t k = 0; k < c.calls.size() && k < whole.calls.size(); ++k) {
      EXPECT_EQ(c.calls[k].name, whole.calls[k].name);
      EXPECT_EQ(c.calls[k].arguments, whole.calls[k].arguments);
    }
  }
  return whole;
}

// The model turn the chat template writes for an assistant message (what Gemma 4 was trained to
// generate): the text between "<|turn>model\n" and "<turn|>".
std::string TemplateModelTurn(const Json& message) {
  ChatTemplateInput input;
  input.add_generation_prompt = false;
  input.messages = Json::array({message});
  absl::StatusOr<std::string> rendered = RenderGemma4ChatTemplate(input);
  EXPECT_TRUE(rendered.ok()) << rendered.status();
  const std::string open = "<|turn>model\n";
  const size_t begin = rendered->find(open) + open.size();
  const size_t end = rendered->rfind("<turn|>");
  return rendered->substr(begin, end - begin);
}

Json Call(const std::string& name, const Json& arguments) {
  return {{"function", {{"name", name}, {"arguments", arguments}}}};
}

TEST(OutputParserTest, TemplateWrittenCallsBecomeToolCalls) {
  const Json calls = Json::array(
      {Call("get_weather", {{"city", "Paris"}, {"unit", "celsius"}}),
       Call("search", {{"query", "say \"hi\" {not json}"},
                       {"filters", {{"tags", {"a", "b"}}, {"after", nullptr}, {"exact", true}}},
                       {"limit", 10},
                       {"boost", 1.5}}),
       Call("write_file", {{"path", "a.txt"}, {"content", "line1\nline2 <tool_call|> 日本 😀"}}),
       Call("ping", Json::object())});
  const std::string turn = TemplateModelTurn({{"role", "assistant"}, {"tool_calls", calls}});
  ASSERT_NE(turn.find("<|tool_call>call:ping{}<tool_call|>"), std::string::npos) << turn;
  const Collected c = RunEverySplit(turn);
  EXPECT_EQ(c.content, "");
  EXPECT_EQ(c.reasoning, "");
  EXPECT_TRUE(c.output.problems.empty());
  ASSERT_EQ(c.calls.size(), calls.size());
  EXPECT_EQ(c.indices, (std::vector<int32_t>{0, 1, 2, 3}));
  for (size_t k = 0; k < calls.size(); ++k) {
    EXPECT_EQ(c.calls[k].name, calls[k]["function"]["name"]);
    EXPECT_EQ(Json::parse(c.calls[k].arguments), calls[k]["function"]["arguments"]);
  }
}

TEST(OutputParserTest, ThoughtThenAnswer) {
  const Collected c = RunEverySplit(
      "<|channel>thought\nThe user wants 2+2.\nThat is 4.<channel|>\n\nThe answer is 4.");
  EXPECT_EQ(c.reasoning, "The user wants 2+2.\nThat is 4.");
  EXPECT_EQ(c.content, "The answer is 4.");
  EXPECT_TRUE(c.calls.empty());
  EXPECT_FALSE(c.output.reasoning_unterminated);
}

TEST(OutputParserTest, ThoughtContentAndCallTogether) {
  const std::string turn = TemplateModelTurn(
      {{"role", "assistant"}, {"tool_calls", {Call("get_weather", {{"city", "Paris"}})}}});
  const Collected c = RunEverySplit("<|channel>thought\nI need the weather tool.<channel|>" +
                                    std::string("Let me check.\n") + turn + "\n");
  EXPECT_EQ(c.reasoning, "I need the weather tool.");
  EXPECT_EQ(c.content, "Let me check.");
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.calls[0].name, "get_weather");
  EXPECT_EQ(c.calls[0].arguments, R"({"city":"Paris"})");
}

TEST(OutputParserTest, MarkupInsideTheThoughtIsReasoning) {
  const Collected c =
      RunEverySplit("<|channel>thought\nMaybe <|tool_call>call:f{}<tool_call|>?<channel|>No.");
  EXPECT_EQ(c.reasoning, "Maybe <|tool_call>call:f{}<tool_call|>?");
  EXPECT_EQ(c.content, "No.");
  EXPECT_TRUE(c.calls.empty());
}

TEST(OutputParserTest, ThoughtCutOffStaysReasoning) {
  const Collected c = RunEverySplit("<|channel>thought\nStill thinking about <channel");
  EXPECT_EQ(c.reasoning, "Still thinking about <channel");
  EXPECT_EQ(c.content, "");
  EXPECT_TRUE(c.output.reasoning_unterminated);
  // Cut off inside the header: the header text is what there is.
  const Collected header = RunEverySplit("<|channel>thou");
  EXPECT_EQ(header.reasoning, "thou");
  EXPECT_TRUE(header.output.reasoning_unterminated);
  // A channel without the "thought" header is all reasoning.
  const Collected bare = RunEverySplit("<|channel>pondering<channel|>ok");
  EXPECT_EQ(bare.reasoning, "pondering");
  EXPECT_EQ(bare.content, "ok");
}

TEST(OutputParserTest, GarbledCallStaysInContentAsWrittenAndLaterCallsStillParse) {
  const std::string text =
      "Trying: <|tool_call>call:f{a:unquoted}<tool_call|> then "
      "<|tool_call>call:g{b:<|\"|>ok<|\"|>}<tool_call|>";
  const Collected c = RunEverySplit(text);
  EXPECT_EQ(c.content, "Trying: <|tool_call>call:f{a:unquoted}<tool_call|> then");
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.indices, (std::vector<int32_t>{0}));
  EXPECT_EQ(c.calls[0].name, "g");
  EXPECT_EQ(c.calls[0].arguments, R"({"b":"ok"})");
  ASSERT_EQ(c.output.problems.size(), 1u);
  EXPECT_NE(c.output.problems[0].find("strings must be written"), std::string::npos);
}

TEST(OutputParserTest, CallCutOffStaysInContentAsWritten) {
  const std::string text = "Sure. <|tool_call>call:get_weather{city:<|\"|>Par";
  const Collected c = RunEverySplit(text);
  EXPECT_EQ(c.content, text);
  EXPECT_TRUE(c.calls.empty());
  ASSERT_EQ(c.output.problems.size(), 1u);
  EXPECT_NE(c.output.problems[0].find("ended before <tool_call|>"), std::string::npos);
}

TEST(OutputParserTest, CloseMarkerInsideAStringDoesNotCloseTheCall) {
  const Collected c =
      RunEverySplit("<|tool_call>call:echo{s:<|\"|>a<tool_call|>b}<|\"|>}<tool_call|>");
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.calls[0].arguments, R"({"s":"a<tool_call|>b}"})");
  EXPECT_EQ(c.content, "");
}

TEST(OutputParserTest, OutputEndsAtTheToolResponseMarker) {
  const Collected c = RunEverySplit(
      "<|tool_call>call:f{}<tool_call|><|tool_response>response:f{value:1}<tool_response|>Made up");
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.content, "");
  EXPECT_TRUE(c.output.awaits_tool_response);
  ASSERT_EQ(c.output.problems.size(), 1u);
  EXPECT_NE(c.output.problems[0].find("after <|tool_response>"), std::string::npos);
}

TEST(OutputParserTest, WithoutToolParsingMarkupIsContent) {
  const std::string text = "<|tool_call>call:f{}<tool_call|> and <|tool_response>";
  OutputParserOptions options;
  options.tool_calls = false;
  const Collected c = RunEverySplit(text, options);
  EXPECT_EQ(c.content, text);
  EXPECT_TRUE(c.calls.empty());
  // The thought channel is still never content.
  const Collected t = RunEverySplit("<|channel>thought\nhm<channel|>ok", options);
  EXPECT_EQ(t.reasoning, "hm");
  EXPECT_EQ(t.content, "ok");
}

TEST(OutputParserTest, PlainTextPassesThroughExactly) {
  for (const std::string text :
       {"a < b and c <| d <|tool e <|channel <tool_call f", "Hello, world!\n", "  \n ",
        "x <|\"|> y", "ends with a marker prefix <|tool_c", "<", "<<|channel", "日本語 😀 <|"}) {
    SCOPED_TRACE(text);
    const Collected c = RunEverySplit(text);
    EXPECT_EQ(c.content, text);
    EXPECT_EQ(c.reasoning, "");
    EXPECT_TRUE(c.calls.empty());
    EXPECT_TRUE(c.output.problems.empty());
  }
}

TEST(OutputParserTest, StrayClosingMarkersAreDroppedAndReported) {
  const Collected c = RunEverySplit("Yes<channel|> and <tool_call|>no");
  EXPECT_EQ(c.content, "Yes and no");  // Dropped as if never written.
  EXPECT_EQ(c.output.problems.size(), 2u);
  OutputParserOptions options;
  options.tool_calls = false;
  const Collected plain = RunEverySplit("a<tool_call|>b<channel|>", options);
  EXPECT_EQ(plain.content, "a<tool_call|>b");
}

TEST(OutputParserTest, ContentStreamsBeforeTheOutputEnds) {
  Gemma4OutputParser parser;
  std::vector<OutputEvent> events;
  parser.Push("Hello wor", &events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, "Hello wor");
  events.clear();
  parser.Push("ld <|tool", &events);  // " " and the marker prefix wait.
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, "ld");
  events.clear();
  parser.Push("_call>call:f{}<tool_call|>", &events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, OutputEvent::Type::kToolCall);
  EXPECT_EQ(events[0].tool_call.name, "f");
  events.clear();
  parser.Finish(&events);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(parser.output().content, "Hello world");
}

}  // namespace
}  // namespace tessera::runtime
