#include "server/openai_api.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/openai_responder.h"

namespace tessera::server {
namespace {

OpenAiOptions Options() {
  OpenAiOptions o;
  o.model_id = "tiny";
  o.limits.max_images_per_request = 2;
  return o;
}

TEST(OpenAiApiTest, ParsesChatWithImageAudioAndSampling) {
  const std::string png = absl::Base64Escape("\x89PNGxxxx");
  const std::string wav = absl::Base64Escape("RIFFxxxxWAVE");
  const std::string body = R"({"model":"tiny","stream":true,"stream_options":{"include_usage":true},
    "messages":[{"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"what is this?"},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,)" +
                           png + R"("}},
        {"type":"input_audio","input_audio":{"data":")" +
                           wav + R"(","format":"wav"}}]},
      {"role":"assistant","content":"a cat"}],
    "max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.1,
    "presence_penalty":0.5,"frequency_penalty":-0.5,"seed":42,"stop":["\n\n","END"],
    "logprobs":true,"top_logprobs":3,"n":1})";
  auto call = ParseChatCompletion(body, Options());
  ASSERT_TRUE(call.ok()) << call.status();
  const v1::GenerateRequest& r = call->request;
  EXPECT_TRUE(call->stream);
  EXPECT_TRUE(call->include_usage);
  ASSERT_EQ(r.messages_size(), 3);
  EXPECT_EQ(r.messages(0).role(), "system");
  EXPECT_EQ(r.messages(2).role(), "model");
  ASSERT_EQ(r.messages(1).parts_size(), 3);
  EXPECT_EQ(r.messages(1).parts(1).image().encoded(), "\x89PNGxxxx");
  EXPECT_EQ(r.messages(1).parts(1).image().mime_type(), "image/png");
  EXPECT_EQ(r.messages(1).parts(2).audio().wav(), "RIFFxxxxWAVE");
  EXPECT_EQ(r.stopping().max_tokens(), 7u);
  EXPECT_FLOAT_EQ(r.sampling().temperature(), 0.5f);
  EXPECT_EQ(r.sampling().top_k(), 40u);
  EXPECT_EQ(r.sampling().seed(), 42u);
  EXPECT_EQ(r.stopping().stop_size(), 2);
  EXPECT_TRUE(r.logprobs().enabled());
  EXPECT_EQ(r.logprobs().top_logprobs(), 3u);
  EXPECT_FALSE(r.sampling().has_repetition_penalty());
}

struct BadCase {
  const char* body;
  absl::StatusCode code;
  const char* message_part;
  const char* param;
};

TEST(OpenAiApiTest, RejectsBadRequestsWithPreciseMessages) {
  const BadCase cases[] = {
      {"{not json", absl::StatusCode::kInvalidArgument, "not valid JSON", ""},
      {"[1,2]", absl::StatusCode::kInvalidArgument, "JSON object", ""},
      {R"({"messages":[]})", absl::StatusCode::kInvalidArgument, "non-empty array", "messages"},
      {R"({"messages":[{"role":"wizard","content":"hi"}]})", absl::StatusCode::kInvalidArgument,
       "role 'wizard' is unknown", "messages"},
      {R"({"messages":[{"role":"user","content":5}]})", absl::StatusCode::kInvalidArgument,
       "content must be a string or an array", "messages"},
      {R"({"messages":[{"role":"user","content":"hi"}],"temperature":"hot"})",
       absl::StatusCode::kInvalidArgument, "'temperature' must be a number", "temperature"},
      {R"({"messages":[{"role":"user","content":"hi"}],"temperature":3})",
       absl::StatusCode::kInvalidArgument, "'temperature' is 3", "temperature"},
      {R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":0})",
       absl::StatusCode::kInvalidArgument, "'max_tokens' is 0", "max_tokens"},
      {R"({"messages":[{"role":"user","content":"hi"}],"n":0})", absl::StatusCode::kInvalidArgument,
       "'n' is 0", "n"},
      {R"({"messages":[{"role":"user","content":"hi"}],"n":2,"best_of":3})",
       absl::StatusCode::kInvalidArgument, "'best_of' other than n", "best_of"},
      {R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})",
       absl::StatusCode::kNotFound, "'gpt-4' does not exist", "model"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@@"}}]}]})",
       absl::StatusCode::kInvalidArgument, "not valid base64", "messages"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]})",
       absl::StatusCode::kInvalidArgument, "remote image URLs are not allowed", "messages"},
      {R"({"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"!!","format":"wav"}}]}]})",
       absl::StatusCode::kInvalidArgument, "not valid base64", "messages"},
      {R"({"messages":[{"role":"user","content":[{"type":"video","video":{}}]}]})",
       absl::StatusCode::kInvalidArgument, "type 'video' is not supported", "messages"},
      {R"({"messages":[{"role":"user","content":"hi"}],"top_logprobs":2})",
       absl::StatusCode::kInvalidArgument, "needs 'logprobs'", "top_logprobs"},
      {R"({"messages":[{"role":"user","content":"hi"}],"stop":[1]})",
       absl::StatusCode::kInvalidArgument, "'stop' must be", "stop"},
  };
  for (const BadCase& c : cases) {
    std::string param;
    auto call = ParseChatCompletion(c.body, Options(), &param);
    ASSERT_FALSE(call.ok()) << c.body;
    EXPECT_EQ(call.status().code(), c.code) << c.body;
    EXPECT_TRUE(absl::StrContains(call.status().message(), c.message_part))
        << c.body << " -> " << call.status();
    EXPECT_EQ(param, c.param) << c.body;
  }
}

TEST(OpenAiApiTest, TooManyImages) {
  const std::string img =
      R"({"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}})";
  const std::string body =
      R"({"messages":[{"role":"user","content":[)" + img + "," + img + "," + img + "]}]}";
  auto call = ParseChatCompletion(body, Options());
  ASSERT_FALSE(call.ok());
  EXPECT_TRUE(absl::StrContains(call.status().message(),
                                "3 images; the limit is 2 (max_images_per_request)"))
      << call.status();
}

TEST(OpenAiApiTest, CompletionPromptAndLogprobs) {
  auto call = ParseCompletion(R"({"prompt":"Once upon","max_tokens":5,"logprobs":2})", Options());
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ(call->request.prompt(), "Once upon");
  EXPECT_TRUE(call->request.logprobs().enabled());
  EXPECT_FALSE(ParseCompletion(R"({"prompt":["a","b"]})", Options()).ok());
  EXPECT_FALSE(ParseCompletion(R"({"prompt":"a","echo":true})", Options()).ok());
}

TEST(OpenAiApiTest, StreamsChunksUsageAndDone) {
  auto call = ParseChatCompletion(
      R"({"messages":[{"role":"user","content":"hi"}],"stream":true,
          "stream_options":{"include_usage":true}})",
      Options());
  ASSERT_TRUE(call.ok());
  OpenAiResponder r(*call, "chatcmpl-1", 123, [](int32_t t) { return std::to_string(t); });
  scheduler::TokenDelta d;
  d.token_ids = {5};
  d.text = "Hello";
  const std::string first = r.StreamDelta(d);
  ASSERT_TRUE(absl::StartsWith(first, "data: {"));
  auto j = nlohmann::json::parse(first.substr(6), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["delta"]["content"], "Hello");
  scheduler::Completion c;
  c.reason = scheduler::FinishReason::kLength;
  c.usage.prompt_tokens = 3;
  c.usage.completion_tokens = 1;
  const std::string end = r.StreamFinish(c);
  EXPECT_TRUE(absl::StrContains(end, R"("finish_reason":"length")"));
  EXPECT_TRUE(absl::StrContains(end, R"("total_tokens":4)"));
  EXPECT_TRUE(absl::EndsWith(end, "data: [DONE]\n\n"));
}

}  // namespace
}  // namespace tessera::server

namespace tessera::server {
namespace {

// Remote image URLs go to the injected fetcher with the byte limit; its refusal is the request's
// error; without a fetcher they are refused. (The real fetcher: image_fetcher_test.)
class FakeFetcher : public ImageFetcher {
 public:
  absl::StatusOr<std::string> Fetch(const std::string& url, int64_t max_bytes) const override {
    urls.push_back(url);
    last_max_bytes = max_bytes;
    if (url == "https://img.example/cat.png") return std::string("\x89PNG-bytes", 10);
    return absl::InvalidArgumentError("image at " + url + " is larger than 1000 bytes");
  }
  mutable std::vector<std::string> urls;
  mutable int64_t last_max_bytes = 0;
};

TEST(OpenAiApiTest, RemoteImagesGoThroughTheInjectedFetcher) {
  auto body = [](const std::string& url) {
    return R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":")" +
           url + R"("}}]}]})";
  };
  FakeFetcher fetcher;
  OpenAiOptions options = Options();
  options.limits.max_image_bytes = 1000;
  options.image_fetcher = &fetcher;
  auto ok = ParseChatCompletion(body("https://img.example/cat.png"), options);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->request.messages(0).parts(0).image().encoded(), std::string("\x89PNG-bytes", 10));
  EXPECT_EQ(fetcher.last_max_bytes, 1000);
  std::string param;
  auto big = ParseChatCompletion(body("https://img.example/big.png"), options, &param);
  ASSERT_FALSE(big.ok());
  EXPECT_TRUE(absl::StrContains(big.status().message(), "larger than 1000 bytes"));
  EXPECT_EQ(param, "messages");
  // Three remote images where two are allowed: the third is refused before it is fetched.
  const std::string part =
      R"({"type":"image_url","image_url":{"url":"https://img.example/cat.png"}})";
  fetcher.urls.clear();
  auto many = ParseChatCompletion(
      R"({"messages":[{"role":"user","content":[)" + part + "," + part + "," + part + "]}]}",
      options);
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(fetcher.urls.size(), 2u);
  options.image_fetcher = nullptr;
  auto refused = ParseChatCompletion(body("https://img.example/cat.png"), options);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "not allowed"));
}

}  // namespace
}  // namespace tessera::server
