#include "runtime/prompt/session_prompt.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/media/audio.h"
#include "runtime/prompt/chat_template.h"
#include "runtime/prompt/media_inputs.h"

namespace tessera::runtime {

SessionPrompt::SessionPrompt(const Tokenizer* tokenizer, SpecialTokenIds ids, PromptLimits limits,
                             bool enable_thinking)
    : tokenizer_(tokenizer), ids_(ids), limits_(limits), enable_thinking_(enable_thinking) {}

std::string SessionPrompt::Before(std::string_view type) {
  const std::string item = Gemma4MediaItem(type);
  const std::string placeholder = type == "audio"   ? kAudioPlaceholder
                                  : type == "video" ? kVideoPlaceholder
                                                    : kImagePlaceholder;
  return item.substr(0, item.find(placeholder));
}

std::string SessionPrompt::After(std::string_view type) {
  const std::string item = Gemma4MediaItem(type);
  const std::string placeholder = type == "audio"   ? kAudioPlaceholder
                                  : type == "video" ? kVideoPlaceholder
                                                    : kImagePlaceholder;
  return item.substr(item.find(placeholder) + placeholder.size());
}

absl::Status SessionPrompt::Begin(std::string_view system) {
  pending_text_ = tokenizer_->TokenText(ids_.bos);
  // The template's system turn: for a system message, or for thinking alone.
  if (enable_thinking_ || !system.empty()) {
    absl::StrAppend(&pending_text_, Gemma4SystemTurnStart(enable_thinking_),
                    Gemma4ContentText("system", system), Gemma4TurnEnd());
  }
  // A user turn always follows (<|turn>, a special token): the system turn is final.
  Flush();
  return absl::OkStatus();
}

void SessionPrompt::OpenTurn() {
  if (turn_open_) return;
  turn_open_ = true;
  absl::StrAppend(&pending_text_, after_reply_, Gemma4TurnStart("user"));
  after_reply_.clear();
}

void SessionPrompt::ReplyEnded(bool closed_by_model) {
  // The reply's tokens are in the context; the template closes a model turn with "<turn|>\n".
  after_reply_ = closed_by_model ? "\n" : Gemma4TurnEnd();
}

void SessionPrompt::Flush() {
  if (pending_text_.empty()) return;
  const std::vector<int32_t> ids = tokenizer_->Encode(pending_text_);
  ready_.token_ids.insert(ready_.token_ids.end(), ids.begin(), ids.end());
  pending_text_.clear();
}

void SessionPrompt::AppendMedia(std::shared_ptr<const MediaItem> item, int32_t soft_id) {
  MediaRun run;
  run.start = ready_.size();
  ready_.token_ids.insert(ready_.token_ids.end(), item->num_rows, soft_id);
  run.item = std::move(item);
  ready_.media.push_back(std::move(run));
}

absl::Status SessionPrompt::AddText(std::string_view text) {
  for (const char* marker : {kImagePlaceholder, kAudioPlaceholder, kVideoPlaceholder}) {
    if (text.find(marker) != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("text contains the reserved marker ", marker,
                       "; send media as image, audio or frame events"));
    }
  }
  OpenTurn();
  if (absl::Status s = CloseAudio(); !s.ok()) return s;
  CloseVideo();
  pending_text_.append(Gemma4ContentText("user", text));
  return absl::OkStatus();
}

absl::Status SessionPrompt::AddImage(const ImageInput& image) {
  absl::StatusOr<int32_t> budget = ImageTokenBudget(image.max_soft_tokens, limits_);
  if (!budget.ok()) return budget.status();
  if (absl::Status s = CheckImageCount(turn_images_ + 1, limits_, "turn"); !s.ok()) return s;
  auto item = PreprocessImageInput(image, *budget, limits_);
  if (!item.ok()) return item.status();
  ++turn_images_;
  OpenTurn();
  if (absl::Status s = CloseAudio(); !s.ok()) return s;
  CloseVideo();
  pending_text_.append(Before("image"));
  Flush();
  ready_.token_ids.push_back(ids_.image_begin);
  AppendMedia(*std::move(item), ids_.image_soft);
  ready_.token_ids.push_back(ids_.image_end);
  pending_text_.append(After("image"));
  return absl::OkStatus();
}

absl::Status SessionPrompt::AddVideoFrame(const VideoFrame& frame) {
  if (absl::Status s = CheckVideoFrameCount(turn_video_frames_ + 1, limits_, "turn"); !s.ok()) {
    return s;
  }
  if (!(frame.timestamp_seconds >= 0)) {
    return absl::InvalidArgumentError("a video frame has an invalid timestamp");
  }
  auto item = PreprocessImageInput(frame.image, kVideoFrameSoftTokens, limits_);
  if (!item.ok()) return item.status();
  ++turn_video_frames_;
  OpenTurn();
  if (absl::Status s = CloseAudio(); !s.ok()) return s;
  if (video_frames_ == 0) pending_text_.append(Before("video"));
  pending_text_.append(VideoFramePrefix(video_frames_++, frame.timestamp_seconds));
  Flush();
  ready_.token_ids.push_back(ids_.image_begin);
  AppendMedia(*std::move(item), ids_.video_soft);
  ready_.token_ids.push_back(ids_.image_end);
  return absl::OkStatus();
}

void SessionPrompt::CloseVideo() {
  if (video_frames_ == 0) return;
  pending_text_.append(After("video"));
  video_frames_ = 0;
}

absl::Status SessionPrompt::AddAudio(const float* samples, size_t count, int32_t sample_rate) {
  if (absl::Status s = CheckSampleRate(sample_rate); !s.ok()) return s;
  if (resampler_ != nullptr && resampler_->input_rate() != sample_rate) {
    return absl::InvalidArgumentError(
        absl::StrCat("the audio sample rate changed within a clip (", resampler_->input_rate(),
                     " then ", sample_rate,
                     " Hz); end the clip first (text, an image or the end "
                     "of the turn)"));
  }
  std::vector<float> clipped(samples, samples + count);
  if (absl::Status s = ClipSamples(clipped.data(), clipped.size()); !s.ok()) return s;
  const double seconds = turn_audio_seconds_ + static_cast<double>(count) / sample_rate;
  if (absl::Status s = CheckAudioSeconds(seconds, limits_, "turn"); !s.ok()) return s;
  turn_audio_seconds_ = seconds;
  OpenTurn();
  CloseVideo();
  if (resampler_ == nullptr) {
    auto resampler = Resampler::Create(sample_rate);
    if (!resampler.ok()) return resampler.status();
    resampler_ = *std::move(resampler);
  }
  if (absl::Status s = resampler_->Push(clipped.data(), clipped.size(), &samples_16k_); !s.ok()) {
    return s;
  }
  return EmitAudioFrames(/*final=*/false);
}

absl::Status SessionPrompt::EmitAudioFrames(bool final) {
  size_t frames = samples_16k_.size() / kAudioFrameSamples;
  if (final && samples_16k_.size() % kAudioFrameSamples != 0) ++frames;  // Zero-padded by framing.
  if (frames == 0) return absl::OkStatus();
  const size_t take = std::min(samples_16k_.size(), frames * kAudioFrameSamples);
  if (!audio_begun_) {
    pending_text_.append(Before("audio"));
    Flush();
    ready_.token_ids.push_back(ids_.audio_begin);
    audio_begun_ = true;
  }
  MediaItem item =
      FrameAudio(std::vector<float>(samples_16k_.begin(), samples_16k_.begin() + take));
  samples_16k_.erase(samples_16k_.begin(), samples_16k_.begin() + take);
  turn_audio_frames_ += item.num_rows;
  AppendMedia(std::make_shared<const MediaItem>(std::move(item)), ids_.audio_soft);
  return absl::OkStatus();
}

absl::Status SessionPrompt::CloseAudio() {
  if (resampler_ == nullptr) return absl::OkStatus();
  if (absl::Status s = resampler_->Finish(&samples_16k_); !s.ok()) return s;
  resampler_.reset();
  if (absl::Status s = EmitAudioFrames(/*final=*/true); !s.ok()) return s;
  samples_16k_.clear();
  if (audio_begun_) {  // A clip too short for a single sample at 16 kHz leaves nothing.
    ready_.token_ids.push_back(ids_.audio_end);
    pending_text_.append(After("audio"));
    audio_begun_ = false;
  }
  return absl::OkStatus();
}

absl::Status SessionPrompt::EndTurn() {
  OpenTurn();
  if (absl::Status s = CloseAudio(); !s.ok()) return s;
  CloseVideo();
  absl::StrAppend(&pending_text_, Gemma4TurnEnd(),
                  Gemma4GenerationPrompt(enable_thinking_, /*after_tool_response=*/false));
  Flush();
  turn_open_ = false;
  turn_images_ = 0;
  turn_video_frames_ = 0;
  turn_audio_seconds_ = 0;
  turn_audio_frames_ = 0;
  // Until ReplyEnded says otherwise, the model closed its turn.
  after_reply_ = "\n";
  return absl::OkStatus();
}

Prompt SessionPrompt::TakeReady() {
  Prompt out = std::move(ready_);
  ready_ = Prompt();
  return out;
}

}  // namespace tessera::runtime
