// OpenAI-compatible JSON (chat completions, completions) translated to the public proto (and, in
// openai_responder.h, the engine's replies back to JSON).
// Pure functions: the only I/O, fetching allow-listed remote images, goes through the injected
// ImageFetcher.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/prompt/prompt_limits.h"
#include "scheduler/request.h"
#include "server/image_fetcher.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::server {

struct OpenAiOptions {
  // Served model id; a request naming another model gets 404 model_not_found. Empty matches all.
  std::string model_id;
  // The server's prompt limits (ServingLimits::prompt): image parts are counted, and remote images
  // fetched up to max_image_bytes, before anything is fetched.
  runtime::PromptLimits limits;
  // Fetches http(s) image_url parts; null: only data: URIs are accepted. Not owned.
  const ImageFetcher* image_fetcher = nullptr;
};

// A parsed request: the proto to run plus what shapes the response.
struct OpenAiCall {
  v1::GenerateRequest request;
  bool chat = true;
  bool stream = false;
  bool include_usage = false;
  std::string model;        // As given (echoed in responses).
  std::string error_param;  // Set while parsing: the parameter an error is about.
};

// Parses a POST /v1/chat/completions body. InvalidArgument naming the field for bad input,
// NotFound for an unknown model.
// `error_param` (optional) receives the parameter an error is about, for the error body.
absl::StatusOr<OpenAiCall> ParseChatCompletion(absl::string_view body, const OpenAiOptions& options,
                                               std::string* error_param = nullptr);
// Parses a POST /v1/completions body.
absl::StatusOr<OpenAiCall> ParseCompletion(absl::string_view body, const OpenAiOptions& options,
                                           std::string* error_param = nullptr);

}  // namespace tessera::server
