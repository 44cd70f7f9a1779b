// Prompt building from the public proto on the default model's config and tokenizer: chat
// template, media expansion, WAV decoding variants and the limits.
#include "server/prompt_adapter.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace tessera::server {
namespace {

std::string ModelDir() {
  return std::string(std::getenv("TEST_SRCDIR")) + "/tessera/models/default";
}

// A WAV with `frames` frames of `channels` channels, `bits` per sample (3 = float32).
std::string Wav(int rate, int channels, int bits, int frames, bool is_float = false) {
  const int bytes = bits / 8;
  std::string b = "RIFF____WAVEfmt ";
  auto u32 = [&b](uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<char>(v >> (8 * i)));
  };
  auto u16 = [&b](uint16_t v) {
    for (int i = 0; i < 2; ++i) b.push_back(static_cast<char>(v >> (8 * i)));
  };
  u32(16);
  u16(is_float ? 3 : 1);
  u16(static_cast<uint16_t>(channels));
  u32(static_cast<uint32_t>(rate));
  u32(static_cast<uint32_t>(rate * channels * bytes));
  u16(static_cast<uint16_t>(channels * bytes));
  u16(static_cast<uint16_t>(bits));
  b += "data";
  u32(static_cast<uint32_t>(frames * channels * bytes));
  for (int i = 0; i < frames * channels; ++i) {
    if (is_float) {
      const float f = 0.25f;
      uint32_t u;
      std::memcpy(&u, &f, 4);
      u32(u);
    } else {
      for (int k = 0; k < bytes; ++k) b.push_back(static_cast<char>(k == bytes - 1 ? 0x10 : 0));
    }
  }
  return b;
}

class PromptAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = runtime::LoadModelConfig(ModelDir());
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    auto tok = runtime::Tokenizer::FromFile(ModelDir() + "/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
    limits_.max_images_per_request = 1;
    limits_.max_audio_seconds = 2;
    limits_.max_prompt_tokens = 4000;
    auto a = PromptAdapter::Create(config_, tokenizer_.get(), ModelDir(), limits_);
    ASSERT_TRUE(a.ok());
    adapter_ = *std::move(a);
  }
  v1::GenerateRequest WithAudio(const std::string& wav) {
    v1::GenerateRequest r;
    v1::Message* m = r.add_messages();
    m->set_role("user");
    m->add_parts()->set_text("listen");
    m->add_parts()->mutable_audio()->set_wav(wav);
    return r;
  }
  runtime::ModelConfig config_;
  std::unique_ptr<runtime::Tokenizer> tokenizer_;
  runtime::PromptLimits limits_;
  std::unique_ptr<PromptAdapter> adapter_;
};

TEST_F(PromptAdapterTest, WavVariantsBecomeFramesWrappedInAudioTokens) {
  struct Case {
    int rate, channels, bits, frames;
    bool is_float;
    int rows;
  };
  const Case cases[] = {
      {16000, 1, 16, 16000, false, 25}, {16000, 2, 8, 6400, false, 10},
      {16000, 1, 24, 640, false, 1},    {16000, 1, 32, 641, false, 2},
      {16000, 1, 32, 1280, true, 2},    {32000, 1, 16, 3200, false, 3},  // 0.1 s -> 1599 samples.
  };
  for (const Case& c : cases) {
    auto built = adapter_->Build(WithAudio(Wav(c.rate, c.channels, c.bits, c.frames, c.is_float)));
    ASSERT_TRUE(built.ok()) << built.status();
    ASSERT_EQ(built->prompt.media.size(), 1u);
    const runtime::MediaRun& run = built->prompt.media[0];
    EXPECT_EQ(run.item->kind, runtime::MediaKind::kAudio);
    EXPECT_EQ(run.item->num_rows, c.rows) << c.rate << " " << c.channels << " " << c.bits;
    const auto& ids = built->prompt.token_ids;
    EXPECT_EQ(ids[0], config_.text.bos_token_id);
    EXPECT_EQ(ids[run.start - 1], config_.boa_token_id);
    EXPECT_EQ(ids[run.end()], config_.eoa_token_id);
    for (int i = run.start; i < run.end(); ++i) ASSERT_EQ(ids[i], config_.audio_token_id);
  }
}

TEST_F(PromptAdapterTest, BadInputNamesTheProblem) {
  struct Case {
    v1::GenerateRequest request;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({WithAudio("RIFFxxxxWAVE"), "no fmt chunk"});
  cases.push_back({WithAudio("OggS"), "not a WAV file"});
  cases.push_back({WithAudio(Wav(16000, 1, 16, 16000 * 3)), "(max_audio_seconds)"});
  v1::GenerateRequest two_images;
  auto* m = two_images.add_messages();
  m->set_role("user");
  for (int i = 0; i < 2; ++i) {
    v1::Image* image = m->add_parts()->mutable_image();
    image->set_raw_rgb(std::string(48 * 48 * 3, '\x40'));
    image->set_width(48);
    image->set_height(48);
  }
  cases.push_back({two_images, "(max_images_per_request)"});
  v1::GenerateRequest corrupt;
  m = corrupt.add_messages();
  m->set_role("user");
  m->add_parts()->mutable_image()->set_encoded("\x89PNG\r\n\x1a\nnot really");
  cases.push_back({corrupt, "image"});
  v1::GenerateRequest model_media;
  m = model_media.add_messages();
  m->set_role("model");
  m->add_parts()->mutable_audio()->set_wav(Wav(16000, 1, 16, 640));
  cases.push_back({model_media, "user turns only"});
  v1::GenerateRequest both;
  both.set_prompt("x");
  both.add_messages()->set_role("user");
  cases.push_back({both, "exactly one of"});
  v1::GenerateRequest role;
  role.add_messages()->set_role("narrator");
  cases.push_back({role, "'narrator' is unknown"});
  v1::GenerateRequest longp;
  longp.set_prompt(std::string(40000, 'a') + std::string(" b c d e f g h i j k l m n o p", 1) + [] {
    std::string s;
    for (int i = 0; i < 5000; ++i) s += " w" + std::to_string(i);
    return s;
  }());
  cases.push_back({longp, "the limit is 4000"});
  for (const Case& c : cases) {
    auto built = adapter_->Build(c.request);
    ASSERT_FALSE(built.ok()) << c.message;
    EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument) << built.status();
    EXPECT_TRUE(absl::StrContains(built.status().message(), c.message)) << built.status();
  }
}

TEST_F(PromptAdapterTest, VideoFramesBecomeTimestampedRunsOfVideoTokens) {
  v1::GenerateRequest request;
  auto* m = request.add_messages();
  m->set_role("user");
  m->add_parts()->set_text("What happens?");
  v1::Video* video = m->add_parts()->mutable_video();
  for (int f = 0; f < 2; ++f) {
    v1::VideoFrame* frame = video->add_frames();
    frame->set_timestamp_ms(1000u * f + 61000u);  // 01:01, 01:02
    frame->mutable_image()->set_raw_rgb(std::string(96 * 96 * 3, static_cast<char>(40 + f)));
    frame->mutable_image()->set_width(96);
    frame->mutable_image()->set_height(96);
  }
  auto built = adapter_->Build(request);
  ASSERT_TRUE(built.ok()) << built.status();
  const auto& ids = built->prompt.token_ids;
  ASSERT_EQ(built->prompt.media.size(), 2u);
  for (const auto& run : built->prompt.media) {
    // Resized to the largest square inside the 70-token frame budget: 384x384 = 8x8 patches.
    EXPECT_EQ(run.item->num_rows, 64);
    EXPECT_EQ(ids[run.start - 1], config_.boi_token_id);
    for (int i = run.start; i < run.end(); ++i) ASSERT_EQ(ids[i], config_.video_token_id);
    EXPECT_EQ(ids[run.end()], config_.eoi_token_id);
  }
  EXPECT_NE(built->prompt.media[0].item->hash, built->prompt.media[1].item->hash);
  EXPECT_EQ(built->tokens.image, 128);

  video->mutable_frames(1)->set_timestamp_ms(0);  // Out of order.
  auto bad = adapter_->Build(request);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "earlier than the frame before it"))
      << bad.status();
}

}  // namespace
}  // namespace tessera::server
