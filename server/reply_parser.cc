#include "server/reply_parser.h"

#include <random>
#include <utility>

namespace tessera::server {

ReplyParser::ReplyParser(const v1::GenerateRequest& request)
    : parse_(request.messages_size() > 0),
      tool_calls_(parse_ && request.tools_size() > 0 &&
                  !(request.tool_choice().choice_case() == v1::ToolChoice::kMode &&
                    request.tool_choice().mode() == v1::ToolChoice::TOOL_CHOICE_NONE)) {}

runtime::Gemma4OutputParser& ReplyParser::Parser(int32_t index) {
  auto it = parsers_.find(index);
  if (it == parsers_.end()) {
    runtime::OutputParserOptions options;
    options.tool_calls = tool_calls_;
    it = parsers_.emplace(index, runtime::Gemma4OutputParser(options)).first;
  }
  return it->second;
}

ReplyPiece ReplyParser::Convert(std::vector<runtime::OutputEvent> events, int32_t index) {
  ReplyPiece piece;
  for (runtime::OutputEvent& e : events) {
    switch (e.type) {
      case runtime::OutputEvent::Type::kContent:
        piece.content += e.text;
        break;
      case runtime::OutputEvent::Type::kReasoning:
        piece.reasoning += e.text;
        break;
      case runtime::OutputEvent::Type::kToolCall: {
        v1::ToolCall call;
        call.set_id(NewToolCallId());
        call.set_name(std::move(e.tool_call.name));
        call.set_arguments(std::move(e.tool_call.arguments));
        piece.tool_calls.push_back(std::move(call));
        ++calls_[index];
        break;
      }
    }
  }
  return piece;
}

ReplyPiece ReplyParser::Push(int32_t index, const std::string& text) {
  if (!parse_) {
    ReplyPiece piece;
    piece.content = text;
    return piece;
  }
  std::vector<runtime::OutputEvent> events;
  Parser(index).Push(text, &events);
  return Convert(std::move(events), index);
}

ReplyPiece ReplyParser::Finish(int32_t index) {
  if (!parse_) return {};
  std::vector<runtime::OutputEvent> events;
  Parser(index).Finish(&events);
  return Convert(std::move(events), index);
}

const runtime::ParsedOutput* ReplyParser::output(int32_t index) const {
  auto it = parsers_.find(index);
  return it == parsers_.end() ? nullptr : &it->second.output();
}

int32_t ReplyParser::num_tool_calls(int32_t index) const {
  auto it = calls_.find(index);
  return it == calls_.end() ? 0 : it->second;
}

std::string NewToolCallId() {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id.push_back(kAlphabet[rng() % (sizeof(kAlphabet) - 1)]);
  return id;
}

std::string ChoiceFinishReason(const scheduler::Completion& completion, int32_t num_tool_calls) {
  if (completion.reason == scheduler::FinishReason::kStop && num_tool_calls > 0) {
    return "tool_calls";
  }
  return scheduler::FinishReasonName(completion.reason);
}

v1::FinishReason ChoiceFinishReasonProto(const scheduler::Completion& completion,
                                         int32_t num_tool_calls) {
  switch (completion.reason) {
    case scheduler::FinishReason::kStop:
      return num_tool_calls > 0 ? v1::FINISH_REASON_TOOL_CALLS : v1::FINISH_REASON_STOP;
    case scheduler::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case scheduler::FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case scheduler::FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_ERROR;
}

}  // namespace tessera::server
