// The media of a conversation (ImageInput, AudioInput) turned into MediaItems under PromptLimits:
// the one place each media limit is checked, for PromptBuilder (a whole request) and SessionPrompt
// (a Converse turn) alike. Every refusal is an InvalidArgument naming the problem and the limit's
// PromptLimits field (= the server flag of that name).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/media/audio.h"
#include "runtime/media/media.h"
#include "runtime/prompt/conversation.h"
#include "runtime/prompt/prompt_limits.h"

namespace tessera::runtime {

// Soft tokens of every video frame (Gemma 4 samples video at this budget).
inline constexpr int32_t kVideoFrameSoftTokens = 70;
// The longest audio clip Gemma 4 takes: 750 frames of 40 ms (30 s).
inline constexpr int32_t kMaxAudioFramesPerClip = 750;

// An image's soft-token budget: `requested` (0: limits.default_image_tokens) must be one of
// Gemma 4's budgets and at most limits.max_image_tokens.
absl::StatusOr<int32_t> ImageTokenBudget(int64_t requested, const PromptLimits& limits);

// Counts so far in one `scope` ("request" or "turn") against their limits.
absl::Status CheckImageCount(int64_t images, const PromptLimits& limits, absl::string_view scope);
absl::Status CheckVideoFrameCount(int64_t frames, const PromptLimits& limits,
                                  absl::string_view scope);
absl::Status CheckAudioSeconds(double seconds, const PromptLimits& limits, absl::string_view scope);
// The encoded size of an image (also a bound for fetching one).
absl::Status CheckImageBytes(int64_t bytes, const PromptLimits& limits);

// Decodes an image or video frame (byte, side and pixel limits; corrupt data is refused) and
// preprocesses it at `budget` soft tokens (ImageTokenBudget's result, or kVideoFrameSoftTokens).
absl::StatusOr<std::shared_ptr<const MediaItem>> PreprocessImageInput(const ImageInput& image,
                                                                      int32_t budget,
                                                                      const PromptLimits& limits);

// WAV bytes (at most limits.max_audio_bytes) or PCM samples at a stated rate to mono samples at
// their rate, one clip at most kMaxAudioFramesPerClip frames long.
absl::StatusOr<PcmAudio> DecodeAudioInput(const AudioInput& audio, const PromptLimits& limits);

}  // namespace tessera::runtime
