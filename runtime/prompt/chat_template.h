// Gemma 4's chat template (runtime/prompt/templates/gemma4.jinja) rendered by C++ that follows the
// Jinja source statement by statement, so that the output is byte-identical to what Jinja
// (trim_blocks, lstrip_blocks, as transformers' apply_chat_template) makes of it.
//
// The input has the shape the template reads: `messages` is a JSON array of {role, content (a
// string or a list of {type: text|image|audio|video, text}), tool_calls, tool_responses}, `tools` a
// JSON array of OpenAI-style function declarations (or null). Anything the template would fail on
// (no messages, a non-string role, a tool parameter without a type) is an InvalidArgument.
//
// Only this one template is implemented: a checkpoint whose chat_template.jinja is different is
// refused by CheckChatTemplateSupported rather than silently rendered with ours.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {

struct ChatTemplateInput {
  nlohmann::json messages = nlohmann::json::array();
  nlohmann::json tools;  // null or an array.
  bool add_generation_prompt = true;
  bool enable_thinking = false;
  std::string bos_token = "<bos>";
};

// The placeholders the template writes for media (expanded later by the prompt builder).
inline constexpr char kImagePlaceholder[] = "<|image|>";
inline constexpr char kAudioPlaceholder[] = "<|audio|>";
inline constexpr char kVideoPlaceholder[] = "<|video|>";

absl::StatusOr<std::string> RenderGemma4ChatTemplate(const ChatTemplateInput& input);

// The template's pieces, exactly as RenderGemma4ChatTemplate writes them (it is built from these),
// for SessionPrompt, which renders a conversation turn by turn as it arrives.
// "<|turn>" + role ("assistant" is written "model") + "\n".
std::string Gemma4TurnStart(std::string_view role);
// "<turn|>\n".
std::string Gemma4TurnEnd();
// A text item of a message: trimmed, or for the model with its thinking stripped.
std::string Gemma4ContentText(std::string_view role, std::string_view text);
// A media item of a message ("image", "audio" or "video"): its placeholder with the newlines the
// template puts around it; "" for another type.
std::string Gemma4MediaItem(std::string_view type);
// The opening of the system turn (with <|think|> when thinking is on); the system text and
// Gemma4TurnEnd() follow.
std::string Gemma4SystemTurnStart(bool enable_thinking);
// What add_generation_prompt appends (no model turn header right after a tool response).
std::string Gemma4GenerationPrompt(bool enable_thinking, bool after_tool_response);

// XXH3-64 of the template text with line endings normalized to "\n" and trailing whitespace at the
// end of the file removed (editors and JSON round trips change those; nothing else is forgiven).
uint64_t ChatTemplateFingerprint(std::string_view jinja_source);
// The fingerprint of runtime/prompt/templates/gemma4.jinja (chat_template_test checks the file).
inline constexpr uint64_t kGemma4ChatTemplateFingerprint = 15927984803541459292ull;

// OK when `jinja_source` (a checkpoint's chat_template.jinja, or tokenizer_config.json's
// chat_template string) is the template RenderGemma4ChatTemplate implements; otherwise
// InvalidArgument saying so, with both fingerprints.
absl::Status CheckChatTemplateSupported(std::string_view jinja_source);

}  // namespace tessera::runtime
