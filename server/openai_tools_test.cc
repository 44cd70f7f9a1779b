// The agent fields of OpenAI requests through the real parser entry points (ParseChatCompletion /
// ParseCompletion): what reaches the proto, and every refusal naming its parameter.
#include "server/openai_tools.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/openai_api.h"

namespace tessera::server {
namespace {

constexpr char kWeather[] = R"({"type":"function","function":{"name":"get_weather",
  "description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},
  "required":["city"]}}})";

std::string Chat(const std::string& extra) {
  return R"({"messages":[{"role":"user","content":"hi"}])" + extra + "}";
}

TEST(OpenAiToolsTest, ToolsChoiceAndHistoryReachTheProto) {
  const std::string body = R"({"messages":[
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"{\"temperature\":21}"}],
    "tools":[)" + std::string(kWeather) +
                           R"(],"tool_choice":"required","parallel_tool_calls":false})";
  auto call = ParseChatCompletion(body, {});
  ASSERT_TRUE(call.ok()) << call.status();
  const v1::GenerateRequest& r = call->request;
  ASSERT_EQ(r.tools_size(), 1);
  EXPECT_EQ(r.tools(0).name(), "get_weather");
  EXPECT_EQ(r.tools(0).description(), "Weather");
  EXPECT_TRUE(absl::StrContains(r.tools(0).parameters(), R"("required":["city"])"));
  EXPECT_EQ(r.tool_choice().mode(), v1::ToolChoice::TOOL_CHOICE_REQUIRED);
  EXPECT_FALSE(r.parallel_tool_calls());
  ASSERT_EQ(r.messages_size(), 3);
  ASSERT_EQ(r.messages(1).tool_calls_size(), 1);
  EXPECT_EQ(r.messages(1).tool_calls(0).id(), "call_1");
  EXPECT_EQ(r.messages(1).tool_calls(0).arguments(), R"({"city":"Paris"})");
  EXPECT_EQ(r.messages(2).role(), "tool");
  EXPECT_EQ(r.messages(2).tool_call_id(), "call_1");
  EXPECT_EQ(r.messages(2).parts(0).text(), R"({"temperature":21})");

  auto named = ParseChatCompletion(Chat(R"(,"tools":[)" + std::string(kWeather) +
                                        R"(],"tool_choice":{"type":"function",
                                        "function":{"name":"get_weather"}})"),
                                   {});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->request.tool_choice().function(), "get_weather");
}

TEST(OpenAiToolsTest, StructuredOutputsInEverySpelling) {
  auto schema = ParseChatCompletion(
      Chat(R"(,"response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,
        "schema":{"type":"object","properties":{"a":{"type":"integer"}}}}})"),
      {});
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(schema->request.response_format().json_schema(),
            R"({"properties":{"a":{"type":"integer"}},"type":"object"})");
  auto object = ParseChatCompletion(Chat(R"(,"response_format":{"type":"json_object"})"), {});
  ASSERT_TRUE(object.ok());
  EXPECT_TRUE(object->request.response_format().json_object());
  auto text = ParseChatCompletion(Chat(R"(,"response_format":{"type":"text"})"), {});
  ASSERT_TRUE(text.ok());
  EXPECT_FALSE(text->request.has_response_format());
  auto regex = ParseChatCompletion(Chat(R"(,"structured_outputs":{"regex":"[0-9]+"})"), {});
  ASSERT_TRUE(regex.ok());
  EXPECT_EQ(regex->request.response_format().regex(), "[0-9]+");
  auto choice = ParseChatCompletion(Chat(R"(,"structured_outputs":{"choice":["yes","no"]})"), {});
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->request.response_format().choice().values_size(), 2);
  auto json_text =
      ParseChatCompletion(Chat(R"(,"structured_outputs":{"json":"{\"type\":\"string\"}"})"), {});
  ASSERT_TRUE(json_text.ok());
  EXPECT_EQ(json_text->request.response_format().json_schema(), R"({"type":"string"})");
  auto gbnf = ParseCompletion(R"({"prompt":"x","grammar":"root ::= \"a\""})", {});
  ASSERT_TRUE(gbnf.ok()) << gbnf.status();
  EXPECT_EQ(gbnf->request.response_format().grammar(), "root ::= \"a\"");
  auto llama_schema = ParseChatCompletion(Chat(R"(,"json_schema":{"type":"object"})"), {});
  ASSERT_TRUE(llama_schema.ok());
  EXPECT_EQ(llama_schema->request.response_format().json_schema(), R"({"type":"object"})");
}

TEST(OpenAiToolsTest, ReasoningSwitches) {
  for (const auto& [extra, on] :
       {std::pair<std::string, bool>{R"(,"chat_template_kwargs":{"enable_thinking":true})", true},
        {R"(,"reasoning_effort":"high")", true},
        {R"(,"reasoning_effort":"minimal")", false},
        {R"(,"reasoning_effort":"none","chat_template_kwargs":{"enable_thinking":false})", false},
        {"", false}}) {
    auto call = ParseChatCompletion(Chat(extra), {});
    ASSERT_TRUE(call.ok()) << extra << ": " << call.status();
    EXPECT_EQ(call->request.enable_thinking(), on) << extra;
  }
}

TEST(OpenAiToolsTest, RefusalsNameTheirParameter) {
  const std::string weather = kWeather;
  const struct {
    std::string body;
    std::string message;
    std::string param;
  } kCases[] = {
      {Chat(R"(,"tools":{})"), "'tools' must be an array", "tools"},
      {Chat(R"(,"tools":[{"type":"code_interpreter"}])"), "must be \"function\"", "tools"},
      {Chat(R"(,"tools":[{"type":"function","function":{}}])"), "function.name", "tools"},
      {Chat(R"(,"tools":[)" + weather + "," + weather + "]"), "is repeated", "tools"},
      {Chat(R"(,"tools":[{"type":"function","function":{"name":"f","parameters":[]}}])"),
       "parameters must be a JSON Schema object", "tools"},
      {Chat(R"(,"tool_choice":"sometimes")"), "'tool_choice' is 'sometimes'", "tool_choice"},
      {Chat(R"(,"tool_choice":"required")"), "'tools' is empty", "tool_choice"},
      {Chat(R"(,"tools":[)" + weather +
            R"(],"tool_choice":{"type":"function","function":{"name":"nope"}})"),
       "'nope', which is not among", "tool_choice"},
      {Chat(R"(,"parallel_tool_calls":"yes")"), "must be a boolean", "parallel_tool_calls"},
      {Chat(R"(,"response_format":{"type":"yaml"})"), "'response_format.type' is 'yaml'",
       "response_format"},
      {Chat(R"(,"response_format":{"type":"json_schema","json_schema":{"name":"x"}})"),
       "schema' is required", "response_format"},
      {Chat(R"(,"response_format":{"type":"json_object"},"structured_outputs":{"regex":"a"})"),
       "both constrain the output", "structured_outputs.regex"},
      {Chat(R"(,"structured_outputs":{"structural_tag":{}})"), "is not supported",
       "structured_outputs.structural_tag"},
      {Chat(R"(,"structured_outputs":{"choice":[]})"), "non-empty array",
       "structured_outputs.choice"},
      {Chat(R"(,"tools":[)" + weather + R"(],"response_format":{"type":"json_object"})"),
       "could not call the request's tools", "response_format"},
      {Chat(R"(,"chat_template_kwargs":{"custom":1})"), "'chat_template_kwargs.custom'",
       "chat_template_kwargs.custom"},
      {Chat(R"(,"reasoning_effort":"max")"), "must be none, minimal", "reasoning_effort"},
      {Chat(R"(,"reasoning_effort":"high","chat_template_kwargs":{"enable_thinking":false})"),
       "disagree", "reasoning_effort"},
      {R"({"messages":[{"role":"user","content":"x","tool_calls":[]}]})",
       "tool_calls are accepted in assistant turns only", "messages"},
      {R"({"messages":[{"role":"user","tool_call_id":"c"}]})",
       "tool_call_id is accepted in tool turns only", "messages"},
      {R"({"messages":[{"role":"assistant","tool_calls":[{"function":{"arguments":"{}"}}]}]})",
       "function.name must be a string", "messages"},
  };
  for (const auto& c : kCases) {
    std::string param;
    auto call = ParseChatCompletion(c.body, {}, &param);
    ASSERT_FALSE(call.ok()) << c.body;
    EXPECT_EQ(call.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(call.status().message(), c.message))
        << c.body << " -> " << call.status();
    EXPECT_EQ(param, c.param) << c.body;
  }
  std::string param;
  auto completion = ParseCompletion(R"({"prompt":"x","tools":[]})", {}, &param);
  ASSERT_FALSE(completion.ok());
  EXPECT_EQ(param, "tools");
}

}  // namespace
}  // namespace tessera::server
