// What one prompt may hold: the limits PromptBuilder (per request) and SessionPrompt (per Converse
// turn) enforce. The server fills this once from its flags (server/main.cc); each field is the
// flag of the same name, and every refusal names the field, so a client can see which flag to ask
// the operator about. Each limit is checked in one place: media_inputs.h (media) and the builders
// (counts per request or turn, prompt length).
#pragma once

#include <cstdint>

namespace tessera::runtime {

struct PromptLimits {
  // Images per request (per turn in a session); video frames are counted separately.
  int32_t max_images_per_request = 16;
  // Encoded image bytes; decoded pixels and side (a decompression bomb is refused from the header).
  int64_t max_image_bytes = 20 << 20;
  int64_t max_image_pixels = 50'000'000;
  int32_t max_image_side = 8192;
  // Soft tokens of an image that names no budget, and the largest budget a request may ask for
  // (one of 70, 140, 280, 560, 1120). More tokens: more detail, longer prefill.
  int32_t default_image_tokens = 280;
  int32_t max_image_tokens = 1120;
  // Audio per request (per turn in a session), in seconds; a single clip is also held to the
  // model's 30 s (750 frames of 40 ms). WAV bytes per clip.
  double max_audio_seconds = 600.0;
  int64_t max_audio_bytes = 32 << 20;
  // Video frames per request (per turn in a session), each 70 soft tokens.
  int32_t max_video_frames = 32;
  // The whole prompt, in tokens; 0 means no limit here (the server sets the model's context).
  int32_t max_prompt_tokens = 0;
};

}  // namespace tessera::runtime
