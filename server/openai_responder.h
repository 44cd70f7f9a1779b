// The engine's replies as OpenAI JSON: chat.completion / text_completion bodies and their
// streamed chunks, for every choice (n), with reasoning_content and tool_calls parsed out of Gemma
// 4's markup for chat requests (server/reply_parser.h).
//
// Streaming follows OpenAI's chunks: per choice, a first delta with the role, then `content` /
// `reasoning_content` deltas; a tool call as two chunks (its index, id, type and name with empty
// arguments, then the arguments); a final chunk with finish_reason ("tool_calls" after calls);
// once every choice ended, the usage chunk when asked and `data: [DONE]`. Usage counts the prompt
// once and the completion tokens of every choice.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "scheduler/request.h"
#include "server/openai_api.h"
#include "server/reply_parser.h"

namespace tessera::server {

class OpenAiResponder {
 public:
  // `token_text` maps a token id to its text (for logprobs).
  OpenAiResponder(const OpenAiCall& call, std::string id, int64_t created,
                  std::function<std::string(int32_t)> token_text);

  // Streaming: the `data: ...\n\n` SSE events for a delta (empty when there is nothing to send).
  std::string StreamDelta(const scheduler::TokenDelta& delta);
  // The events that end a choice; after the last choice also the usage chunk (when asked) and
  // `data: [DONE]`. A choice that failed sends an error event.
  std::string StreamFinish(const scheduler::Completion& completion);

  // Non-streaming: accumulate deltas and completions, then the whole body.
  void Accumulate(const scheduler::TokenDelta& delta);
  void Accumulate(const scheduler::Completion& completion);
  std::string Body() const;

  // Every choice has ended.
  bool done() const { return finished_ == num_choices_; }
  // The first error a choice ended with (OK when none).
  const absl::Status& error() const { return error_; }

 private:
  struct ChoiceState {
    bool sent_role = false;
    std::string content;  // Non-streaming: the answer; completions: the text (also for offsets).
    std::string reasoning;
    nlohmann::json tool_calls = nlohmann::json::array();
    std::vector<scheduler::TokenLogprob> logprobs;
    std::string finish_reason;
  };

  // Ends a choice in the accumulated state; returns its finish reason.
  std::string EndChoice(const scheduler::Completion& completion, ReplyPiece* tail);
  void AddPiece(ChoiceState& c, ReplyPiece piece);
  std::string Chunk(int32_t index, nlohmann::json delta_or_text,
                    const std::vector<scheduler::TokenLogprob>& lps, const char* finish_reason,
                    int64_t text_offset) const;
  // Chat chunks for a parsed piece (content, reasoning, each tool call).
  std::string PieceChunks(int32_t index, ChoiceState& c, const ReplyPiece& piece,
                          const std::vector<scheduler::TokenLogprob>& lps);
  nlohmann::json LogprobsJson(const std::vector<scheduler::TokenLogprob>& lps,
                              int64_t text_offset) const;
  nlohmann::json UsageJson() const;

  const OpenAiCall& call_;
  const std::string id_;
  const int64_t created_;
  std::function<std::string(int32_t)> token_text_;
  const int32_t num_choices_;
  ReplyParser parser_;
  std::map<int32_t, ChoiceState> choices_;
  int32_t finished_ = 0;
  absl::Status error_;
  // Usage over the choices: the prompt once, completions summed.
  int32_t prompt_tokens_ = 0;
  int32_t cached_prompt_tokens_ = 0;
  int32_t completion_tokens_ = 0;
};

}  // namespace tessera::server
