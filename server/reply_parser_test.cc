#include "server/reply_parser.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace tessera::server {
namespace {

v1::GenerateRequest Chat(bool tools, v1::ToolChoice::Mode mode = v1::ToolChoice::TOOL_CHOICE_AUTO) {
  v1::GenerateRequest r;
  r.add_messages()->set_role("user");
  if (tools) {
    r.add_tools()->set_name("f");
    r.mutable_tool_choice()->set_mode(mode);
  }
  return r;
}

TEST(ReplyParserTest, ChoicesAreParsedApartAndCallsGetFreshIds) {
  ReplyParser p(Chat(true));
  ReplyPiece a = p.Push(0, "<|channel>thought\nhm<channel|>Hi <|tool_call>call:f{x:1}");
  ReplyPiece b = p.Push(1, "Plain <|tool_call>call:f{x:2}<tool_call|>");
  EXPECT_EQ(a.reasoning, "hm");
  EXPECT_EQ(a.content, "Hi");
  EXPECT_TRUE(a.tool_calls.empty());  // Not closed yet.
  ASSERT_EQ(b.tool_calls.size(), 1u);
  ReplyPiece a2 = p.Push(0, "<tool_call|>");
  ASSERT_EQ(a2.tool_calls.size(), 1u);
  EXPECT_EQ(a2.tool_calls[0].arguments(), R"({"x":1})");
  EXPECT_EQ(b.tool_calls[0].arguments(), R"({"x":2})");
  EXPECT_NE(a2.tool_calls[0].id(), b.tool_calls[0].id());
  EXPECT_EQ(a2.tool_calls[0].id().rfind("call_", 0), 0u);
  EXPECT_EQ(a2.tool_calls[0].id().size(), 29u);
  EXPECT_EQ(p.num_tool_calls(0), 1);
  EXPECT_EQ(p.num_tool_calls(1), 1);
  scheduler::Completion stop;
  stop.reason = scheduler::FinishReason::kStop;
  EXPECT_EQ(ChoiceFinishReason(stop, p.num_tool_calls(0)), "tool_calls");
  EXPECT_EQ(ChoiceFinishReasonProto(stop, 1), v1::FINISH_REASON_TOOL_CALLS);
  scheduler::Completion length;
  length.reason = scheduler::FinishReason::kLength;
  EXPECT_EQ(ChoiceFinishReason(length, 1), "length");
  EXPECT_EQ(ChoiceFinishReason(stop, 0), "stop");
}

TEST(ReplyParserTest, ToolChoiceNoneAndRawPromptsLeaveMarkupInTheText) {
  ReplyParser none(Chat(true, v1::ToolChoice::TOOL_CHOICE_NONE));
  ReplyPiece p = none.Push(0, "<|tool_call>call:f{}<tool_call|>");
  p.content += none.Finish(0).content;
  EXPECT_EQ(p.content, "<|tool_call>call:f{}<tool_call|>");
  v1::GenerateRequest raw;
  raw.set_prompt("x");
  ReplyParser passthrough(raw);
  EXPECT_EQ(passthrough.Push(0, "<|channel>a").content, "<|channel>a");
  EXPECT_TRUE(passthrough.Finish(0).empty());
}

TEST(ReplyParserTest, IdsDoNotRepeat) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(NewToolCallId());
  EXPECT_EQ(ids.size(), 10000u);
}

}  // namespace
}  // namespace tessera::server
