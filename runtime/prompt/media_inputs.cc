#include "runtime/prompt/media_inputs.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/media/image.h"

namespace tessera::runtime {

absl::StatusOr<int32_t> ImageTokenBudget(int64_t requested, const PromptLimits& limits) {
  const int64_t budget = requested > 0 ? requested : limits.default_image_tokens;
  if (budget > limits.max_image_tokens || !IsSoftTokenBudget(static_cast<int32_t>(budget))) {
    return absl::InvalidArgumentError(
        absl::StrCat("image max_soft_tokens is ", budget,
                     "; it must be one of 70, 140, 280, 560, 1120 and at most ",
                     limits.max_image_tokens, " (max_image_tokens)"));
  }
  return static_cast<int32_t>(budget);
}

absl::Status CheckImageCount(int64_t images, const PromptLimits& limits, absl::string_view scope) {
  if (images <= limits.max_images_per_request) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("the ", scope, " has ", images, " images; the limit is ",
                   limits.max_images_per_request, " (max_images_per_request)"));
}

absl::Status CheckVideoFrameCount(int64_t frames, const PromptLimits& limits,
                                  absl::string_view scope) {
  if (frames <= limits.max_video_frames) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("the ", scope, " has ", frames,
                                                 " video frames; the limit is ",
                                                 limits.max_video_frames, " (max_video_frames)"));
}

absl::Status CheckAudioSeconds(double seconds, const PromptLimits& limits,
                               absl::string_view scope) {
  if (seconds <= limits.max_audio_seconds) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("the ", scope, " has ", seconds, " s of audio; the limit is ",
                   limits.max_audio_seconds, " s (max_audio_seconds)"));
}

absl::Status CheckImageBytes(int64_t bytes, const PromptLimits& limits) {
  if (bytes <= limits.max_image_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("an image is ", bytes, " bytes; the limit is ",
                                                 limits.max_image_bytes, " (max_image_bytes)"));
}

absl::StatusOr<std::shared_ptr<const MediaItem>> PreprocessImageInput(const ImageInput& image,
                                                                      int32_t budget,
                                                                      const PromptLimits& limits) {
  ImageLimits image_limits;
  image_limits.max_side = limits.max_image_side;
  image_limits.max_pixels = limits.max_image_pixels;
  absl::StatusOr<RgbImage> rgb;
  if (!image.encoded.empty()) {
    if (absl::Status s = CheckImageBytes(static_cast<int64_t>(image.encoded.size()), limits);
        !s.ok()) {
      return s;
    }
    rgb = DecodeImage(image.encoded, image_limits);
  } else if (!image.raw_rgb.empty()) {
    rgb = RgbFromRaw(image.raw_rgb, image.width, image.height, image_limits);
  } else {
    return absl::InvalidArgumentError("an image has neither encoded nor raw_rgb bytes");
  }
  if (!rgb.ok()) return rgb.status();
  absl::StatusOr<MediaItem> item = PreprocessImage(*rgb, budget);
  if (!item.ok()) return item.status();
  return std::make_shared<const MediaItem>(*std::move(item));
}

absl::StatusOr<PcmAudio> DecodeAudioInput(const AudioInput& audio, const PromptLimits& limits) {
  AudioLimits audio_limits;
  audio_limits.max_frames = kMaxAudioFramesPerClip;
  if (!audio.wav.empty()) {
    if (static_cast<int64_t>(audio.wav.size()) > limits.max_audio_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("an audio clip is ", audio.wav.size(),
                                                     " bytes; the limit is ",
                                                     limits.max_audio_bytes, " (max_audio_bytes)"));
    }
    return DecodeWav(audio.wav, audio_limits);
  }
  if (audio.pcm.empty() && audio.sample_rate == 0) {
    return absl::InvalidArgumentError("an audio part has neither wav nor pcm");
  }
  return PcmFromSamples(audio.pcm.data(), audio.pcm.size(), audio.sample_rate, audio_limits);
}

}  // namespace tessera::runtime
