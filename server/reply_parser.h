// What a reply's text becomes in the APIs: for chat requests, Gemma 4's markup is parsed per choice
// (runtime/prompt/output_parser.h) into the answer, the reasoning (thought channel) and tool calls
// with server-assigned ids; for raw prompts the text passes through. Shared by the OpenAI responder
// and the gRPC Generate reactor. Not thread-safe: one per request.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/prompt/output_parser.h"
#include "scheduler/request.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

// Text of one choice parsed since the last call.
struct ReplyPiece {
  std::string content;
  std::string reasoning;
  std::vector<v1::ToolCall> tool_calls;
  bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }
};

class ReplyParser {
 public:
  // Parses markup for `messages` requests; tool calls when the request has tools and its
  // tool_choice is not "none".
  explicit ReplyParser(const v1::GenerateRequest& request);

  ReplyPiece Push(int32_t index, const std::string& text);
  // The choice ended: what was held back.
  ReplyPiece Finish(int32_t index);

  // Everything the choice's text gave (null for raw prompts, or before any text).
  const runtime::ParsedOutput* output(int32_t index) const;
  // Calls the choice made so far.
  int32_t num_tool_calls(int32_t index) const;
  bool parses_markup() const { return parse_; }

 private:
  ReplyPiece Convert(std::vector<runtime::OutputEvent> events, int32_t index);
  runtime::Gemma4OutputParser& Parser(int32_t index);

  const bool parse_;
  const bool tool_calls_;
  std::map<int32_t, runtime::Gemma4OutputParser> parsers_;
  std::map<int32_t, int32_t> calls_;
};

// A fresh tool call id, "call_" + 24 random letters and digits.
std::string NewToolCallId();

// OpenAI's finish_reason for a choice: "tool_calls" when it stopped after making calls.
std::string ChoiceFinishReason(const scheduler::Completion& completion, int32_t num_tool_calls);
v1::FinishReason ChoiceFinishReasonProto(const scheduler::Completion& completion,
                                         int32_t num_tool_calls);

}  // namespace tessera::server
