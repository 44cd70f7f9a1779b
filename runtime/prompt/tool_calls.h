// Gemma 4's tool-call syntax, as its chat template (runtime/prompt/templates/gemma4.jinja) writes
// it, converted to and from what the OpenAI API carries.
//
// The model calls a tool by writing `<|tool_call>call:NAME{ARGS}<tool_call|>`. ARGS is not JSON:
// the template's `format_argument(value, escape_keys=False)` writes
//   strings   <|"|>TEXT<|"|>   TEXT verbatim: no escaping of any character (quotes, backslashes,
//                              newlines, braces stay as they are)
//   booleans  true / false
//   objects   {key:value,...}  keys bare (verbatim), in `dictsort` order
//   arrays    [value,...]
//   others    Python's str(): integers, floats as repr ("0.1", "2.0", "1e+20"), None for null
// ParseGemmaToolCall converts that back to the name and a JSON object text, exactly: what the
// template renders for given arguments parses back to those arguments. Two things cannot round-trip
// because the template does not escape: a string containing `<|"|>`, and a key containing ':' (bare
// keys end at the first ':'). Leniencies, for what a model may write that the template never does:
// ASCII whitespace between tokens, keys written as <|"|>key<|"|>, and `null` for None.
//
// The conversation side: OpenAI sends a tool's result as a separate `role: tool` message after the
// assistant message carrying `tool_calls`; the template instead reads `tool_responses` on the
// assistant message itself and then continues the same model turn. FoldToolResults rewrites the
// former into the latter.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/prompt/conversation.h"

namespace tessera::runtime {

// The markers, as text (the detokenizer must keep them: they are special tokens in Gemma 4's
// tokenizer).
inline constexpr std::string_view kToolCallBegin = "<|tool_call>";
inline constexpr std::string_view kToolCallEnd = "<tool_call|>";
inline constexpr std::string_view kToolResponseBegin = "<|tool_response>";
inline constexpr std::string_view kGemmaQuote = "<|\"|>";

// Nesting bound for arguments (as in the template renderer), so hostile text cannot exhaust the
// stack.
inline constexpr int kMaxToolArgumentDepth = 64;

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // A JSON object, compact, keys in the order written.
};

// `body` is the text between <|tool_call> and <tool_call|>: "call:NAME{ARGS}". InvalidArgument
// naming the byte offset and what was expected when it is not that shape (bad or empty name, an
// unquoted string, a trailing comma, a duplicate key, NaN/inf, trailing text, nesting deeper than
// kMaxToolArgumentDepth).
absl::StatusOr<ParsedToolCall> ParseGemmaToolCall(std::string_view body);

// One argument value as format_argument writes it ("{a:1}", "[<|\"|>x<|\"|>]", "2.0", ...) to
// JSON text. Same errors as above.
absl::StatusOr<std::string> GemmaValueToJson(std::string_view value);

// Rewrites an OpenAI-shaped conversation into the shape the template reads:
// - each `tool` message is attached to the nearest assistant message before it that has
//   tool_calls (only tool messages may stand between them) as tool_responses: its own
//   tool_responses when set, otherwise its text as one response named after the call whose id is
//   its tool_call_id (or, without an id, the call in the same position: the k-th tool message
//   answers the k-th call). Results keep the order of the tool messages;
// - an assistant message without tool_calls that directly follows such results becomes the content
//   of that same message: the template renders results and the answer in one model turn, as the
//   model produced them.
// InvalidArgument (naming the message index) for a tool message with no assistant tool_calls
// before it, a tool_call_id that none of those calls has, more results than calls, or a tool
// message with media parts.
absl::StatusOr<std::vector<Message>> FoldToolResults(std::vector<Message> messages);

}  // namespace tessera::runtime
