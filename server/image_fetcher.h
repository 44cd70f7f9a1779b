// Remote images for the OpenAI API's image_url: an interface, so that the request parser stays
// pure (openai_api.h takes one, tests give it a fake), and the real fetcher over HTTP(S).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::server {

class ImageFetcher {
 public:
  virtual ~ImageFetcher() = default;
  // The bytes at `url` (an http:// or https:// URL). InvalidArgument naming the problem when the
  // URL is not allowed, cannot be fetched, or is larger than `max_bytes`.
  virtual absl::StatusOr<std::string> Fetch(const std::string& url, int64_t max_bytes) const = 0;
};

// Fetches URLs that start with one of `allowed_prefixes` (--allowed_image_url_prefixes) with
// cpp-httplib: 5 s to connect, 10 s between reads, the body cut off past `max_bytes`. Blocking:
// call it where blocking is fine (the prompt-building pool), never on a gRPC callback thread.
class HttpImageFetcher : public ImageFetcher {
 public:
  explicit HttpImageFetcher(std::vector<std::string> allowed_prefixes)
      : allowed_prefixes_(std::move(allowed_prefixes)) {}
  absl::StatusOr<std::string> Fetch(const std::string& url, int64_t max_bytes) const override;

 private:
  const std::vector<std::string> allowed_prefixes_;
};

}  // namespace tessera::server
