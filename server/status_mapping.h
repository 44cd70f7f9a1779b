// The one place where absl::Status becomes a gRPC status or an HTTP status with OpenAI's error
// body ({"error": {"message", "type", "param", "code"}}). ARCHITECTURE.md "Contracts".
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace tessera::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

struct HttpError {
  int http_status = 500;
  std::string type;  // OpenAI error type, e.g. "invalid_request_error".
  std::string code;  // Short code, e.g. "invalid_argument".
};
HttpError ToHttpError(const absl::Status& status);

// The OpenAI-shaped JSON body for `status` (param is null unless given).
std::string OpenAiErrorBody(const absl::Status& status, const std::string& param = "");

// Short snake_case name of the status code, for metrics labels ("invalid_argument", ...).
std::string StatusCodeLabel(const absl::Status& status);

}  // namespace tessera::server
