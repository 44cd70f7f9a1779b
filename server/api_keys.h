// API keys: a file of keys, one per line; callers present "Bearer <key>" (HTTP Authorization header
// or gRPC `authorization` metadata).
#pragma once

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera::server {

class ApiKeys {
 public:
  // No keys: every call is allowed.
  ApiKeys() = default;
  // Reads `path`: one key per line; blank lines and lines starting with '#' are skipped,
  // surrounding whitespace trimmed. InvalidArgument if the file has no key, NotFound if unreadable.
  static absl::StatusOr<ApiKeys> FromFile(const std::string& path);
  static ApiKeys FromKeys(const std::vector<std::string>& keys);

  bool enabled() const { return !keys_.empty(); }
  // OK, or Unauthenticated with a message saying what is wrong. `authorization` is the header /
  // metadata value ("Bearer <key>"), empty when absent.
  absl::Status Check(absl::string_view authorization) const;

 private:
  absl::flat_hash_set<std::string> keys_;
};

}  // namespace tessera::server
