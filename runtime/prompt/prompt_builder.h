// Turns a Conversation (or raw text) into the Prompt the model reads: the chat template renders
// the turns, each image/audio/video is decoded and preprocessed (media_inputs.h), placeholders are
// expanded into begin + N soft tokens + end, and the tokenizer turns the expanded text into ids.
// Every limit violation is an InvalidArgument naming the problem and the limit (PromptLimits).
// SessionPrompt (session_prompt.h) builds the same ids turn by turn for Converse sessions.
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
#include "runtime/prompt/prompt_limits.h"
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
// The text before frame `index` of a video: "mm:ss " (frames after the first are joined by a
// space, as the reference processor writes a video), then the frame's <|image> ... <image|>.
std::string VideoFramePrefix(size_t index, double seconds);

}  // namespace tessera::runtime
