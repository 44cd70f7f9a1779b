#include "runtime/media/audio.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/media/media_hash.h"
#include "runtime/media/resampler.h"

namespace tessera::runtime {
namespace {

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

absl::Status CheckLength(int64_t num_samples, int32_t rate, const AudioLimits& limits) {
  if (num_samples <= 0) return absl::InvalidArgumentError("audio clip is empty");
  const int64_t frames = AudioFrameCount(num_samples, rate);
  if (frames == 0) {
    // Found by wav_fuzz: 1 sample at 540 kHz resamples to no sample at all.
    return absl::InvalidArgumentError(absl::StrCat("audio clip is ", num_samples, " samples at ",
                                                   rate, " Hz, shorter than one sample at 16 kHz"));
  }
  if (frames > limits.max_frames) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "audio clip is %.2f s (%d frames of 40 ms); the limit is %d frames (%.2f s)",
        static_cast<double>(num_samples) / rate, frames, limits.max_frames,
        limits.max_frames * 0.04));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSampleRate(int64_t rate, const AudioLimits& limits) {
  if (rate < limits.min_sample_rate || rate > limits.max_sample_rate) {
    return absl::InvalidArgumentError(
        absl::StrCat("audio sample rate is ", rate, " Hz; the accepted range is ",
                     limits.min_sample_rate, " to ", limits.max_sample_rate, " Hz"));
  }
  return absl::OkStatus();
}

absl::Status ClipSamples(float* samples, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(samples[i])) {
      return absl::InvalidArgumentError("audio samples must be finite (found NaN or infinity)");
    }
    samples[i] = std::clamp(samples[i], -1.0f, 1.0f);  // As for WAV floats: outside is clipping.
  }
  return absl::OkStatus();
}

int64_t AudioFrameCount(int64_t num_samples, int32_t sample_rate) {
  if (num_samples <= 0 || sample_rate <= 0) return 0;
  const int64_t resampled =
      sample_rate == kAudioSampleRate
          ? num_samples
          : static_cast<int64_t>(
                std::llround(static_cast<double>(num_samples) * kAudioSampleRate / sample_rate));
  return (resampled + kAudioFrameSamples - 1) / kAudioFrameSamples;
}

absl::StatusOr<PcmAudio> DecodeWav(std::string_view bytes, const AudioLimits& limits) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();
  if (size < 12 || memcmp(data, "RIFF", 4) != 0 || memcmp(data + 8, "WAVE", 4) != 0) {
    return absl::InvalidArgumentError(
        "audio is not a WAV file (no RIFF/WAVE header); send WAV bytes or raw PCM with its rate");
  }
  bool have_fmt = false;
  uint16_t format = 0, channels = 0, block_align = 0, bits = 0;
  uint32_t rate = 0;
  const uint8_t* samples = nullptr;
  size_t sample_bytes = 0;
  size_t pos = 12;
  while (pos + 8 <= size) {
    const uint8_t* id = data + pos;
    const uint64_t chunk_size = U32(data + pos + 4);
    const size_t body = pos + 8;
    const size_t available = size - body;
    if (memcmp(id, "fmt ", 4) == 0) {
      if (chunk_size < 16 || chunk_size > available) {
        return absl::InvalidArgumentError("WAV fmt chunk is truncated or too short");
      }
      const uint8_t* f = data + body;
      format = U16(f);
      channels = U16(f + 2);
      rate = U32(f + 4);
      block_align = U16(f + 12);
      bits = U16(f + 14);
      if (format == 0xFFFE) {  // WAVE_FORMAT_EXTENSIBLE: the real format is the GUID's first word.
        if (chunk_size < 40) return absl::InvalidArgumentError("WAV extensible fmt is truncated");
        format = U16(f + 24);
      }
      have_fmt = true;
    } else if (memcmp(id, "data", 4) == 0) {
      if (!have_fmt) return absl::InvalidArgumentError("WAV data chunk comes before its fmt chunk");
      samples = data + body;
      // 0xFFFFFFFF (and 0) are what streaming writers leave when the length was unknown.
      if (chunk_size == 0xFFFFFFFFu || chunk_size == 0) {
        sample_bytes = available;
      } else if (chunk_size > available) {
        return absl::InvalidArgumentError(absl::StrCat("WAV data is truncated: the header says ",
                                                       chunk_size, " bytes, ", available,
                                                       " are present"));
      } else {
        sample_bytes = chunk_size;
      }
      break;
    }
    if (chunk_size > available) break;
    pos = body + chunk_size + (chunk_size & 1);
  }
  if (!have_fmt) return absl::InvalidArgumentError("WAV file has no fmt chunk");
  if (samples == nullptr) return absl::InvalidArgumentError("WAV file has no data chunk");
  const bool is_float = format == 3;
  if (format != 1 && !is_float) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WAV sample format ", format, " is not supported; use PCM integer (1) or float (3)"));
  }
  if (is_float ? (bits != 32 && bits != 64)
               : (bits != 8 && bits != 16 && bits != 24 && bits != 32)) {
    return absl::InvalidArgumentError(absl::StrCat("WAV ", is_float ? "float" : "PCM",
                                                   " samples of ", bits,
                                                   " bits are not supported; use 8, 16, 24 or 32 "
                                                   "(integer) or 32/64 (float)"));
  }
  if (channels == 0 || channels > limits.max_channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WAV has ", channels, " channels; the accepted range is 1 to ", limits.max_channels));
  }
  absl::Status rate_ok = CheckSampleRate(rate, limits);
  if (!rate_ok.ok()) return rate_ok;
  const size_t bytes_per_sample = bits / 8;
  if (block_align != bytes_per_sample * channels) {
    return absl::InvalidArgumentError(absl::StrCat("WAV block align is ", block_align, "; ",
                                                   channels, " channels of ", bits, " bits need ",
                                                   bytes_per_sample * channels));
  }
  const int64_t num_samples = static_cast<int64_t>(sample_bytes / block_align);
  absl::Status length_ok = CheckLength(num_samples, static_cast<int32_t>(rate), limits);
  if (!length_ok.ok()) return length_ok;

  PcmAudio audio;
  audio.sample_rate = static_cast<int32_t>(rate);
  audio.samples.resize(num_samples);
  for (int64_t i = 0; i < num_samples; ++i) {
    const uint8_t* frame = samples + static_cast<size_t>(i) * block_align;
    double sum = 0;
    for (int c = 0; c < channels; ++c) {
      const uint8_t* p = frame + c * bytes_per_sample;
      double v = 0;
      if (is_float && bits == 32) {
        float f;
        memcpy(&f, p, 4);
        v = f;
      } else if (is_float) {
        double d;
        memcpy(&d, p, 8);
        v = d;
      } else if (bits == 8) {
        v = (static_cast<int>(p[0]) - 128) / 128.0;
      } else if (bits == 16) {
        v = static_cast<int16_t>(U16(p)) / 32768.0;
      } else if (bits == 24) {
        const int32_t x = static_cast<int32_t>((p[0] << 8) | (p[1] << 16) |
                                               (static_cast<uint32_t>(p[2]) << 24)) >>
                          8;
        v = x / 8388608.0;
      } else {
        v = static_cast<int32_t>(U32(p)) / 2147483648.0;
      }
      sum += v;
    }
    // Float samples outside [-1, 1] are clipped (as a sound card would) and NaN becomes silence:
    // wav_fuzz found 1e38-sized samples overflowing the resampler to infinity.
    const double mono = sum / channels;
    audio.samples[i] = std::isnan(mono) ? 0.0f : static_cast<float>(std::clamp(mono, -1.0, 1.0));
  }
  return audio;
}

absl::StatusOr<PcmAudio> PcmFromSamples(const float* samples, size_t count, int32_t sample_rate,
                                        const AudioLimits& limits) {
  absl::Status rate_ok = CheckSampleRate(sample_rate, limits);
  if (!rate_ok.ok()) return rate_ok;
  absl::Status length_ok = CheckLength(static_cast<int64_t>(count), sample_rate, limits);
  if (!length_ok.ok()) return length_ok;
  PcmAudio audio;
  audio.sample_rate = sample_rate;
  audio.samples.assign(samples, samples + count);
  if (absl::Status s = ClipSamples(audio.samples.data(), count); !s.ok()) return s;
  return audio;
}

absl::StatusOr<std::vector<float>> ResampleTo16k(const PcmAudio& audio, const AudioLimits& limits) {
  absl::Status rate_ok = CheckSampleRate(audio.sample_rate, limits);
  if (!rate_ok.ok()) return rate_ok;
  if (audio.sample_rate == kAudioSampleRate) return audio.samples;
  auto resampler = Resampler::Create(audio.sample_rate);
  if (!resampler.ok()) return resampler.status();
  std::vector<float> out;
  out.reserve(static_cast<size_t>(
                  AudioFrameCount(static_cast<int64_t>(audio.samples.size()), audio.sample_rate)) *
              kAudioFrameSamples);
  if (absl::Status s = (*resampler)->Push(audio.samples.data(), audio.samples.size(), &out);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = (*resampler)->Finish(&out); !s.ok()) return s;
  return out;
}

MediaItem FrameAudio(const std::vector<float>& samples_16k) {
  MediaItem item;
  item.kind = MediaKind::kAudio;
  item.num_rows =
      static_cast<int32_t>((samples_16k.size() + kAudioFrameSamples - 1) / kAudioFrameSamples);
  item.rows.assign(static_cast<size_t>(item.num_rows) * kAudioFrameSamples, 0.0f);
  std::copy(samples_16k.begin(), samples_16k.end(), item.rows.begin());
  item.hash = HashMediaItem(item);
  return item;
}

absl::StatusOr<MediaItem> PreprocessAudio(const PcmAudio& audio, const AudioLimits& limits) {
  absl::Status rate_ok = CheckSampleRate(audio.sample_rate, limits);
  if (!rate_ok.ok()) return rate_ok;
  absl::Status length_ok =
      CheckLength(static_cast<int64_t>(audio.samples.size()), audio.sample_rate, limits);
  if (!length_ok.ok()) return length_ok;
  absl::StatusOr<std::vector<float>> samples = ResampleTo16k(audio, limits);
  if (!samples.ok()) return samples.status();
  MediaItem item = FrameAudio(*samples);
  if (item.num_rows > limits.max_frames) {
    return absl::InvalidArgumentError(absl::StrCat("audio clip is ", item.num_rows,
                                                   " frames of 40 ms; the limit is ",
                                                   limits.max_frames, " frames"));
  }
  return item;
}

}  // namespace tessera::runtime
