#include "runtime/prompt/prompt_builder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/chat_template.h"
#include "runtime/prompt/media_inputs.h"
#include "runtime/prompt/tool_calls.h"

namespace tessera::runtime {
namespace {

using Json = nlohmann::json;

absl::StatusOr<int32_t> RequireToken(const Tokenizer& tokenizer, const char* text) {
  std::optional<int32_t> id = tokenizer.TokenId(text);
  if (!id.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer has no ", text, " token, which Gemma 4 prompts need"));
  }
  return *id;
}

// A JSON value from a string the caller sent, or the string itself when it is not JSON.
Json JsonOrString(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Json(text);
  return parsed;
}

struct MediaSlot {
  std::string expansion;
  std::vector<std::shared_ptr<const MediaItem>> items;
};

}  // namespace

absl::StatusOr<SpecialTokenIds> SpecialTokenIds::FromTokenizer(const Tokenizer& tokenizer) {
  SpecialTokenIds ids;
  struct Field {
    int32_t* id;
    const char* text;
  };
  for (const Field& f :
       {Field{&ids.bos, "<bos>"}, Field{&ids.eos, "<eos>"}, Field{&ids.end_of_turn, "<turn|>"},
        Field{&ids.image_begin, "<|image>"}, Field{&ids.image_end, "<image|>"},
        Field{&ids.image_soft, "<|image|>"}, Field{&ids.audio_begin, "<|audio>"},
        Field{&ids.audio_end, "<audio|>"}, Field{&ids.audio_soft, "<|audio|>"},
        Field{&ids.video_soft, "<|video|>"}}) {
    absl::StatusOr<int32_t> id = RequireToken(tokenizer, f.text);
    if (!id.ok()) return id.status();
    *f.id = *id;
  }
  return ids;
}

std::string VideoTimestamp(double seconds) {
  const int64_t total = seconds > 0 ? static_cast<int64_t>(std::floor(seconds)) : 0;
  return absl::StrFormat("%02d:%02d", total / 60, total % 60);
}

std::string VideoFramePrefix(size_t index, double seconds) {
  return absl::StrCat(index == 0 ? "" : " ", VideoTimestamp(seconds), " ");
}

PromptBuilder::PromptBuilder(const Tokenizer* tokenizer, SpecialTokenIds ids, PromptLimits limits)
    : tokenizer_(tokenizer), ids_(ids), limits_(limits) {}

absl::StatusOr<BuiltPrompt> PromptBuilder::Build(const Conversation& request) const {
  // OpenAI's `tool` messages become tool_responses of the assistant turn they answer, the shape
  // the template reads (tool_calls.h); copied only when there are any.
  const Conversation* folded_or_input = &request;
  Conversation folded;
  if (std::any_of(request.messages.begin(), request.messages.end(),
                  [](const Message& m) { return m.role == "tool"; })) {
    absl::StatusOr<std::vector<Message>> messages = FoldToolResults(request.messages);
    if (!messages.ok()) return messages.status();
    folded = request;
    folded.messages = *std::move(messages);
    folded_or_input = &folded;
  }
  const Conversation& conversation = *folded_or_input;
  // Counts first: refuse an oversized request before decoding anything.
  int64_t images = 0, frames = 0;
  for (const Message& m : conversation.messages) {
    for (const ContentPart& p : m.parts) {
      images += p.type == ContentPart::Type::kImage;
      if (p.type == ContentPart::Type::kVideo)
        frames += static_cast<int64_t>(p.video.frames.size());
    }
  }
  if (absl::Status s = CheckImageCount(images, limits_, "request"); !s.ok()) return s;
  if (absl::Status s = CheckVideoFrameCount(frames, limits_, "request"); !s.ok()) return s;

  const std::string image_begin = tokenizer_->TokenText(ids_.image_begin);
  const std::string image_end = tokenizer_->TokenText(ids_.image_end);
  const std::string audio_begin = tokenizer_->TokenText(ids_.audio_begin);
  const std::string audio_end = tokenizer_->TokenText(ids_.audio_end);
  double audio_seconds = 0;

  std::vector<MediaSlot> slots;  // In order of appearance, one per template placeholder.
  Json messages = Json::array();
  for (size_t mi = 0; mi < conversation.messages.size(); ++mi) {
    const Message& m = conversation.messages[mi];
    // A media part's error says which message it is in.
    auto in_message = [mi](const char* what, const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat("messages[", mi, "]: ", what, ": ", s.message()));
    };
    Json message = {{"role", m.role}};
    Json content = Json::array();
    for (const ContentPart& p : m.parts) {
      switch (p.type) {
        case ContentPart::Type::kText: {
          for (const char* marker : {kImagePlaceholder, kAudioPlaceholder, kVideoPlaceholder}) {
            if (p.text.find(marker) != std::string::npos) {
              return absl::InvalidArgumentError(
                  absl::StrCat("message text contains the reserved marker ", marker,
                               "; send media as image, audio or video parts"));
            }
          }
          content.push_back({{"type", "text"}, {"text", p.text}});
          break;
        }
        case ContentPart::Type::kImage: {
          absl::StatusOr<int32_t> budget = ImageTokenBudget(p.image.max_soft_tokens, limits_);
          if (!budget.ok()) return in_message("image", budget.status());
          auto item = PreprocessImageInput(p.image, *budget, limits_);
          if (!item.ok()) return in_message("image", item.status());
          MediaSlot slot;
          std::string soft;
          for (int32_t i = 0; i < (*item)->num_rows; ++i) soft += kImagePlaceholder;
          slot.expansion = absl::StrCat(image_begin, soft, image_end);
          slot.items.push_back(*std::move(item));
          slots.push_back(std::move(slot));
          content.push_back({{"type", "image"}});
          break;
        }
        case ContentPart::Type::kAudio: {
          absl::StatusOr<PcmAudio> pcm = DecodeAudioInput(p.audio, limits_);
          if (!pcm.ok()) return in_message("audio", pcm.status());
          // The request's total, known once each clip's length is (before resampling).
          audio_seconds += static_cast<double>(pcm->samples.size()) / pcm->sample_rate;
          if (absl::Status s = CheckAudioSeconds(audio_seconds, limits_, "request"); !s.ok()) {
            return s;
          }
          AudioLimits audio_limits;
          audio_limits.max_frames = kMaxAudioFramesPerClip;
          absl::StatusOr<MediaItem> item = PreprocessAudio(*pcm, audio_limits);
          if (!item.ok()) return in_message("audio", item.status());
          MediaSlot slot;
          std::string soft;
          for (int32_t i = 0; i < item->num_rows; ++i) soft += kAudioPlaceholder;
          slot.expansion = absl::StrCat(audio_begin, soft, audio_end);
          slot.items.push_back(std::make_shared<const MediaItem>(*std::move(item)));
          slots.push_back(std::move(slot));
          content.push_back({{"type", "audio"}});
          break;
        }
        case ContentPart::Type::kVideo: {
          if (p.video.frames.empty()) return absl::InvalidArgumentError("video has no frames");
          MediaSlot slot;
          for (size_t f = 0; f < p.video.frames.size(); ++f) {
            const VideoFrame& frame = p.video.frames[f];
            if (!std::isfinite(frame.timestamp_seconds) || frame.timestamp_seconds < 0) {
              return absl::InvalidArgumentError(
                  absl::StrCat("video frame ", f, " has an invalid timestamp"));
            }
            auto item = PreprocessImageInput(frame.image, kVideoFrameSoftTokens, limits_);
            if (!item.ok()) {
              return in_message(absl::StrCat("video frame ", f).c_str(), item.status());
            }
            std::string soft;
            for (int32_t i = 0; i < (*item)->num_rows; ++i) soft += kVideoPlaceholder;
            absl::StrAppend(&slot.expansion, VideoFramePrefix(f, frame.timestamp_seconds),
                            image_begin, soft, image_end);
            slot.items.push_back(*std::move(item));
          }
          slots.push_back(std::move(slot));
          content.push_back({{"type", "video"}});
          break;
        }
      }
    }
    // A lone text part renders like a plain string content; keep the list form otherwise.
    if (content.size() == 1 && content[0]["type"] == "text") {
      message["content"] = content[0]["text"];
    } else if (content.empty()) {
      message["content"] = "";
    } else {
      message["content"] = std::move(content);
    }
    if (!m.tool_calls.empty()) {
      Json calls = Json::array();
      for (const ToolCall& call : m.tool_calls) {
        calls.push_back(
            {{"function", {{"name", call.name}, {"arguments", JsonOrString(call.arguments)}}}});
      }
      message["tool_calls"] = std::move(calls);
    }
    if (!m.tool_responses.empty()) {
      Json responses = Json::array();
      for (const ToolResponse& r : m.tool_responses) {
        responses.push_back({{"name", r.name}, {"response", JsonOrString(r.response)}});
      }
      message["tool_responses"] = std::move(responses);
    }
    messages.push_back(std::move(message));
  }

  ChatTemplateInput input;
  input.messages = std::move(messages);
  if (!conversation.tools_json.empty()) {
    input.tools = Json::parse(conversation.tools_json, nullptr, /*allow_exceptions=*/false);
    if (input.tools.is_discarded() || !input.tools.is_array()) {
      return absl::InvalidArgumentError("tools must be a JSON array of function declarations");
    }
  }
  input.add_generation_prompt = conversation.add_generation_prompt;
  input.enable_thinking = conversation.enable_thinking;
  input.bos_token = tokenizer_->TokenText(ids_.bos);
  absl::StatusOr<std::string> rendered = RenderGemma4ChatTemplate(input);
  if (!rendered.ok()) return rendered.status();

  // Expand the placeholders in order; user text cannot contain them (checked above), but tool
  // arguments could, so the k-th placeholder must be the k-th slot's kind.
  std::string text;
  text.reserve(rendered->size());
  size_t pos = 0, slot = 0;
  std::vector<std::shared_ptr<const MediaItem>> items;
  for (;;) {
    size_t best = std::string::npos;
    const char* marker = nullptr;
    for (const char* m : {kImagePlaceholder, kAudioPlaceholder, kVideoPlaceholder}) {
      const size_t at = rendered->find(m, pos);
      if (at < best) {
        best = at;
        marker = m;
      }
    }
    if (best == std::string::npos) break;
    if (slot >= slots.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the conversation contains the reserved marker ", marker,
                       " outside a media part (in a tool call or response?)"));
    }
    text.append(*rendered, pos, best - pos);
    text.append(slots[slot].expansion);
    for (auto& item : slots[slot].items) items.push_back(item);
    ++slot;
    pos = best + strlen(marker);
  }
  text.append(*rendered, pos, std::string::npos);
  return Finish(std::move(text), std::move(items));
}

absl::StatusOr<BuiltPrompt> PromptBuilder::BuildRawText(std::string_view text) const {
  return Finish(
      absl::StrCat(tokenizer_->TokenText(ids_.bos), absl::string_view(text.data(), text.size())),
      {});
}

absl::StatusOr<BuiltPrompt> PromptBuilder::Finish(
    std::string text, std::vector<std::shared_ptr<const MediaItem>> media) const {
  BuiltPrompt out;
  out.prompt.token_ids = tokenizer_->Encode(text);
  out.text = std::move(text);
  out.stop_ids = ids_.StopIds();
  const std::vector<int32_t>& ids = out.prompt.token_ids;
  if (limits_.max_prompt_tokens > 0 &&
      static_cast<int64_t>(ids.size()) > limits_.max_prompt_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt is ", ids.size(), " tokens; the limit is ", limits_.max_prompt_tokens,
                     " tokens (max_prompt_tokens, at most the model's context length)"));
  }
  // Runs of soft tokens, in order, are the media items in order.
  size_t next = 0;
  for (size_t i = 0; i < ids.size();) {
    const int32_t id = ids[i];
    const bool image = id == ids_.image_soft || id == ids_.video_soft;
    const bool audio = id == ids_.audio_soft;
    if (!image && !audio) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < ids.size() && ids[end] == id) ++end;
    if (next >= media.size()) {
      return absl::InvalidArgumentError(absl::StrCat("the prompt contains the media placeholder ",
                                                     tokenizer_->TokenText(id),
                                                     " with no image, audio or video to fill it"));
    }
    const MediaItem& item = *media[next];
    if ((item.kind == MediaKind::kAudio) != audio ||
        static_cast<size_t>(item.num_rows) != end - i) {
      return absl::InvalidArgumentError(
          absl::StrCat("media placeholders do not match the media parts: run ", next, " has ",
                       end - i, " placeholders for an item of ", item.num_rows, " rows"));
    }
    MediaRun run;
    run.start = static_cast<int32_t>(i);
    run.item = media[next++];
    (audio ? out.tokens.audio : out.tokens.image) += item.num_rows;
    out.prompt.media.push_back(std::move(run));
    i = end;
  }
  if (next != media.size()) {
    return absl::InternalError(
        absl::StrCat("prompt has ", next, " media runs for ", media.size(), " media items"));
  }
  out.tokens.text = static_cast<int32_t>(ids.size()) - out.tokens.image - out.tokens.audio;
  return out;
}

}  // namespace tessera::runtime
