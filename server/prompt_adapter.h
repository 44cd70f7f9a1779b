// Turns the public proto's prompt fields into a runtime::Prompt through the runtime's
// PromptBuilder (chat template, image/audio/video preprocessing, placeholder expansion): this file
// only maps proto fields onto runtime::Conversation and enforces the server's flags (byte sizes,
// images per request, total audio seconds) with messages that name them.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/prompt/conversation.h"
#include "runtime/prompt/prompt.h"
#include "runtime/prompt/prompt_builder.h"
#include "runtime/prompt/tokenizer.h"
#include "server/engine_backend.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

struct BuiltPrompt {
  runtime::Prompt prompt;
  runtime::TokenBreakdown tokens;  // Text, image (and video) and audio tokens.
};

class PromptAdapter {
 public:
  static absl::StatusOr<std::unique_ptr<PromptAdapter>> Create(const runtime::ModelConfig& config,
                                                               const runtime::Tokenizer* tokenizer,
                                                               const std::string& model_dir,
                                                               const RequestLimits& limits,
                                                               int32_t max_prompt_tokens);
  absl::StatusOr<BuiltPrompt> Build(const v1::GenerateRequest& request) const;

 private:
  PromptAdapter() = default;
  absl::StatusOr<runtime::Conversation> ToConversation(const v1::GenerateRequest& request) const;

  RequestLimits limits_;
  int32_t max_prompt_tokens_ = 0;
  std::unique_ptr<runtime::PromptBuilder> builder_;
};

}  // namespace tessera::server
