#include "server/status_mapping.h"

#include "nlohmann/json.hpp"

namespace tessera::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering (both follow google.rpc.Code).
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(status.code())),
                      std::string(status.message()));
}

HttpError ToHttpError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return {200, "", ""};
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return {400, "invalid_request_error", "invalid_argument"};
    case absl::StatusCode::kFailedPrecondition:
      return {400, "invalid_request_error", "failed_precondition"};
    case absl::StatusCode::kUnauthenticated:
      return {401, "authentication_error", "invalid_api_key"};
    case absl::StatusCode::kPermissionDenied:
      return {403, "permission_error", "permission_denied"};
    case absl::StatusCode::kNotFound:
      return {404, "invalid_request_error", "not_found"};
    case absl::StatusCode::kResourceExhausted:
      return {429, "rate_limit_exceeded", "resource_exhausted"};
    case absl::StatusCode::kCancelled:
      return {499, "cancelled", "cancelled"};
    case absl::StatusCode::kUnavailable:
      return {503, "service_unavailable", "unavailable"};
    case absl::StatusCode::kDeadlineExceeded:
      return {504, "timeout", "deadline_exceeded"};
    case absl::StatusCode::kUnimplemented:
      return {501, "invalid_request_error", "unimplemented"};
    default:
      return {500, "server_error", "internal_error"};
  }
}

std::string OpenAiErrorBody(const absl::Status& status, const std::string& param) {
  const HttpError e = ToHttpError(status);
  nlohmann::json body;
  body["error"]["message"] = std::string(status.message());
  body["error"]["type"] = e.type;
  body["error"]["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
  body["error"]["code"] = e.code;
  // Invalid UTF-8 in a message (echoed input) must not throw: replace it.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string StatusCodeLabel(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return "invalid_argument";
    case absl::StatusCode::kResourceExhausted:
      return "resource_exhausted";
    case absl::StatusCode::kUnavailable:
      return "unavailable";
    case absl::StatusCode::kUnauthenticated:
      return "unauthenticated";
    default:
      return "other";
  }
}

}  // namespace tessera::server
