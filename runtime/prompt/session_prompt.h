// The context of a Converse session, built as the input arrives: turn by turn, part by part, with
// the chat template's own pieces (chat_template.h) and the same media path and limits as
// PromptBuilder (media_inputs.h). A session fed the turns of a Conversation yields exactly the
// token ids, and media rows at the same positions, that PromptBuilder gives for that Conversation
// (session_prompt_test checks this); only the cut into chunks differs, so that audio can be
// prefilled while the user still speaks:
//
//   - audio samples arrive at any rate and go through the one streaming Resampler; every complete
//     640-sample 16 kHz frame is ready at once (the clip's zero-padded tail when the clip closes:
//     at text, an image, a video frame or the end of the turn);
//   - an image or video frame is ready as soon as it is added;
//   - text waits until a special token follows it (a media run or the end of the turn), because
//     the tokenizer may merge it with what comes next.
//
// Limits are per turn (PromptLimits' "request" limits, applied to one user turn). Not
// thread-safe: one caller (the Converse reactor) drives it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "runtime/media/resampler.h"
#include "runtime/prompt/conversation.h"
#include "runtime/prompt/prompt.h"
#include "runtime/prompt/prompt_builder.h"
#include "runtime/prompt/prompt_limits.h"
#include "runtime/prompt/tokenizer.h"

namespace tessera::runtime {

class SessionPrompt {
 public:
  // `tokenizer` must outlive the prompt.
  SessionPrompt(const Tokenizer* tokenizer, SpecialTokenIds ids, PromptLimits limits,
                bool enable_thinking);

  // <bos> and the system turn (when `system` is not empty or thinking is on). Ready at once.
  absl::Status Begin(std::string_view system);

  // Parts of the current user turn; the first opens it.
  absl::Status AddText(std::string_view text);
  // Mono samples at `sample_rate` Hz (NaN refused, the rest clipped to [-1, 1]). Consecutive
  // chunks form one clip; its rate may not change until it closes.
  absl::Status AddAudio(const float* samples, size_t count, int32_t sample_rate);
  absl::Status AddImage(const ImageInput& image);
  // Consecutive frames form one video (as a Conversation's video part).
  absl::Status AddVideoFrame(const VideoFrame& frame);
  // Closes the turn and adds the generation prompt: everything is ready, and the model replies.
  absl::Status EndTurn();
  // The model's reply has been generated into the context; `closed_by_model` when it ended with
  // <turn|>. The next part opens a new user turn after it (closing the reply's turn if need be).
  void ReplyEnded(bool closed_by_model);

  // What became final since the last call: token ids, with media runs whose starts are relative
  // to the first of them. Empty when nothing is ready.
  Prompt TakeReady();

  // Complete 40 ms audio frames in the current turn so far.
  int64_t turn_audio_frames() const { return turn_audio_frames_; }

 private:
  void OpenTurn();
  void Flush();
  void AppendMedia(std::shared_ptr<const MediaItem> item, int32_t soft_id);
  absl::Status EmitAudioFrames(bool final);
  absl::Status CloseAudio();
  void CloseVideo();
  // The text the template writes before and after a media item of `type`.
  static std::string Before(std::string_view type);
  static std::string After(std::string_view type);

  const Tokenizer* const tokenizer_;
  const SpecialTokenIds ids_;
  const PromptLimits limits_;
  const bool enable_thinking_;

  std::string pending_text_;  // Rendered, not yet tokenized.
  Prompt ready_;
  std::string after_reply_;  // What closes the model's turn before the next user turn.
  bool turn_open_ = false;
  // Per turn.
  int64_t turn_images_ = 0;
  int64_t turn_video_frames_ = 0;
  double turn_audio_seconds_ = 0;
  int64_t turn_audio_frames_ = 0;
  // The open audio clip: its resampler, the 16 kHz samples not yet in a complete frame, and
  // whether <|audio> was written (at its first complete frame).
  std::unique_ptr<Resampler> resampler_;
  std::vector<float> samples_16k_;
  bool audio_begun_ = false;
  // The open video: frames written so far.
  size_t video_frames_ = 0;
};

}  // namespace tessera::runtime
