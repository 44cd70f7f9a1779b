#include "runtime/prompt/prompt_builder.h"

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
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

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

class PromptBuilderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok =
        Tokenizer::FromFile(testing::RunfilePath("third_party/tokenizer/gemma4/tokenizer.json"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok).release();
    auto renders =
        nlohmann::json::parse(ReadFile(testing::FixturesDir() + "/chat_template/renders.json"));
    for (const auto& c : renders["cases"]) {
      (*renders_)[c["name"].get<std::string>()] = c["rendered"].get<std::string>();
    }
  }
  static std::string Render(const std::string& name) { return renders_->at(name); }

  PromptBuilder Builder(PromptLimits limits = {}) {
    auto ids = SpecialTokenIds::FromTokenizer(*tokenizer_);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return PromptBuilder(tokenizer_, *ids, limits);
  }

  // The fixture's 100x150 image as raw RGB.
  static ImageInput FixtureImage(int32_t max_soft_tokens) {
    auto file =
        SafetensorsFile::Open(testing::FixturesDir() + "/gemma4-tiny/image_processor.safetensors");
    const TensorView* raw = (*file)->Find("raw_rgb_u8");
    ImageInput in;
    in.raw_rgb.assign(reinterpret_cast<const char*>(raw->data), raw->num_bytes);
    in.width = 150;
    in.height = 100;
    in.max_soft_tokens = max_soft_tokens;
    return in;
  }

  static Tokenizer* tokenizer_;
  static std::map<std::string, std::string>* renders_;
};
Tokenizer* PromptBuilderTest::tokenizer_ = nullptr;
std::map<std::string, std::string>* PromptBuilderTest::renders_ =
    new std::map<std::string, std::string>();

TEST_F(PromptBuilderTest, SpecialIdsAreGemma4s) {
  auto ids = SpecialTokenIds::FromTokenizer(*tokenizer_);
  ASSERT_TRUE(ids.ok());
  // MODEL.md's table.
  EXPECT_EQ(ids->bos, 2);
  EXPECT_EQ(ids->eos, 1);
  EXPECT_EQ(ids->end_of_turn, 106);
  EXPECT_EQ(ids->image_begin, 255999);
  EXPECT_EQ(ids->image_end, 258882);
  EXPECT_EQ(ids->image_soft, 258880);
  EXPECT_EQ(ids->audio_begin, 256000);
  EXPECT_EQ(ids->audio_end, 258883);
  EXPECT_EQ(ids->audio_soft, 258881);
  EXPECT_EQ(ids->video_soft, 258884);
  EXPECT_EQ(ids->StopIds(), (std::vector<int32_t>{106, 1}));
}

TEST_F(PromptBuilderTest, TextConversationIsTheReferenceRenderTokenized) {
  Conversation c;
  c.messages = {{"system", {ContentPart::Text("  You are terse.  ")}},
                {"user", {ContentPart::Text("Why is the sky blue?")}}};
  auto built = Builder().Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->text, Render("system_user"));
  EXPECT_EQ(built->prompt.token_ids, tokenizer_->Encode(Render("system_user")));
  EXPECT_EQ(built->prompt.token_ids[0], 2);
  EXPECT_TRUE(built->prompt.media.empty());
  EXPECT_EQ(built->tokens.text, built->prompt.size());
  EXPECT_EQ(built->tokens.image + built->tokens.audio, 0);
}

TEST_F(PromptBuilderTest, ImageAndAudioExpandAroundTheReferenceRender) {
  // renders.json "image_audio_text": text, image, text, audio, image.
  auto file = SafetensorsFile::Open(testing::FixturesDir() + "/gemma4-tiny/golden.safetensors");
  ASSERT_TRUE(file.ok());
  auto wave = ToFloatVector(*(*file)->Find("mm_audio_wave"));
  ContentPart image;
  image.type = ContentPart::Type::kImage;
  image.image = FixtureImage(70);  // 60 soft tokens (the reference processor's count).
  ContentPart audio;
  audio.type = ContentPart::Type::kAudio;
  audio.audio.pcm = *wave;  // 4380 samples: 7 frames.
  audio.audio.sample_rate = 16000;
  Conversation c;
  c.messages = {
      {"user",
       {ContentPart::Text(" Compare "), image, ContentPart::Text("with the sound"), audio, image}}};
  auto built = Builder().Build(c);
  ASSERT_TRUE(built.ok()) << built.status();

  std::string want = Render("image_audio_text");
  const std::string img = "<|image>" + Repeat("<|image|>", 60) + "<image|>";
  const std::string aud = "<|audio>" + Repeat("<|audio|>", 7) + "<audio|>";
  want.replace(want.find("<|image|>"), 9, img);
  want.replace(want.find("<|audio|>"), 9, aud);
  want.replace(want.find("<|image|>", want.find("<audio|>")), 9, img);
  EXPECT_EQ(built->text, want);
  const auto& ids = built->prompt.token_ids;
  EXPECT_EQ(ids, tokenizer_->Encode(want));
  ASSERT_EQ(built->prompt.media.size(), 3u);
  const int32_t expected_rows[] = {60, 7, 60};
  const int32_t expected_ids[] = {258880, 258881, 258880};
  for (int k = 0; k < 3; ++k) {
    const MediaRun& run = built->prompt.media[k];
    EXPECT_EQ(run.item->num_rows, expected_rows[k]);
    EXPECT_EQ(ids[run.start - 1], k == 1 ? 256000 : 255999);
    for (int32_t i = run.start; i < run.end(); ++i) ASSERT_EQ(ids[i], expected_ids[k]);
    EXPECT_EQ(ids[run.end()], k == 1 ? 258883 : 258882);
  }
  // The two identical images hash the same; the audio differs.
  EXPECT_EQ(built->prompt.media[0].item->hash, built->prompt.media[2].item->hash);
  EXPECT_NE(built->prompt.media[0].item->hash, built->prompt.media[1].item->hash);
  EXPECT_EQ(built->tokens.image, 120);
  EXPECT_EQ(built->tokens.audio, 7);
  EXPECT_EQ(built->tokens.total(), built->prompt.size());
}

TEST_F(PromptBuilderTest, VideoFramesAreTimestampedImagesOfVideoTokens) {
  ContentPart video;
  video.type = ContentPart::Type::kVideo;
  video.video.frames = {{FixtureImage(0), 0.4}, {FixtureImage(0), 65.9}};
  Conversation c;
  c.messages = {{"user", {video, ContentPart::Text("What happens?")}}};
  auto built = Builder().Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  std::string want = Render("video");
  const std::string frame = "<|image>" + Repeat("<|video|>", 60) + "<image|>";
  want.replace(want.find("<|video|>"), 9, "00:00 " + frame + " 01:05 " + frame);
  EXPECT_EQ(built->text, want);
  EXPECT_EQ(built->prompt.token_ids, tokenizer_->Encode(want));
  ASSERT_EQ(built->prompt.media.size(), 2u);
  EXPECT_EQ(built->prompt.media[1].item->num_rows, 60);  // At most 70 per frame.
  EXPECT_EQ(built->prompt.token_ids[built->prompt.media[1].start], 258884);
}

TEST_F(PromptBuilderTest, RawTextGetsBos) {
  auto built = Builder().BuildRawText("Once upon a time");
  ASSERT_TRUE(built.ok());
  std::vector<int32_t> want = {2};
  for (int32_t id : tokenizer_->Encode("Once upon a time")) want.push_back(id);
  EXPECT_EQ(built->prompt.token_ids, want);
  EXPECT_EQ(Builder().BuildRawText("look: <|image|>").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PromptBuilderTest, LimitsAreInvalidArgumentsNamingTheLimit) {
  auto expect_error = [&](const absl::StatusOr<BuiltPrompt>& r, const std::string& needle) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  };
  ContentPart image;
  image.type = ContentPart::Type::kImage;
  image.image = FixtureImage(70);
  PromptLimits limits;
  limits.max_images_per_request = 1;
  Conversation two_images;
  two_images.messages = {{"user", {image, image}}};
  expect_error(Builder(limits).Build(two_images),
               "2 images; the limit is 1 (max_images_per_request)");

  Conversation odd_budget;
  image.image.max_soft_tokens = 100;
  odd_budget.messages = {{"user", {image}}};
  expect_error(Builder().Build(odd_budget), "70, 140, 280, 560, 1120");
  limits = {};
  limits.max_image_tokens = 280;
  image.image.max_soft_tokens = 560;
  odd_budget.messages = {{"user", {image}}};
  expect_error(Builder(limits).Build(odd_budget), "560; it must be one of");
  expect_error(Builder(limits).Build(odd_budget), "at most 280 (max_image_tokens)");

  ContentPart video;
  video.type = ContentPart::Type::kVideo;
  video.video.frames.resize(3, {FixtureImage(0), 0});
  limits = {};
  limits.max_video_frames = 2;
  Conversation long_video;
  long_video.messages = {{"user", {video}}};
  expect_error(Builder(limits).Build(long_video),
               "3 video frames; the limit is 2 (max_video_frames)");

  ContentPart audio;
  audio.type = ContentPart::Type::kAudio;
  audio.audio.pcm.assign(16000 * 31, 0.0f);
  audio.audio.sample_rate = 16000;
  Conversation long_audio;
  long_audio.messages = {{"user", {audio}}};
  expect_error(Builder().Build(long_audio), "the limit is 750 frames");
  // The request's total over several clips, each within the model's 30 s.
  audio.audio.pcm.assign(16000 * 20, 0.0f);
  limits = {};
  limits.max_audio_seconds = 30;
  Conversation two_clips;
  two_clips.messages = {{"user", {audio, audio}}};
  expect_error(Builder(limits).Build(two_clips),
               "request has 40 s of audio; the limit is 30 s (max_audio_seconds)");
  ContentPart wav;
  wav.type = ContentPart::Type::kAudio;
  wav.audio.wav = std::string(2000, 'R');
  limits = {};
  limits.max_audio_bytes = 1000;
  Conversation big_wav;
  big_wav.messages = {{"user", {wav}}};
  expect_error(Builder(limits).Build(big_wav), "2000 bytes; the limit is 1000 (max_audio_bytes)");
  ContentPart png;
  png.type = ContentPart::Type::kImage;
  png.image.encoded = std::string(2000, 'P');
  limits = {};
  limits.max_image_bytes = 1000;
  Conversation big_png;
  big_png.messages = {{"user", {png}}};
  expect_error(Builder(limits).Build(big_png), "2000 bytes; the limit is 1000 (max_image_bytes)");

  limits = {};
  limits.max_prompt_tokens = 10;
  Conversation chatty;
  chatty.messages = {{"user", {ContentPart::Text("a long question with many many words")}}};
  expect_error(Builder(limits).Build(chatty), "tokens; the limit is 10 tokens (max_prompt_tokens");

  Conversation sneaky;
  sneaky.messages = {{"user", {ContentPart::Text("fake <|image|> here")}}};
  expect_error(Builder().Build(sneaky), "reserved marker <|image|>");

  ContentPart broken;
  broken.type = ContentPart::Type::kImage;
  broken.image.encoded = std::string("\x89PNG\r\n\x1a\n", 8) + "truncated";
  Conversation corrupt;
  corrupt.messages = {{"user", {broken}}};
  expect_error(Builder().Build(corrupt), "not a valid PNG");
}

TEST_F(PromptBuilderTest, ToolsAndToolCallsRenderAsTheReference) {
  const auto renders =
      nlohmann::json::parse(ReadFile(testing::FixturesDir() + "/chat_template/renders.json"));
  nlohmann::json tools;
  for (const auto& c : renders["cases"]) {
    if (c["name"] == "tool_call_and_response") tools = c["input"]["tools"];
  }
  Conversation c;
  c.tools_json = tools.dump();
  Message user{"user", {ContentPart::Text("Weather in Paris?")}};
  Message model;
  model.role = "assistant";
  model.tool_calls = {{"get_weather", R"({"city": "Paris", "unit": "celsius"})"}};
  model.tool_responses = {{"get_weather", R"({"temperature": 21, "sky": "clear"})"}};
  c.messages = {user, model};
  auto built = Builder().Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->text, Render("tool_call_and_response"));
}

}  // namespace
}  // namespace tessera::runtime
