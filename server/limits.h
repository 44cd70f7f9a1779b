// Every request limit of the server, in one struct: filled once from the flags in main.cc and
// passed down (GetModelInfo reports it). Each limit is checked in one place:
//   prompt.*           what a prompt may hold: runtime/prompt/media_inputs.h and the prompt
//                      builders (per request; per turn in a Converse session)
//   max_tokens         EngineBackend's stopping parameters (both APIs)
//   max_queue_length   the engine's admission (scheduler::EngineOptions)
//   max_sessions       the engine's OpenSession
//   max_request_bytes  the transports (gRPC's receive limit, the HTTP body limit)
//   max_choices, max_tools  EngineBackend::Generate (both APIs)
// The OpenAI parser also counts image parts (runtime::CheckImageCount) before it fetches remote
// ones, so that a request cannot make the server fetch more images than it would accept.
#pragma once

#include <cstdint>

#include "runtime/prompt/prompt_limits.h"

namespace tessera::server {

struct ServingLimits {
  runtime::PromptLimits prompt;
  // Most tokens a request may ask to generate (--max_tokens_limit).
  int32_t max_tokens = 8192;
  // Requests waiting for the engine; beyond it 429 / RESOURCE_EXHAUSTED.
  int32_t max_queue_length = 1024;
  // Converse sessions open at once.
  int32_t max_sessions = 64;
  // Largest HTTP body / gRPC message.
  int64_t max_request_bytes = 64 << 20;
  // Choices (OpenAI's n) one request may ask for (--max_choices).
  int32_t max_choices = 16;
  // Tools one request may declare (--max_tools).
  int32_t max_tools = 128;
};

}  // namespace tessera::server
