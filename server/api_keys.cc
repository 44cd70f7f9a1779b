#include "server/api_keys.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tessera::server {

absl::StatusOr<ApiKeys> ApiKeys::FromFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read the API key file ", path));
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(f, line)) {
    absl::string_view key = absl::StripAsciiWhitespace(line);
    if (key.empty() || absl::StartsWith(key, "#")) continue;
    keys.emplace_back(key);
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the API key file ", path, " holds no key"));
  }
  return FromKeys(keys);
}

ApiKeys ApiKeys::FromKeys(const std::vector<std::string>& keys) {
  ApiKeys out;
  out.keys_.insert(keys.begin(), keys.end());
  return out;
}

absl::Status ApiKeys::Check(absl::string_view authorization) const {
  if (keys_.empty()) return absl::OkStatus();
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing API key: send the header 'Authorization: Bearer <key>'");
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(authorization, kBearer)) {
    return absl::UnauthenticatedError("the Authorization value must be 'Bearer <key>'");
  }
  const absl::string_view key = absl::StripAsciiWhitespace(authorization.substr(kBearer.size()));
  if (!keys_.contains(key)) return absl::UnauthenticatedError("invalid API key");
  return absl::OkStatus();
}

}  // namespace tessera::server
