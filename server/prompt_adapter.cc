#include "server/prompt_adapter.h"

#include "absl/strings/str_cat.h"

namespace tessera::server {

absl::StatusOr<std::unique_ptr<PromptAdapter>> PromptAdapter::Create(
    const runtime::ModelConfig& config, const runtime::Tokenizer* tokenizer,
    const std::string& model_dir, const RequestLimits& limits, int32_t max_prompt_tokens) {
  std::unique_ptr<PromptAdapter> a(new PromptAdapter());
  a->tokenizer_ = tokenizer;
  a->bos_ = config.text.bos_token_id;
  a->max_prompt_tokens_ = max_prompt_tokens;
  return a;
}

absl::StatusOr<BuiltPrompt> PromptAdapter::Build(const v1::GenerateRequest& request) const {
  const bool has_messages = request.messages_size() > 0;
  const bool has_prompt = !request.prompt().empty();
  if (has_messages == has_prompt) {
    return absl::InvalidArgumentError("set exactly one of 'messages' or 'prompt'");
  }
  BuiltPrompt out;
  if (has_prompt) {
    out.prompt.token_ids.push_back(bos_);
    const std::vector<int32_t> ids = tokenizer_->Encode(request.prompt());
    out.prompt.token_ids.insert(out.prompt.token_ids.end(), ids.begin(), ids.end());
  } else {
    // NOTE: interim text-only rendering of Gemma 4's turn format (MODEL.md) until the runtime's
    // prompt builder (chat template + media preprocessing) is integrated here.
    std::string text;
    for (int i = 0; i < request.messages_size(); ++i) {
      const v1::Message& m = request.messages(i);
      std::string role = m.role() == "assistant" ? "model" : m.role();
      if (role == "developer") role = "system";
      if (role != "system" && role != "user" && role != "model" && role != "tool") {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", i, "].role '", m.role(),
                         "' is unknown; use system, developer, user, model (assistant) or tool"));
      }
      absl::StrAppend(&text, "<|turn>", role, "\n");
      for (const v1::Part& p : m.parts()) {
        if (p.kind_case() != v1::Part::kText) {
          return absl::UnimplementedError(
              absl::StrCat("messages[", i,
                           "]: image, audio and video parts need the media prompt builder, "
                           "which is not integrated in this build"));
        }
        absl::StrAppend(&text, p.text());
      }
      absl::StrAppend(&text, "<turn|>\n");
    }
    absl::StrAppend(&text, request.enable_thinking()
                               ? "<|turn>model\n"
                               : "<|turn>model\n<|channel>thought\n<channel|>");
    out.prompt.token_ids.push_back(bos_);
    const std::vector<int32_t> ids = tokenizer_->Encode(text);
    out.prompt.token_ids.insert(out.prompt.token_ids.end(), ids.begin(), ids.end());
  }
  if (out.prompt.size() > max_prompt_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", out.prompt.size(),
                                                   " tokens; the limit is ", max_prompt_tokens_,
                                                   " (--max_prompt_tokens / context length)"));
  }
  return out;
}

}  // namespace tessera::server
