// SessionPrompt against PromptBuilder: a session fed a conversation's turns part by part (audio in
// chunks, at 16 kHz and at other rates) yields exactly the token ids and media rows PromptBuilder
// gives for the whole conversation, on Gemma 4's real tokenizer.
#include "runtime/prompt/session_prompt.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/prompt/prompt_builder.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

class SessionPromptTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok =
        Tokenizer::FromFile(testing::RunfilePath("third_party/tokenizer/gemma4/tokenizer.json"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok).release();
  }
  static SpecialTokenIds Ids() { return *SpecialTokenIds::FromTokenizer(*tokenizer_); }

  static Prompt Build(const Conversation& c) {
    auto built = PromptBuilder(tokenizer_, Ids(), {}).Build(c);
    EXPECT_TRUE(built.ok()) << built.status();
    return built.ok() ? built->prompt : Prompt();
  }

  // Appends what the session has ready to `all` (media starts made absolute).
  static void Take(SessionPrompt* s, Prompt* all) {
    Prompt chunk = s->TakeReady();
    const int32_t offset = all->size();
    all->token_ids.insert(all->token_ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    for (MediaRun& run : chunk.media) {
      run.start += offset;
      all->media.push_back(std::move(run));
    }
  }

  static Tokenizer* tokenizer_;
};
Tokenizer* SessionPromptTest::tokenizer_ = nullptr;

// Every media row by its position: runs may be cut differently (a streamed clip arrives as several
// items), the rows at each position may not.
std::map<int32_t, std::vector<float>> RowsByPosition(const Prompt& p) {
  std::map<int32_t, std::vector<float>> out;
  for (const MediaRun& run : p.media) {
    const int32_t width = run.item->kind == MediaKind::kAudio ? kAudioFrameSamples : kPatchValues;
    for (int32_t r = 0; r < run.item->num_rows; ++r) {
      const float* row = run.item->rows.data() + static_cast<size_t>(r) * width;
      out[run.start + r] = std::vector<float>(row, row + width);
    }
  }
  return out;
}

void ExpectSamePrompt(const Prompt& session, const Prompt& builder) {
  ASSERT_EQ(session.token_ids, builder.token_ids);
  const auto a = RowsByPosition(session);
  const auto b = RowsByPosition(builder);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [position, row] : b) {
    auto it = a.find(position);
    ASSERT_NE(it, a.end()) << position;
    ASSERT_EQ(it->second, row) << "media row at " << position;
  }
}

ImageInput Image(int32_t width, int32_t height, int seed, int32_t budget = 0) {
  ImageInput in;
  in.width = width;
  in.height = height;
  in.max_soft_tokens = budget;
  in.raw_rgb.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < in.raw_rgb.size(); ++i) {
    in.raw_rgb[i] = static_cast<char>((i * 7 + seed * 31) % 251);
  }
  return in;
}

std::vector<float> Tone(double seconds, int32_t rate, double hz) {
  std::vector<float> out(static_cast<size_t>(std::llround(seconds * rate)));
  for (size_t i = 0; i < out.size(); ++i) out[i] = 0.4f * std::sin(2 * M_PI * hz * i / rate);
  return out;
}

ContentPart AudioPart(const std::vector<float>& samples, int32_t rate) {
  ContentPart p;
  p.type = ContentPart::Type::kAudio;
  p.audio.pcm = samples;
  p.audio.sample_rate = rate;
  return p;
}

ContentPart ImagePart(ImageInput image) {
  ContentPart p;
  p.type = ContentPart::Type::kImage;
  p.image = std::move(image);
  return p;
}

ContentPart VideoPart(const std::vector<VideoFrame>& frames) {
  ContentPart p;
  p.type = ContentPart::Type::kVideo;
  p.video.frames = frames;
  return p;
}

// Feeds `samples` in chunks of `chunk` samples.
void FeedAudio(SessionPrompt* s, const std::vector<float>& samples, int32_t rate, size_t chunk) {
  for (size_t pos = 0; pos < samples.size(); pos += chunk) {
    const size_t n = std::min(chunk, samples.size() - pos);
    ASSERT_TRUE(s->AddAudio(samples.data() + pos, n, rate).ok());
  }
}

TEST_F(SessionPromptTest, TextTurnWithASystemPromptMatchesTheBuilder) {
  for (bool thinking : {false, true}) {
    SessionPrompt s(tokenizer_, Ids(), {}, thinking);
    Prompt all;
    ASSERT_TRUE(s.Begin("  Be brief. ").ok());
    ASSERT_TRUE(s.AddText(" Hello there, ").ok());
    ASSERT_TRUE(s.AddText("how are you?").ok());
    ASSERT_TRUE(s.EndTurn().ok());
    Take(&s, &all);
    Conversation c;
    c.enable_thinking = thinking;
    c.messages = {
        {"system", {ContentPart::Text("  Be brief. ")}},
        {"user", {ContentPart::Text(" Hello there, "), ContentPart::Text("how are you?")}}};
    ExpectSamePrompt(all, Build(c));
  }
}

// Text, an image, 16 kHz audio, a two-frame video and more text in one turn, without a system
// prompt, thinking on and off.
TEST_F(SessionPromptTest, MixedMediaTurnMatchesTheBuilder) {
  const std::vector<float> audio = Tone(1.03, 16000, 440);
  const VideoFrame f1{Image(96, 96, 1), 61.2};
  const VideoFrame f2{Image(96, 96, 2), 62.9};
  for (bool thinking : {false, true}) {
    SessionPrompt s(tokenizer_, Ids(), {}, thinking);
    Prompt all;
    ASSERT_TRUE(s.Begin("").ok());
    ASSERT_TRUE(s.AddText("Look:").ok());
    ASSERT_TRUE(s.AddImage(Image(150, 100, 3, 70)).ok());
    FeedAudio(&s, audio, 16000, 1600);
    ASSERT_TRUE(s.AddVideoFrame(f1).ok());
    ASSERT_TRUE(s.AddVideoFrame(f2).ok());
    ASSERT_TRUE(s.AddText("What happens?").ok());
    ASSERT_TRUE(s.EndTurn().ok());
    Take(&s, &all);
    Conversation c;
    c.enable_thinking = thinking;
    c.messages = {
        {"user",
         {ContentPart::Text("Look:"), ImagePart(Image(150, 100, 3, 70)), AudioPart(audio, 16000),
          VideoPart({f1, f2}), ContentPart::Text("What happens?")}}};
    ExpectSamePrompt(all, Build(c));
  }
}

// Audio at 24 and 44.1 kHz streamed in uneven chunks equals the whole clip resampled by the
// builder, and every complete frame is ready as soon as its samples are in.
TEST_F(SessionPromptTest, StreamedAudioAtAnyRateMatchesTheWholeClip) {
  for (int32_t rate : {16000, 24000, 44100}) {
    const std::vector<float> audio = Tone(0.77, rate, 300);
    SessionPrompt s(tokenizer_, Ids(), {}, false);
    Prompt all;
    ASSERT_TRUE(s.Begin("You listen.").ok());
    Take(&s, &all);
    size_t fed = 0;
    for (size_t chunk : {size_t{1}, size_t{333}, size_t{4410}, size_t{100000}}) {
      const size_t n = std::min(chunk, audio.size() - fed);
      ASSERT_TRUE(s.AddAudio(audio.data() + fed, n, rate).ok());
      fed += n;
      const int64_t at_16k = std::llround(fed * 16000.0 / rate);
      // Ready frames trail the samples in by at most the resampler's filter delay (< 20 ms here).
      EXPECT_LE(s.turn_audio_frames(), at_16k / kAudioFrameSamples) << rate;
      EXPECT_GE(s.turn_audio_frames(), (at_16k - 320) / kAudioFrameSamples) << rate;
      Take(&s, &all);
    }
    ASSERT_EQ(fed, audio.size());
    ASSERT_TRUE(s.AddText("Transcribe it.").ok());
    ASSERT_TRUE(s.EndTurn().ok());
    Take(&s, &all);
    Conversation c;
    c.messages = {{"system", {ContentPart::Text("You listen.")}},
                  {"user", {AudioPart(audio, rate), ContentPart::Text("Transcribe it.")}}};
    ExpectSamePrompt(all, Build(c));
  }
}

// Text is held until a special token follows it; media is ready at once.
TEST_F(SessionPromptTest, TextWaitsMediaDoesNot) {
  SessionPrompt s(tokenizer_, Ids(), {}, false);
  ASSERT_TRUE(s.Begin("").ok());
  EXPECT_EQ(s.TakeReady().token_ids, std::vector<int32_t>{Ids().bos});
  ASSERT_TRUE(s.AddText("Hello").ok());
  EXPECT_TRUE(s.TakeReady().token_ids.empty());
  ASSERT_TRUE(s.AddImage(Image(48, 48, 1, 70)).ok());
  Prompt ready = s.TakeReady();
  ASSERT_EQ(ready.media.size(), 1u);
  EXPECT_EQ(ready.token_ids.back(), Ids().image_end);
  EXPECT_EQ(ready.token_ids[ready.media[0].start - 1], Ids().image_begin);
}

// Turn after turn: the context is the first prompt, the model's reply, then the next turn, as the
// builder renders the whole conversation (thinking on: the template keeps the reply as sent).
// With thinking off the generation prompt's empty thought channel stays in the context, so there
// the next turn equals the builder's text after the reply's <turn|>.
TEST_F(SessionPromptTest, NextTurnAfterAReplyMatchesTheBuilder) {
  const SpecialTokenIds ids = Ids();
  for (bool closed : {true, false}) {
    for (bool thinking : {true, false}) {
      SessionPrompt s(tokenizer_, ids, {}, thinking);
      Prompt all;
      ASSERT_TRUE(s.Begin("Be brief.").ok());
      ASSERT_TRUE(s.AddText("Hi!").ok());
      ASSERT_TRUE(s.EndTurn().ok());
      Take(&s, &all);
      Conversation c1;
      c1.enable_thinking = thinking;
      c1.messages = {{"system", {ContentPart::Text("Be brief.")}},
                     {"user", {ContentPart::Text("Hi!")}}};
      ExpectSamePrompt(all, Build(c1));
      // The reply, generated into the context by the engine.
      std::vector<int32_t> reply = tokenizer_->Encode("Hello.");
      if (closed) reply.push_back(ids.end_of_turn);
      all.token_ids.insert(all.token_ids.end(), reply.begin(), reply.end());
      const int32_t reply_end = all.size();
      s.ReplyEnded(closed);
      ASSERT_TRUE(s.AddImage(Image(96, 48, 5, 70)).ok());
      ASSERT_TRUE(s.AddText("And this?").ok());
      ASSERT_TRUE(s.EndTurn().ok());
      Take(&s, &all);
      Conversation c2 = c1;
      c2.messages.push_back({"assistant", {ContentPart::Text("Hello.")}});
      c2.messages.push_back(
          {"user", {ImagePart(Image(96, 48, 5, 70)), ContentPart::Text("And this?")}});
      const Prompt whole = Build(c2);
      if (thinking) {
        ExpectSamePrompt(all, whole);
        continue;
      }
      // The builder's model turn ends "Hello.<turn|>"; the session's next turn starts after it.
      const std::vector<int32_t> hello = tokenizer_->Encode("Hello.");
      auto it =
          std::search(whole.token_ids.begin(), whole.token_ids.end(), hello.begin(), hello.end());
      ASSERT_NE(it, whole.token_ids.end());
      const int32_t cut = static_cast<int32_t>(it - whole.token_ids.begin()) +
                          static_cast<int32_t>(hello.size()) + 1;
      ASSERT_EQ(whole.token_ids[cut - 1], ids.end_of_turn);
      Prompt tail;
      tail.token_ids.assign(whole.token_ids.begin() + cut, whole.token_ids.end());
      for (MediaRun run : whole.media) {
        run.start -= cut;
        tail.media.push_back(run);
      }
      Prompt mine;
      const int32_t from = closed ? reply_end : reply_end;
      mine.token_ids.assign(all.token_ids.begin() + from, all.token_ids.end());
      if (!closed) {
        // The session closes the cut-short reply itself: "<turn|>" then the same tail.
        ASSERT_EQ(mine.token_ids.front(), ids.end_of_turn);
        mine.token_ids.erase(mine.token_ids.begin());
      }
      const int32_t shift = from + (closed ? 0 : 1);
      for (MediaRun run : all.media) {
        if (run.start < shift) continue;
        run.start -= shift;
        mine.media.push_back(run);
      }
      ExpectSamePrompt(mine, tail);
    }
  }
}

TEST_F(SessionPromptTest, LimitsArePerTurnAndNameTheLimit) {
  PromptLimits limits;
  limits.max_images_per_request = 1;
  limits.max_video_frames = 1;
  limits.max_audio_seconds = 1;
  SessionPrompt s(tokenizer_, Ids(), limits, false);
  ASSERT_TRUE(s.Begin("").ok());
  ASSERT_TRUE(s.AddImage(Image(48, 48, 1)).ok());
  absl::Status two = s.AddImage(Image(48, 48, 1));
  EXPECT_EQ(two.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(two.message().find("turn has 2 images; the limit is 1 (max_images_per_request)"),
            std::string::npos)
      << two;
  ASSERT_TRUE(s.AddVideoFrame({Image(48, 48, 1), 0}).ok());
  EXPECT_NE(s.AddVideoFrame({Image(48, 48, 1), 1}).message().find("(max_video_frames)"),
            std::string::npos);
  const std::vector<float> second = Tone(0.6, 16000, 200);
  ASSERT_TRUE(s.AddAudio(second.data(), second.size(), 16000).ok());
  EXPECT_NE(s.AddAudio(second.data(), second.size(), 16000).message().find("(max_audio_seconds)"),
            std::string::npos);
  EXPECT_NE(s.AddAudio(second.data(), 10, 24000).message().find("rate changed within a clip"),
            std::string::npos);
  const float nan = std::nanf("");
  EXPECT_EQ(s.AddAudio(&nan, 1, 16000).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.AddImage(Image(48, 48, 1, 100)).message().find("(max_image_tokens)"),
            std::string::npos);
  EXPECT_NE(s.AddText("a <|audio|> b").message().find("reserved marker"), std::string::npos);
  ASSERT_TRUE(s.EndTurn().ok());
  s.ReplyEnded(true);
  // A new turn: the counts start again.
  EXPECT_TRUE(s.AddImage(Image(48, 48, 1)).ok());
  EXPECT_TRUE(s.AddAudio(second.data(), second.size(), 16000).ok());
}

}  // namespace
}  // namespace tessera::runtime
