// Audio input: WAV or raw PCM to 16 kHz mono float samples (resampled with libsoxr), cut into
// 640-sample frames (40 ms, one soft token each) with the last frame zero-padded (MODEL.md).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/media/media.h"

namespace tessera::runtime {

struct AudioLimits {
  // Frames (40 ms soft tokens) per clip; 750 = 30 s, what Gemma 4 was trained with.
  int32_t max_frames = 750;
  // Accepted input sample rates, in Hz; anything outside is refused as absurd.
  int32_t min_sample_rate = 1000;
  int32_t max_sample_rate = 768000;
  // Channels a WAV may carry (they are averaged to mono).
  int32_t max_channels = 32;
};

// Mono float samples in [-1, 1] at `sample_rate` Hz.
struct PcmAudio {
  int32_t sample_rate = 0;
  std::vector<float> samples;
};

// RIFF/WAVE with PCM 8 (unsigned), 16, 24 or 32-bit integer, or 32/64-bit float samples, also as
// WAVE_FORMAT_EXTENSIBLE; channels are averaged. Integers scale as soundfile does (x / 2^(bits-1));
// float samples are clipped to [-1, 1] and NaN becomes 0.
// The clip's length is checked against the limit from the header, before samples are converted.
absl::StatusOr<PcmAudio> DecodeWav(std::string_view bytes, const AudioLimits& limits = {});

// Raw mono float samples at a stated rate; NaN/infinity is refused, the rest clipped to [-1, 1].
absl::StatusOr<PcmAudio> PcmFromSamples(const float* samples, size_t count, int32_t sample_rate,
                                        const AudioLimits& limits = {});

// InvalidArgument unless `sample_rate` is in the limits' accepted range.
absl::Status CheckSampleRate(int64_t sample_rate, const AudioLimits& limits = {});
// Raw float samples as every input path takes them: NaN or infinity is refused, the rest is
// clipped to [-1, 1] in place.
absl::Status ClipSamples(float* samples, size_t count);

// Number of 640-sample frames a clip of `num_samples` at `sample_rate` becomes at 16 kHz.
int64_t AudioFrameCount(int64_t num_samples, int32_t sample_rate);

// 16 kHz mono samples; libsoxr (high quality) when the rate differs. InvalidArgument for an
// absurd rate.
absl::StatusOr<std::vector<float>> ResampleTo16k(const PcmAudio& audio,
                                                 const AudioLimits& limits = {});

// Zero-padded 640-sample frames of 16 kHz samples, hash filled in. No limit is applied here.
MediaItem FrameAudio(const std::vector<float>& samples_16k);

// The whole audio path: limits, resampling, framing.
absl::StatusOr<MediaItem> PreprocessAudio(const PcmAudio& audio, const AudioLimits& limits = {});

}  // namespace tessera::runtime
