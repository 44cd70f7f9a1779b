#include "server/prompt_adapter.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/media/image.h"
#include "runtime/prompt/chat_template.h"

namespace tessera::server {
namespace {

absl::StatusOr<runtime::ImageInput> ToImageInput(const v1::Image& image,
                                                 const RequestLimits& limits) {
  runtime::ImageInput in;
  if (image.source_case() == v1::Image::kEncoded) {
    if (static_cast<int64_t>(image.encoded().size()) > limits.max_image_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("an image is ", image.encoded().size(), " bytes; the limit is ",
                       limits.max_image_bytes, " (--max_image_bytes)"));
    }
    in.encoded = image.encoded();
  } else if (image.source_case() == v1::Image::kRawRgb) {
    in.raw_rgb = image.raw_rgb();
    in.width = static_cast<int32_t>(std::min<uint32_t>(image.width(), 1u << 30));
    in.height = static_cast<int32_t>(std::min<uint32_t>(image.height(), 1u << 30));
  } else {
    return absl::InvalidArgumentError("an image has neither encoded nor raw_rgb bytes");
  }
  if (image.has_max_soft_tokens()) {
    const uint32_t budget = image.max_soft_tokens();
    if (!runtime::IsSoftTokenBudget(static_cast<int32_t>(std::min<uint32_t>(budget, 1u << 30))) ||
        budget > static_cast<uint32_t>(limits.max_image_tokens)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image max_soft_tokens is ", budget, "; use 70, 140, 280, 560 or 1120, at most ",
          limits.max_image_tokens, " (--max_image_tokens)"));
    }
    in.max_soft_tokens = static_cast<int32_t>(budget);
  }
  return in;
}

absl::StatusOr<runtime::AudioInput> ToAudioInput(const v1::Audio& audio,
                                                 const RequestLimits& limits) {
  runtime::AudioInput in;
  if (audio.source_case() == v1::Audio::kWav) {
    if (static_cast<int64_t>(audio.wav().size()) > limits.max_audio_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("an audio clip is ", audio.wav().size(), " bytes; the limit is ",
                       limits.max_audio_bytes, " (--max_audio_bytes)"));
    }
    in.wav = audio.wav();
  } else if (audio.source_case() == v1::Audio::kPcm) {
    in.pcm.assign(audio.pcm().samples().begin(), audio.pcm().samples().end());
    in.sample_rate = static_cast<int32_t>(std::min<uint32_t>(audio.pcm().sample_rate(), 1u << 30));
  } else {
    return absl::InvalidArgumentError("an audio part has neither wav nor pcm");
  }
  return in;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PromptAdapter>> PromptAdapter::Create(
    const runtime::ModelConfig& config, const runtime::Tokenizer* tokenizer,
    const std::string& model_dir, const RequestLimits& limits, int32_t max_prompt_tokens) {
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
  runtime::PromptLimits pl;
  pl.max_images = limits.max_images_per_request;
  pl.max_image_pixels = limits.max_image_pixels;
  pl.max_image_side = limits.max_image_side;
  pl.default_max_soft_tokens = limits.default_image_tokens;
  pl.max_soft_tokens = limits.max_image_tokens;
  // One clip is at most 30 s (750 frames, the model's limit) or the request's audio budget.
  pl.max_audio_frames = std::max<int32_t>(
      1, std::min<int32_t>(750, static_cast<int32_t>(limits.max_audio_seconds * 25.0f)));
  pl.max_audio_clips = std::max<int32_t>(1, static_cast<int32_t>(limits.max_audio_seconds));
  pl.max_video_frames = limits.max_video_frames;
  pl.max_prompt_tokens = max_prompt_tokens;
  std::unique_ptr<PromptAdapter> a(new PromptAdapter());
  a->limits_ = limits;
  a->max_prompt_tokens_ = max_prompt_tokens;
  a->builder_ = std::make_unique<runtime::PromptBuilder>(tokenizer, *ids, pl);
  return a;
}

absl::StatusOr<runtime::Conversation> PromptAdapter::ToConversation(
    const v1::GenerateRequest& request) const {
  runtime::Conversation conv;
  conv.enable_thinking = request.enable_thinking();
  int images = 0;
  double audio_seconds = 0;
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
        if (++images > limits_.max_images_per_request) {
          return absl::InvalidArgumentError(
              absl::StrCat("more than ", limits_.max_images_per_request,
                           " images in one request (--max_images_per_request)"));
        }
        auto in = ToImageInput(p.image(), limits_);
        if (!in.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", i, "]: image: ", in.status().message()));
        }
        part.type = runtime::ContentPart::Type::kImage;
        part.image = *std::move(in);
      } else if (p.kind_case() == v1::Part::kAudio) {
        auto in = ToAudioInput(p.audio(), limits_);
        if (!in.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", i, "]: audio: ", in.status().message()));
        }
        // The request's total audio, checked before decoding where the length is known.
        if (!in->pcm.empty() && in->sample_rate > 0) {
          audio_seconds += static_cast<double>(in->pcm.size()) / in->sample_rate;
        }
        part.type = runtime::ContentPart::Type::kAudio;
        part.audio = *std::move(in);
      } else if (p.kind_case() == v1::Part::kVideo) {
        if (p.video().frames_size() > limits_.max_video_frames) {
          return absl::InvalidArgumentError(absl::StrCat(
              "messages[", i, "]: video has ", p.video().frames_size(), " frames; the limit is ",
              limits_.max_video_frames, " (--max_video_frames)"));
        }
        part.type = runtime::ContentPart::Type::kVideo;
        uint64_t last_ms = 0;
        for (int f = 0; f < p.video().frames_size(); ++f) {
          const v1::VideoFrame& vf = p.video().frames(f);
          if (f > 0 && vf.timestamp_ms() < last_ms) {
            return absl::InvalidArgumentError(absl::StrCat("messages[", i, "]: video frame ", f,
                                                           " is earlier than the frame before it"));
          }
          last_ms = vf.timestamp_ms();
          auto in = ToImageInput(vf.image(), limits_);
          if (!in.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("messages[", i, "]: video frame ", f, ": ", in.status().message()));
          }
          runtime::VideoFrame frame;
          frame.image = *std::move(in);
          frame.timestamp_seconds = static_cast<double>(vf.timestamp_ms()) / 1000.0;
          part.video.frames.push_back(std::move(frame));
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat("messages[", i, "]: an empty part"));
      }
      msg.parts.push_back(std::move(part));
    }
    conv.messages.push_back(std::move(msg));
  }
  if (audio_seconds > limits_.max_audio_seconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", audio_seconds, " s of audio; the limit is ",
                     limits_.max_audio_seconds, " s (--max_audio_seconds)"));
  }
  return conv;
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
  if (!built.ok()) {
    // Name the server flag behind the builder's limit where there is one.
    const absl::string_view message = built.status().message();
    const char* flag = "";
    if (absl::StartsWith(message, "prompt is ")) {
      flag = " (--max_prompt_tokens / context length)";
    } else if (absl::StartsWith(message, "audio clip is ") &&
               absl::StrContains(message, "the limit is")) {
      flag = " (--max_audio_seconds; 30 s per clip at most)";
    }
    return absl::Status(built.status().code(), absl::StrCat(message, flag));
  }
  // WAV clips' lengths are known only after decoding: check the request's total now.
  const double audio_seconds = built->tokens.audio * 0.04;
  if (audio_seconds > limits_.max_audio_seconds + 0.04) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", audio_seconds, " s of audio; the limit is ",
                     limits_.max_audio_seconds, " s (--max_audio_seconds)"));
  }
  BuiltPrompt out;
  out.prompt = std::move(built->prompt);
  out.tokens = built->tokens;
  return out;
}

}  // namespace tessera::server
