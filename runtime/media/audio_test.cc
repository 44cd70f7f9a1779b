#include "runtime/media/audio.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "runtime/media/media_hash.h"
#include "runtime/model/safetensors.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::string Seed(const std::string& name) {
  return ReadFile(testing::RunfilePath("tests/fuzz/corpus/wav/") + name);
}

// golden.safetensors: 4380 samples at 16 kHz -> 7 frames of 640, the last zero-padded.
TEST(AudioTest, FramesMatchTheGolden) {
  auto file = SafetensorsFile::Open(testing::FixturesDir() + "/gemma4-tiny/golden.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  auto wave = ToFloatVector(*(*file)->Find("mm_audio_wave"));
  auto frames = ToFloatVector(*(*file)->Find("mm_audio_frames"));
  ASSERT_TRUE(wave.ok() && frames.ok());
  auto audio = PcmFromSamples(wave->data(), wave->size(), 16000);
  ASSERT_TRUE(audio.ok()) << audio.status();
  auto item = PreprocessAudio(*audio);
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(item->kind, MediaKind::kAudio);
  ASSERT_EQ(item->num_rows, 7);
  ASSERT_EQ(item->rows.size(), frames->size());
  for (size_t i = 0; i < frames->size(); ++i) ASSERT_EQ(item->rows[i], (*frames)[i]) << i;
}

// Each WAV seed decodes to the values numpy computed with soundfile's scaling (x / 2^(bits-1),
// 8-bit offset by 128), channels averaged.
TEST(AudioTest, WavDecodingMatchesTheReferenceScaling) {
  for (const char* name : {"s16_stereo.wav", "u8_mono.wav", "s24_stereo.wav", "s32_mono.wav",
                           "f32_stereo_ext.wav", "s16_mono_ext.wav"}) {
    SCOPED_TRACE(name);
    auto audio = DecodeWav(Seed(name));
    ASSERT_TRUE(audio.ok()) << audio.status();
    EXPECT_EQ(audio->sample_rate, 16000);
    const std::string want =
        ReadFile(testing::RunfilePath("runtime/media/testdata/audio/") + name + ".f32");
    ASSERT_EQ(want.size(), audio->samples.size() * 4);
    for (size_t i = 0; i < audio->samples.size(); ++i) {
      float w;
      memcpy(&w, want.data() + 4 * i, 4);
      ASSERT_EQ(audio->samples[i], w) << i;
    }
  }
}

// An 8 kHz 300 Hz sine resampled by soxr equals the same sine sampled at 16 kHz. Tolerance 1e-3:
// 16-bit quantization (3e-5) plus the HQ filter's passband ripple; a wrong rate or a skipped
// resample is off by the whole amplitude.
TEST(AudioTest, ResamplesTo16k) {
  auto audio = DecodeWav(Seed("s16_8k.wav"));
  ASSERT_TRUE(audio.ok()) << audio.status();
  EXPECT_EQ(audio->sample_rate, 8000);
  auto item = PreprocessAudio(*audio);
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(item->num_rows, 25);  // 1 s = 16000 samples = 25 frames.
  const double amplitude = 0.5 * 32767 / 32768;
  double max_err = 0;
  for (int i = 500; i < 15500; ++i) {
    const double want = amplitude * std::sin(2 * M_PI * 300 * i / 16000.0);
    max_err = std::max(max_err, std::fabs(item->rows[i] - want));
  }
  EXPECT_LT(max_err, 1e-3);
}

TEST(AudioTest, RefusesBadInputNamingTheLimit) {
  std::vector<float> long_clip(16000 * 31, 0.0f);
  auto too_long = PcmFromSamples(long_clip.data(), long_clip.size(), 16000);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("the limit is 750 frames"), std::string::npos)
      << too_long.status();
  AudioLimits longer;
  longer.max_frames = 1000;
  EXPECT_TRUE(PcmFromSamples(long_clip.data(), long_clip.size(), 16000, longer).ok());

  auto absurd = PcmFromSamples(long_clip.data(), 10, 5);
  EXPECT_NE(absurd.status().message().find("5 Hz; the accepted range is 1000 to 768000"),
            std::string::npos)
      << absurd.status();
  EXPECT_EQ(PcmFromSamples(long_clip.data(), 0, 16000).status().code(),
            absl::StatusCode::kInvalidArgument);
  // One sample at 540 kHz is no sample at all at 16 kHz (wav_fuzz found soxr crashing on it).
  auto too_short = PcmFromSamples(long_clip.data(), 1, 540000);
  EXPECT_NE(too_short.status().message().find("shorter than one sample at 16 kHz"),
            std::string::npos)
      << too_short.status();
  float nan = std::nanf("");
  EXPECT_EQ(PcmFromSamples(&nan, 1, 16000).status().code(), absl::StatusCode::kInvalidArgument);

  const std::string wav = Seed("s16_stereo.wav");
  for (size_t cut : {size_t{0}, size_t{11}, size_t{30}, size_t{60}, wav.size() - 1}) {
    EXPECT_EQ(DecodeWav(wav.substr(0, cut)).status().code(), absl::StatusCode::kInvalidArgument)
        << "cut at " << cut;
  }
  std::string bad_rate = wav;
  const uint32_t rate = 4000000;
  memcpy(&bad_rate[24], &rate, 4);
  EXPECT_NE(DecodeWav(bad_rate).status().message().find("4000000 Hz"), std::string::npos);
  std::string adpcm = wav;
  adpcm[20] = 2;
  EXPECT_NE(DecodeWav(adpcm).status().message().find("format 2 is not supported"),
            std::string::npos);
  EXPECT_NE(DecodeWav("OggS....").status().message().find("not a WAV"), std::string::npos);
}

// Known value: XXH3-128 of (kind 1, 1 row, samples i/640) by `xxhsum -H2` (high64, low64).
TEST(AudioTest, ContentHashIsStable) {
  std::vector<float> samples(640);
  for (int i = 0; i < 640; ++i) samples[i] = i / 640.0f;
  MediaItem item = FrameAudio(samples);
  EXPECT_EQ(item.hash, (ContentHash{0x7741ee005da89bf6ull, 0x8c6302e8bb409b84ull}));
}

}  // namespace
}  // namespace tessera::runtime
