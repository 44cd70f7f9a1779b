// The responder's JSON for tool calls, reasoning and several choices, streamed and whole. (The
// official `openai` client reads these end to end in tests/node/agents.js.)
#include "server/openai_responder.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tessera::server {
namespace {

using nlohmann::json;

OpenAiCall ChatCall(const std::string& extra) {
  auto call = ParseChatCompletion(
      R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",
          "function":{"name":"get_weather","parameters":{"type":"object"}}}])" +
          extra + "}",
      {});
  EXPECT_TRUE(call.ok()) << call.status();
  return *call;
}

scheduler::TokenDelta Delta(int32_t index, const std::string& text) {
  scheduler::TokenDelta d;
  d.index = index;
  d.token_ids = {1};
  d.text = text;
  return d;
}

scheduler::Completion Done(int32_t index, scheduler::FinishReason reason, int32_t completion) {
  scheduler::Completion c;
  c.index = index;
  c.reason = reason;
  c.usage.prompt_tokens = 10;
  c.usage.cached_prompt_tokens = index == 0 ? 4 : 8;
  c.usage.completion_tokens = completion;
  return c;
}

// The SSE payloads ("data: X\n\n") of `stream`, parsed; "[DONE]" as the string.
std::vector<json> Events(const std::string& stream) {
  std::vector<json> out;
  for (absl::string_view event : absl::StrSplit(stream, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(event, "data: ")) << event;
    const std::string payload(event.substr(6));
    out.push_back(payload == "[DONE]" ? json("[DONE]") : json::parse(payload));
  }
  return out;
}

TEST(OpenAiResponderTest, StreamsReasoningContentAndToolCallsAsOpenAiDoes) {
  OpenAiCall call = ChatCall(R"(,"stream":true,"stream_options":{"include_usage":true})");
  OpenAiResponder r(call, "chatcmpl-1", 1, [](int32_t) { return "x"; });
  std::string stream;
  for (const char* piece : {"<|channel>thought\nUser wants", " weather.<channel|>Let me check.",
                            " <|tool_call>call:get_weather{city:<|\"|>Par", "is<|\"|>}<tool_call|>",
                            "<|tool_call>call:get_weather{city:<|\"|>Rome<|\"|>}<tool_call|>"}) {
    stream += r.StreamDelta(Delta(0, piece));
  }
  stream += r.StreamFinish(Done(0, scheduler::FinishReason::kStop, 30));
  ASSERT_TRUE(r.done());
  const std::vector<json> events = Events(stream);
  ASSERT_GE(events.size(), 8u);
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string reasoning, content;
  std::vector<json> calls;
  std::string finish;
  for (const json& e : events) {
    if (e.is_string() || e["choices"].empty()) continue;
    const json& choice = e["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    const json& delta = choice["delta"];
    if (delta.contains("reasoning_content")) reasoning += delta["reasoning_content"];
    if (delta.contains("content")) content += delta["content"];
    if (delta.contains("tool_calls")) {
      for (const json& tc : delta["tool_calls"]) {
        const size_t k = tc["index"];
        if (k == calls.size()) {
          // A call's first chunk: id, type and name, empty arguments.
          EXPECT_TRUE(absl::StartsWith(tc["id"].get<std::string>(), "call_"));
          EXPECT_EQ(tc["type"], "function");
          EXPECT_EQ(tc["function"]["arguments"], "");
          calls.push_back(tc);
        } else {
          ASSERT_EQ(k + 1, calls.size());
          EXPECT_FALSE(tc.contains("id"));
          calls[k]["function"]["arguments"] = calls[k]["function"]["arguments"].get<std::string>() +
                                              tc["function"]["arguments"].get<std::string>();
        }
      }
    }
    if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
  }
  EXPECT_EQ(reasoning, "User wants weather.");
  EXPECT_EQ(content, "Let me check.");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(calls[0]["function"]["arguments"].get<std::string>()),
            json({{"city", "Paris"}}));
  EXPECT_EQ(json::parse(calls[1]["function"]["arguments"].get<std::string>()),
            json({{"city", "Rome"}}));
  EXPECT_NE(calls[0]["id"], calls[1]["id"]);
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(events[events.size() - 2]["usage"]["completion_tokens"], 30);
  EXPECT_EQ(events.back(), "[DONE]");
}

TEST(OpenAiResponderTest, WholeBodyWithSeveralChoices) {
  OpenAiCall call = ChatCall(R"(,"n":3)");
  OpenAiResponder r(call, "chatcmpl-2", 1, [](int32_t) { return "x"; });
  r.Accumulate(Delta(1, "Sure."));
  r.Accumulate(Delta(0, "<|tool_call>call:get_weather{city:<|\"|>Oslo<|\"|>}<tool_call|>"));
  r.Accumulate(Delta(2, "<|tool_call>call:get_weather{city:oops}<tool_call|>"));
  r.Accumulate(Done(1, scheduler::FinishReason::kStop, 2));
  EXPECT_FALSE(r.done());
  r.Accumulate(Done(0, scheduler::FinishReason::kStop, 5));
  r.Accumulate(Done(2, scheduler::FinishReason::kLength, 7));
  ASSERT_TRUE(r.done());
  ASSERT_TRUE(r.error().ok());
  const json body = json::parse(r.Body());
  ASSERT_EQ(body["choices"].size(), 3u);
  const json& c0 = body["choices"][0];
  EXPECT_TRUE(c0["message"]["content"].is_null());  // Only a call: content is null.
  EXPECT_EQ(c0["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(c0["message"]["tool_calls"][0]["function"]["arguments"], R"({"city":"Oslo"})");
  EXPECT_EQ(c0["finish_reason"], "tool_calls");
  EXPECT_EQ(body["choices"][1]["message"]["content"], "Sure.");
  EXPECT_FALSE(body["choices"][1]["message"].contains("tool_calls"));
  EXPECT_EQ(body["choices"][1]["finish_reason"], "stop");
  // A call that does not parse stays in content as written; no tool_calls, finish as the engine's.
  EXPECT_EQ(body["choices"][2]["message"]["content"],
            "<|tool_call>call:get_weather{city:oops}<tool_call|>");
  EXPECT_EQ(body["choices"][2]["finish_reason"], "length");
  // The prompt once (and its cache hits as the first choice saw them); completions summed.
  EXPECT_EQ(body["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  EXPECT_EQ(body["usage"]["completion_tokens"], 14);
  EXPECT_EQ(body["usage"]["total_tokens"], 24);
}

TEST(OpenAiResponderTest, CompletionsStreamEveryChoiceThenDone) {
  auto call = ParseCompletion(R"({"prompt":"Once","n":2,"stream":true})", {});
  ASSERT_TRUE(call.ok());
  OpenAiResponder r(*call, "cmpl-1", 1, [](int32_t) { return "x"; });
  std::string stream = r.StreamDelta(Delta(1, "<|channel>raw"));
  stream += r.StreamDelta(Delta(0, "upon"));
  stream += r.StreamFinish(Done(0, scheduler::FinishReason::kLength, 1));
  EXPECT_FALSE(absl::StrContains(stream, "[DONE]"));
  stream += r.StreamFinish(Done(1, scheduler::FinishReason::kLength, 1));
  const std::vector<json> events = Events(stream);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0]["choices"][0]["index"], 1);
  EXPECT_EQ(events[0]["choices"][0]["text"], "<|channel>raw");  // Raw prompts are not parsed.
  EXPECT_EQ(events[1]["choices"][0]["index"], 0);
  EXPECT_EQ(events[3]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(events[4], "[DONE]");
}

TEST(OpenAiResponderTest, AFailedChoiceIsTheResponsesError) {
  OpenAiCall call = ChatCall(R"(,"n":2)");
  OpenAiResponder r(call, "chatcmpl-3", 1, [](int32_t) { return "x"; });
  scheduler::Completion failed = Done(1, scheduler::FinishReason::kError, 0);
  failed.status = absl::ResourceExhaustedError("constrained decoding: too ambiguous");
  r.Accumulate(failed);
  r.Accumulate(Done(0, scheduler::FinishReason::kStop, 1));
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.error().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace tessera::server
