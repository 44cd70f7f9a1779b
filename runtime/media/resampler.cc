#include "runtime/media/resampler.h"

#include <soxr.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/media/media.h"

namespace tessera::runtime {

absl::StatusOr<std::unique_ptr<Resampler>> Resampler::Create(int32_t input_rate) {
  if (input_rate <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("sample rate ", input_rate, " is not positive"));
  }
  return std::unique_ptr<Resampler>(new Resampler(input_rate));
}

Resampler::~Resampler() {
  if (soxr_ != nullptr) soxr_delete(soxr_);
}

absl::Status Resampler::Open() {
  if (soxr_ != nullptr) return absl::OkStatus();
  soxr_error_t error = nullptr;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  soxr_ = soxr_create(input_rate_, kAudioSampleRate, 1, &error, &io, &quality, nullptr);
  if (error != nullptr) {
    soxr_ = nullptr;
    return absl::InternalError(absl::StrCat("libsoxr: ", error));
  }
  return absl::OkStatus();
}

int64_t Resampler::OwedOutput() const {
  if (input_rate_ == kAudioSampleRate) return input_total_;
  return std::llround(static_cast<double>(input_total_) * kAudioSampleRate / input_rate_);
}

void Resampler::Emit(const float* made, size_t count, std::vector<float>* out) {
  held_.insert(held_.end(), made, made + count);
  const int64_t room = std::max<int64_t>(0, OwedOutput() - output_total_);
  const size_t n = static_cast<size_t>(std::min<int64_t>(room, static_cast<int64_t>(held_.size())));
  out->insert(out->end(), held_.begin(), held_.begin() + n);
  held_.erase(held_.begin(), held_.begin() + n);
  output_total_ += static_cast<int64_t>(n);
}

absl::Status Resampler::Push(const float* samples, size_t count, std::vector<float>* out) {
  if (count == 0) return absl::OkStatus();
  input_total_ += static_cast<int64_t>(count);
  if (input_rate_ == kAudioSampleRate) {
    Emit(samples, count, out);
    return absl::OkStatus();
  }
  if (absl::Status s = Open(); !s.ok()) return s;
  buffer_.resize(count * kAudioSampleRate / input_rate_ + 1024);
  while (count > 0) {
    size_t used = 0, made = 0;
    soxr_error_t error =
        soxr_process(soxr_, samples, count, &used, buffer_.data(), buffer_.size(), &made);
    if (error != nullptr) return absl::InternalError(absl::StrCat("libsoxr: ", error));
    if (used == 0 && made == 0) return absl::InternalError("libsoxr made no progress");
    Emit(buffer_.data(), made, out);
    samples += used;
    count -= used;
  }
  return absl::OkStatus();
}

absl::Status Resampler::Finish(std::vector<float>* out) {
  if (soxr_ != nullptr) {
    buffer_.resize(4096);
    for (;;) {  // soxr ends the stream when called with no input; it returns the filter's tail.
      size_t made = 0;
      soxr_error_t error =
          soxr_process(soxr_, nullptr, 0, nullptr, buffer_.data(), buffer_.size(), &made);
      if (error != nullptr) return absl::InternalError(absl::StrCat("libsoxr: ", error));
      if (made == 0) break;
      Emit(buffer_.data(), made, out);
    }
    soxr_delete(soxr_);
    soxr_ = nullptr;
  }
  // soxr may deliver a sample short of the rounded length: pad it.
  const int64_t missing = OwedOutput() - output_total_;
  if (missing > 0) out->insert(out->end(), static_cast<size_t>(missing), 0.0f);
  input_total_ = 0;
  output_total_ = 0;
  held_.clear();
  return absl::OkStatus();
}

}  // namespace tessera::runtime
