// The public proto's prompt fields mapped onto the runtime's prompt inputs: a GenerateRequest onto
// runtime::Conversation (built by runtime::PromptBuilder), an Image or VideoFrame onto
// runtime::ImageInput / VideoFrame (also for Converse sessions, runtime::SessionPrompt). This file
// checks structure only (roles, one of messages or prompt, media in user turns, frame order);
// every limit is checked by the runtime (runtime/prompt/media_inputs.h, the builders).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/prompt/conversation.h"
#include "runtime/prompt/prompt.h"
#include "runtime/prompt/prompt_builder.h"
#include "runtime/prompt/prompt_limits.h"
#include "runtime/prompt/tokenizer.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

struct BuiltPrompt {
  runtime::Prompt prompt;
  runtime::TokenBreakdown tokens;  // Text, image (and video) and audio tokens.
};

// An image as the runtime takes it (max_soft_tokens 0: the server's default budget).
runtime::ImageInput ToImageInput(const v1::Image& image);
runtime::VideoFrame ToVideoFrame(const v1::VideoFrame& frame);
// The request's tools as the chat template reads them: a JSON array of OpenAI-style function
// declarations ({type: "function", function: {name, description, parameters}}). InvalidArgument
// naming the tool whose parameters are not a JSON object.
absl::StatusOr<std::string> ToolsJson(const google::protobuf::RepeatedPtrField<v1::Tool>& tools);

class PromptAdapter {
 public:
  // Refuses a model directory whose chat_template.jinja is not the Gemma 4 template we render.
  // `limits` has max_prompt_tokens resolved against the model's context.
  static absl::StatusOr<std::unique_ptr<PromptAdapter>> Create(const runtime::ModelConfig& config,
                                                               const runtime::Tokenizer* tokenizer,
                                                               const std::string& model_dir,
                                                               const runtime::PromptLimits& limits);
  absl::StatusOr<BuiltPrompt> Build(const v1::GenerateRequest& request) const;

  const runtime::SpecialTokenIds& ids() const { return builder_->ids(); }
  const runtime::PromptLimits& limits() const { return builder_->limits(); }

 private:
  PromptAdapter() = default;
  absl::StatusOr<runtime::Conversation> ToConversation(const v1::GenerateRequest& request) const;

  std::unique_ptr<runtime::PromptBuilder> builder_;
};

}  // namespace tessera::server
