// Streaming resampling to the model's 16 kHz with libsoxr (high quality), the one resampler of the
// audio path: whole clips (ResampleTo16k) feed it everything at once, Converse sessions feed it
// chunks as they arrive. The output does not depend on how the input was cut into chunks, and
// after Finish() it is exactly round(n * 16000 / rate) samples for n input samples (soxr's filter
// delay is drained; a sample short is zero-padded), so a clip resampled chunk by chunk equals the
// same clip resampled whole.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

typedef struct soxr* soxr_t;

namespace tessera::runtime {

class Resampler {
 public:
  // InvalidArgument unless `input_rate` is positive. A 16 kHz input passes through unchanged.
  static absl::StatusOr<std::unique_ptr<Resampler>> Create(int32_t input_rate);
  ~Resampler();
  Resampler(const Resampler&) = delete;
  Resampler& operator=(const Resampler&) = delete;

  int32_t input_rate() const { return input_rate_; }
  // Feeds `count` samples and appends to `out` the 16 kHz samples that are final (the filter
  // delays the output a little behind the input).
  absl::Status Push(const float* samples, size_t count, std::vector<float>* out);
  // Ends the stream: appends the rest, so that everything appended since Create (or the last
  // Finish) is round(input samples * 16000 / rate) samples. The resampler can then take a new
  // stream.
  absl::Status Finish(std::vector<float>* out);

 private:
  explicit Resampler(int32_t input_rate) : input_rate_(input_rate) {}
  absl::Status Open();
  // The output length the stream's input so far is owed, rounded.
  int64_t OwedOutput() const;
  // Appends soxr's output from `made` to `out`, never past OwedOutput() (the rest waits in held_).
  void Emit(const float* made, size_t count, std::vector<float>* out);

  const int32_t input_rate_;
  soxr_t soxr_ = nullptr;
  int64_t input_total_ = 0;
  int64_t output_total_ = 0;
  std::vector<float> held_;  // Output past what the input so far is owed (rare: rounding).
  std::vector<float> buffer_;
};

}  // namespace tessera::runtime
