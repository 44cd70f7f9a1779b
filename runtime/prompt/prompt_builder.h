// Turns a Conversation (or raw text) into the Prompt the model reads: the chat template renders
// the turns, each image/audio/video is decoded and preprocessed, placeholders are expanded into
// begin + N soft tokens + end, and the tokenizer turns the expanded text into ids. Every limit
// violation is an InvalidArgument naming the problem and the limit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/media/audio.h"
#include "runtime/media/image.h"
#include "runtime/prompt/conversation.h"
#include "runtime/prompt/prompt.h"
#include "runtime/prompt/tokenizer.h"

namespace tessera::runtime {

// Special token ids, read from the model's tokenizer (never hard-coded in the builder).
struct SpecialTokenIds {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t end_of_turn = -1;  // <turn|>
  int32_t image_begin = -1;  // <|image>
  int32_t image_end = -1;    // <image|>
  int32_t image_soft = -1;   // <|image|>
  int32_t audio_begin = -1;  // <|audio>
  int32_t audio_end = -1;    // <audio|>
  int32_t audio_soft = -1;   // <|audio|>
  int32_t video_soft = -1;   // <|video|>

  // InvalidArgument naming the first token the tokenizer lacks.
  static absl::StatusOr<SpecialTokenIds> FromTokenizer(const Tokenizer& tokenizer);
  // Generation stops on these: <turn|> and <eos>.
  std::vector<int32_t> StopIds() const { return {end_of_turn, eos}; }
};

struct PromptLimits {
  // Images per request (video frames are counted separately).
  int32_t max_images = 32;
  // Pixels and side of a decoded image or frame (decompression bombs are refused from the header).
  int64_t max_image_pixels = int64_t{32} << 20;
  int32_t max_image_side = 8192;
  // Soft tokens per image when the request names none, and the most a request may ask for.
  int32_t default_max_soft_tokens = kDefaultMaxSoftTokens;
  int32_t max_soft_tokens = 1120;
  // Audio: frames of 40 ms per clip (750 = 30 s) and clips per request.
  int32_t max_audio_frames = 750;
  int32_t max_audio_clips = 8;
  // Video: frames per request, soft tokens per frame (Gemma 4 uses 70).
  int32_t max_video_frames = 64;
  int32_t video_frame_soft_tokens = 70;
  // The whole prompt, in tokens (the model's context or less).
  int32_t max_prompt_tokens = 131072;
};

// How many prompt tokens are what, for usage reporting and CountTokens. Media counts are soft
// tokens (rows); their begin/end markers and video timestamps count as text. Video frames are
// image tokens.
struct TokenBreakdown {
  int32_t text = 0;
  int32_t image = 0;
  int32_t audio = 0;
  int32_t total() const { return text + image + audio; }
};

struct BuiltPrompt {
  Prompt prompt;
  TokenBreakdown tokens;
  std::vector<int32_t> stop_ids;
  // The template's output with placeholders expanded: exactly what was tokenized.
  std::string text;
};

class PromptBuilder {
 public:
  // `tokenizer` must outlive the builder.
  PromptBuilder(const Tokenizer* tokenizer, SpecialTokenIds ids, PromptLimits limits = {});

  absl::StatusOr<BuiltPrompt> Build(const Conversation& conversation) const;
  // A completion-style prompt: no template, BOS prepended.
  absl::StatusOr<BuiltPrompt> BuildRawText(std::string_view text) const;

  const SpecialTokenIds& ids() const { return ids_; }
  const PromptLimits& limits() const { return limits_; }

 private:
  absl::StatusOr<BuiltPrompt> Finish(std::string text,
                                     std::vector<std::shared_ptr<const MediaItem>> media) const;

  const Tokenizer* tokenizer_;
  SpecialTokenIds ids_;
  PromptLimits limits_;
};

// "mm:ss" of a video frame's timestamp (minutes grow past 99 if they must).
std::string VideoTimestamp(double seconds);

}  // namespace tessera::runtime
