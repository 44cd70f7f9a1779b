// Turns the public proto's prompt fields into a runtime::Prompt: `prompt` (raw text, BOS
// prepended) here, and `messages` (chat template, media preprocessing) through the runtime's
// prompt builder. Enforces the prompt-size limits with messages that name them.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model_config.h"
#include "runtime/prompt.h"
#include "runtime/tokenizer.h"
#include "server/engine_backend.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

struct BuiltPrompt {
  runtime::Prompt prompt;
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
  absl::StatusOr<runtime::MediaItem> Image(const v1::Image& image) const;
  // Adds the clip's duration to *seconds_used and checks it against --max_audio_seconds.
  absl::StatusOr<runtime::MediaItem> Audio(const v1::Audio& audio, double* seconds_used) const;

  const runtime::Tokenizer* tokenizer_ = nullptr;
  runtime::ModelConfig config_;
  RequestLimits limits_;
  int32_t bos_ = 2;
  int32_t max_prompt_tokens_ = 0;
};

}  // namespace tessera::server
