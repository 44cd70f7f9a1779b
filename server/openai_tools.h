// The agent-facing fields of OpenAI-compatible requests, parsed onto the public proto: tools and
// tool_choice, structured outputs (OpenAI's response_format, vLLM's structured_outputs,
// llama-server's grammar / json_schema), reasoning (chat_template_kwargs.enable_thinking,
// reasoning_effort), and the tool-call fields of messages. Each returns InvalidArgument naming the
// problem and stores the parameter it is about in `param` (for the error body's "param").
#pragma once

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

// tools, tool_choice, parallel_tool_calls (chat completions).
absl::Status ParseToolFields(const nlohmann::json& body, v1::GenerateRequest* request,
                             std::string* param);

// response_format, structured_outputs, grammar, json_schema: at most one of them (both endpoints).
// A forced tool call (tool_choice required or a function) and a response format do not combine,
// nor does a response format with tools the model may call: refused naming response_format.
absl::Status ParseStructuredOutputFields(const nlohmann::json& body, v1::GenerateRequest* request,
                                         std::string* param);

// chat_template_kwargs (enable_thinking only) and reasoning_effort ("none" and "minimal": off;
// "low", "medium", "high": on).
absl::Status ParseReasoningFields(const nlohmann::json& body, v1::GenerateRequest* request,
                                  std::string* param);

// An assistant message's tool_calls, a tool message's tool_call_id. `where` is "messages[i]".
absl::Status ParseMessageToolFields(const nlohmann::json& message, const std::string& role,
                                    const std::string& where, v1::Message* out, std::string* param);

}  // namespace tessera::server
