#include "server/image_fetcher.h"

#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace tessera::server {
namespace {

// Remote images: fetched only under an allowed prefix, with the byte limit, from a real local
// HTTP origin.
TEST(HttpImageFetcherTest, FetchesOnlyFromAllowedPrefixesWithinTheLimit) {
  httplib::Server origin;
  origin.Get("/img/cat.png", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string("\x89PNG-bytes", 10), "image/png");
  });
  origin.Get("/img/big.png", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(5000, 'x'), "image/png");
  });
  const int port = origin.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { origin.listen_after_bind(); });
  const std::string base = "http://127.0.0.1:" + std::to_string(port) + "/img/";
  HttpImageFetcher fetcher({base});
  auto ok = fetcher.Fetch(base + "cat.png", 1000);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, std::string("\x89PNG-bytes", 10));
  auto big = fetcher.Fetch(base + "big.png", 1000);
  ASSERT_FALSE(big.ok());
  EXPECT_TRUE(absl::StrContains(big.status().message(), "larger than 1000 bytes")) << big.status();
  auto missing = fetcher.Fetch(base + "dog.png", 1000);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "could not fetch")) << missing.status();
  auto elsewhere = fetcher.Fetch("http://127.0.0.1:1/x.png", 1000);
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_EQ(elsewhere.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(elsewhere.status().message(), "not allowed"));
  origin.stop();
  serving.join();
}

}  // namespace
}  // namespace tessera::server
