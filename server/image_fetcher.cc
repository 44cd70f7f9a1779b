#include "server/image_fetcher.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace tessera::server {

absl::StatusOr<std::string> HttpImageFetcher::Fetch(const std::string& url,
                                                    int64_t max_bytes) const {
  bool allowed = false;
  for (const std::string& prefix : allowed_prefixes_) {
    if (absl::StartsWith(url, prefix)) allowed = true;
  }
  if (!allowed || !(absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://"))) {
    return absl::InvalidArgumentError(
        "remote image URLs are not allowed on this server; send the image inline as a data: URI "
        "(or start the server with --allowed_image_url_prefixes)");
  }
  const size_t scheme_end = url.find("://") + 3;
  const size_t path_start = url.find('/', scheme_end);
  const std::string origin = url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client client(origin);
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  std::string bytes;
  bool too_big = false;
  auto res = client.Get(path, [&](const char* data, size_t len) {
    bytes.append(data, len);
    too_big = static_cast<int64_t>(bytes.size()) > max_bytes;
    return !too_big;
  });
  if (too_big) {
    return absl::InvalidArgumentError(
        absl::StrCat("image at ", url, " is larger than ", max_bytes, " bytes (max_image_bytes)"));
  }
  if (!res || res->status != 200) {
    return absl::InvalidArgumentError(absl::StrCat("could not fetch image ", url));
  }
  return bytes;
}

}  // namespace tessera::server
