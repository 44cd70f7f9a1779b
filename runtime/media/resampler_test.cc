#include "runtime/media/resampler.h"

#include <soxr.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::runtime {
namespace {

std::vector<float> Noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.8f, 0.8f);
  std::vector<float> out(n);
  for (float& v : out) v = u(rng);
  return out;
}

// Feeds `in` in chunks of the given sizes (cycled), then finishes.
std::vector<float> Resample(int32_t rate, const std::vector<float>& in,
                            const std::vector<size_t>& chunks) {
  auto r = Resampler::Create(rate);
  EXPECT_TRUE(r.ok());
  std::vector<float> out;
  size_t pos = 0;
  for (size_t k = 0; pos < in.size(); ++k) {
    const size_t n = std::min(chunks[k % chunks.size()], in.size() - pos);
    EXPECT_TRUE((*r)->Push(in.data() + pos, n, &out).ok());
    pos += n;
  }
  EXPECT_TRUE((*r)->Finish(&out).ok());
  return out;
}

// How a clip is cut into chunks does not change a single output sample, and the length is the
// rounded rate ratio: what lets a Converse session's streamed audio equal the same clip sent whole.
TEST(ResamplerTest, OutputIsIndependentOfChunking) {
  for (int32_t rate : {8000, 22050, 24000, 44100, 48000}) {
    const std::vector<float> in = Noise(rate * 3 / 2 + 17, rate);
    const std::vector<float> whole = Resample(rate, in, {in.size()});
    EXPECT_EQ(whole.size(), static_cast<size_t>(std::llround(in.size() * 16000.0 / rate))) << rate;
    for (const std::vector<size_t>& chunks : std::vector<std::vector<size_t>>{
             {1}, {7, 1, 333}, {160}, {static_cast<size_t>(rate / 10)}, {4801, 2}}) {
      EXPECT_EQ(Resample(rate, in, chunks), whole) << rate << " chunk " << chunks[0];
    }
  }
}

// Against libsoxr's own one-shot API (same HQ recipe): the streaming wrapper adds nothing and
// loses nothing. Both are soxr's arithmetic on the same samples, so they agree to float rounding.
TEST(ResamplerTest, MatchesSoxrOneShot) {
  for (int32_t rate : {24000, 44100}) {
    const std::vector<float> in = Noise(rate, 7 + rate);
    const std::vector<float> mine = Resample(rate, in, {1000});
    std::vector<float> ref(mine.size());
    size_t done = 0;
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
    ASSERT_EQ(soxr_oneshot(rate, 16000, 1, in.data(), in.size(), nullptr, ref.data(), ref.size(),
                           &done, &io, &quality, nullptr),
              nullptr);
    ASSERT_GE(done + 1, ref.size());
    for (size_t i = 0; i < done; ++i) ASSERT_NEAR(mine[i], ref[i], 1e-6f) << rate << " at " << i;
  }
}

// A 440 Hz sine at 44.1 kHz becomes the same sine at 16 kHz (away from the edges, where the
// filter starts and ends). Tolerance 1e-3: the HQ filter's passband ripple; a wrong ratio or
// phase is off by the whole amplitude.
TEST(ResamplerTest, SineStaysASine) {
  std::vector<float> in(44100);
  for (size_t i = 0; i < in.size(); ++i) in[i] = 0.5f * std::sin(2 * M_PI * 440 * i / 44100.0);
  const std::vector<float> out = Resample(44100, in, {441});
  ASSERT_EQ(out.size(), 16000u);
  for (int i = 500; i < 15500; ++i) {
    ASSERT_NEAR(out[i], 0.5 * std::sin(2 * M_PI * 440 * i / 16000.0), 1e-3) << i;
  }
}

TEST(ResamplerTest, SixteenKilohertzPassesThroughAndStreamsRestart) {
  const std::vector<float> in = Noise(1000, 3);
  EXPECT_EQ(Resample(16000, in, {3, 400}), in);
  auto r = Resampler::Create(24000);
  ASSERT_TRUE(r.ok());
  std::vector<float> first, second;
  const std::vector<float> clip = Noise(2400, 5);
  ASSERT_TRUE((*r)->Push(clip.data(), clip.size(), &first).ok());
  ASSERT_TRUE((*r)->Finish(&first).ok());
  ASSERT_TRUE((*r)->Push(clip.data(), clip.size(), &second).ok());
  ASSERT_TRUE((*r)->Finish(&second).ok());
  EXPECT_EQ(first, second);  // A finished stream leaves nothing behind.
  EXPECT_EQ(first.size(), 1600u);
  EXPECT_FALSE(Resampler::Create(0).ok());
}

}  // namespace
}  // namespace tessera::runtime
