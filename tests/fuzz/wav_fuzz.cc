// libFuzzer target for the WAV decoder and the audio path (built outside Bazel by
// tests/fuzz/run.sh; replayed under bazel test by wav_regression_test).
#include "tests/fuzz/wav_fuzz.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "runtime/media/audio.h"

namespace tessera::runtime {

std::string CheckWavFuzzInput(const uint8_t* data, size_t size) {
  AudioLimits limits;
  limits.max_frames = 75;
  absl::StatusOr<PcmAudio> audio =
      DecodeWav(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!audio.ok()) {
    if (audio.status().code() != absl::StatusCode::kInvalidArgument) {
      return absl::StrCat("decode failed with a non-InvalidArgument status: ",
                          audio.status().ToString());
    }
    return "";
  }
  if (audio->samples.empty()) return "an empty clip was accepted";
  if (audio->sample_rate < limits.min_sample_rate || audio->sample_rate > limits.max_sample_rate) {
    return absl::StrCat("sample rate ", audio->sample_rate, " was accepted");
  }
  for (float s : audio->samples) {
    if (!std::isfinite(s)) return "a decoded sample is not finite";
  }
  absl::StatusOr<MediaItem> item = PreprocessAudio(*audio, limits);
  if (!item.ok()) return absl::StrCat("preprocessing failed: ", item.status().ToString());
  if (item->num_rows <= 0 || item->num_rows > limits.max_frames) {
    return absl::StrCat(item->num_rows, " frames for a limit of ", limits.max_frames);
  }
  if (item->rows.size() != static_cast<size_t>(item->num_rows) * kAudioFrameSamples) {
    return "rows size mismatch";
  }
  for (float s : item->rows) {
    if (!std::isfinite(s)) return "a resampled sample is not finite";
  }
  return "";
}

}  // namespace tessera::runtime

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string why = tessera::runtime::CheckWavFuzzInput(data, size);
  if (!why.empty()) {
    std::fprintf(stderr, "wav_fuzz: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
