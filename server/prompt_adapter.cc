#include "server/prompt_adapter.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/chat_template.h"

namespace tessera::server {

runtime::ImageInput ToImageInput(const v1::Image& image) {
  runtime::ImageInput in;
  if (image.source_case() == v1::Image::kEncoded) {
    in.encoded = image.encoded();
  } else if (image.source_case() == v1::Image::kRawRgb) {
    in.raw_rgb = image.raw_rgb();
    in.width = static_cast<int32_t>(std::min<uint32_t>(image.width(), 1u << 30));
    in.height = static_cast<int32_t>(std::min<uint32_t>(image.height(), 1u << 30));
  }
  if (image.has_max_soft_tokens()) {
    in.max_soft_tokens =
        static_cast<int32_t>(std::min<uint32_t>(image.max_soft_tokens(), 1u << 30));
  }
  return in;
}

runtime::VideoFrame ToVideoFrame(const v1::VideoFrame& frame) {
  runtime::VideoFrame out;
  out.image = ToImageInput(frame.image());
  out.image.max_soft_tokens = 0;  // Frames always take the video budget.
  out.timestamp_seconds = static_cast<double>(frame.timestamp_ms()) / 1000.0;
  return out;
}

absl::StatusOr<std::unique_ptr<PromptAdapter>> PromptAdapter::Create(
    const runtime::ModelConfig& config, const runtime::Tokenizer* tokenizer,
    const std::string& model_dir, const runtime::PromptLimits& limits) {
  // A checkpoint that ships its own chat template must ship the one we render (we implement the
  // Gemma 4 template, not a general Jinja engine): refuse it rather than render it wrongly.
  const std::string template_path = model_dir + "/chat_template.jinja";
  if (std::ifstream f(template_path, std::ios::binary); f) {
    std::stringstream source;
    source << f.rdbuf();
    if (absl::Status s = runtime::CheckChatTemplateSupported(source.str()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(template_path, ": ", s.message()));
    }
  }
  auto ids = runtime::SpecialTokenIds::FromTokenizer(*tokenizer);
  if (!ids.ok()) return ids.status();
  std::unique_ptr<PromptAdapter> a(new PromptAdapter());
  a->builder_ = std::make_unique<runtime::PromptBuilder>(tokenizer, *ids, limits);
  return a;
}

absl::StatusOr<runtime::Conversation> PromptAdapter::ToConversation(
    const v1::GenerateRequest& request) const {
  runtime::Conversation conv;
  conv.enable_thinking = request.enable_thinking();
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::Message& m = request.messages(i);
    const std::string role = m.role() == "assistant" ? "model" : m.role();
    if (role != "system" && role != "developer" && role != "user" && role != "model" &&
        role != "tool") {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role '", m.role(),
                       "' is unknown; use system, developer, user, model (assistant) or tool"));
    }
    runtime::Message msg;
    msg.role = role == "model" ? "assistant" : role;
    if (m.tool_calls_size() > 0 && role != "model") {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "]: tool_calls are accepted in model turns only"));
    }
    for (const v1::ToolCall& call : m.tool_calls()) {
      if (call.name().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", i, "]: a tool call without a function name"));
      }
      msg.tool_calls.push_back({call.name(), call.arguments(), call.id()});
    }
    if (!m.tool_call_id().empty() && role != "tool") {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "]: tool_call_id is accepted in tool turns only"));
    }
    msg.tool_call_id = m.tool_call_id();
    for (const v1::Part& p : m.parts()) {
      if (p.kind_case() == v1::Part::kText) {
        msg.parts.push_back(runtime::ContentPart::Text(p.text()));
        continue;
      }
      if (role != "user") {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", i, "]: media parts are accepted in user turns only"));
      }
      runtime::ContentPart part;
      if (p.kind_case() == v1::Part::kImage) {
        if (p.image().source_case() == v1::Image::SOURCE_NOT_SET) {
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", i, "]: an image has neither encoded nor raw_rgb bytes"));
        }
        part.type = runtime::ContentPart::Type::kImage;
        part.image = ToImageInput(p.image());
      } else if (p.kind_case() == v1::Part::kAudio) {
        part.type = runtime::ContentPart::Type::kAudio;
        if (p.audio().source_case() == v1::Audio::kWav) {
          part.audio.wav = p.audio().wav();
        } else if (p.audio().source_case() == v1::Audio::kPcm) {
          part.audio.pcm.assign(p.audio().pcm().samples().begin(), p.audio().pcm().samples().end());
          part.audio.sample_rate =
              static_cast<int32_t>(std::min<uint32_t>(p.audio().pcm().sample_rate(), 1u << 30));
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", i, "]: audio: an audio part has neither wav nor pcm"));
        }
      } else if (p.kind_case() == v1::Part::kVideo) {
        part.type = runtime::ContentPart::Type::kVideo;
        for (int f = 0; f < p.video().frames_size(); ++f) {
          const v1::VideoFrame& vf = p.video().frames(f);
          if (f > 0 && vf.timestamp_ms() < p.video().frames(f - 1).timestamp_ms()) {
            return absl::InvalidArgumentError(absl::StrCat("messages[", i, "]: video frame ", f,
                                                           " is earlier than the frame before it"));
          }
          part.video.frames.push_back(ToVideoFrame(vf));
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat("messages[", i, "]: an empty part"));
      }
      msg.parts.push_back(std::move(part));
    }
    conv.messages.push_back(std::move(msg));
  }
  if (request.tools_size() > 0) {
    absl::StatusOr<std::string> tools = ToolsJson(request.tools());
    if (!tools.ok()) return tools.status();
    conv.tools_json = *std::move(tools);
  }
  return conv;
}

absl::StatusOr<std::string> ToolsJson(const google::protobuf::RepeatedPtrField<v1::Tool>& tools) {
  nlohmann::json out = nlohmann::json::array();
  for (int i = 0; i < tools.size(); ++i) {
    const v1::Tool& t = tools[i];
    if (t.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tools[", i, "] has no name"));
    }
    nlohmann::json function = {{"name", t.name()}, {"description", t.description()}};
    if (!t.parameters().empty()) {
      nlohmann::json parameters = nlohmann::json::parse(t.parameters(), nullptr, false);
      if (parameters.is_discarded() || !parameters.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tools[", i, "] ('", t.name(), "'): parameters must be a JSON Schema object"));
      }
      function["parameters"] = std::move(parameters);
    }
    out.push_back({{"type", "function"}, {"function", std::move(function)}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<BuiltPrompt> PromptAdapter::Build(const v1::GenerateRequest& request) const {
  const bool has_messages = request.messages_size() > 0;
  const bool has_prompt = !request.prompt().empty();
  if (has_messages == has_prompt) {
    return absl::InvalidArgumentError("set exactly one of 'messages' or 'prompt'");
  }
  absl::StatusOr<runtime::BuiltPrompt> built;
  if (has_prompt) {
    built = builder_->BuildRawText(request.prompt());
  } else {
    auto conv = ToConversation(request);
    if (!conv.ok()) return conv.status();
    built = builder_->Build(*conv);
  }
  if (!built.ok()) return built.status();
  BuiltPrompt out;
  out.prompt = std::move(built->prompt);
  out.tokens = built->tokens;
  return out;
}

}  // namespace tessera::server
