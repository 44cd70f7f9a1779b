// The internal form of a chat request's content, as the edge (gRPC, HTTP) parses it: turns whose
// parts are text, images, audio clips or videos (as timestamped frames), plus the tools and flags
// the chat template reads. PromptBuilder turns it into a Prompt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::runtime {

struct ImageInput {
  // Either encoded PNG/JPEG bytes...
  std::string encoded;
  // ...or raw interleaved RGB (width * height * 3 bytes) when `encoded` is empty.
  std::string raw_rgb;
  int32_t width = 0;
  int32_t height = 0;
  // Soft-token budget for this image (70, 140, 280, 560 or 1120); 0 = the builder's default.
  int32_t max_soft_tokens = 0;
};

struct AudioInput {
  // Either WAV bytes...
  std::string wav;
  // ...or mono float samples at `sample_rate` Hz when `wav` is empty.
  std::vector<float> pcm;
  int32_t sample_rate = 0;
};

struct VideoFrame {
  ImageInput image;  // max_soft_tokens is capped at the video budget (70).
  double timestamp_seconds = 0;
};

struct VideoInput {
  std::vector<VideoFrame> frames;
};

struct ContentPart {
  enum class Type { kText, kImage, kAudio, kVideo };
  Type type = Type::kText;
  std::string text;  // kText.
  ImageInput image;  // kImage.
  AudioInput audio;  // kAudio.
  VideoInput video;  // kVideo.

  static ContentPart Text(std::string t) {
    ContentPart p;
    p.text = std::move(t);
    return p;
  }
};

struct ToolCall {
  std::string name;
  // A JSON object (rendered key by key) or any other string (rendered verbatim).
  std::string arguments;
  std::string id;  // The call's id (OpenAI's tool_calls[].id); not rendered.
};

struct ToolResponse {
  std::string name;
  // A JSON value; a string that is not JSON is rendered as a string.
  std::string response;
};

struct Message {
  // "system", "developer", "user", "assistant" (rendered "model"), or "tool".
  std::string role;
  std::vector<ContentPart> parts;
  std::vector<ToolCall> tool_calls;
  std::vector<ToolResponse> tool_responses;
  // A "tool" message's answer to the call with this id (FoldToolResults attaches it there).
  std::string tool_call_id;
};

struct Conversation {
  std::vector<Message> messages;
  // A JSON array of OpenAI-style function declarations; empty for none.
  std::string tools_json;
  bool enable_thinking = false;
  bool add_generation_prompt = true;
};

}  // namespace tessera::runtime
