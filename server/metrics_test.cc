#include "server/metrics.h"

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace tessera::server {
namespace {

// Runs `promtool check metrics` on `text`; returns its problem lines other than the expected
// "should not contain ':'" lint (our names, like vLLM's, use the colon).
std::string PromtoolProblems(const std::string& text) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/metrics.prom";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  FILE* p = popen(("promtool check metrics < " + path + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  std::string problems;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    if (!absl::StrContains(line, "metric names should not contain ':'")) {
      problems += std::string(line) + "\n";
    }
  }
  return problems;
}

TEST(ServingMetricsTest, ExportsDocumentedNamesAndPassesPromtool) {
  MetricsOptions options;
  options.model_name = "tiny";
  options.emit_vllm_names = true;
  ServingMetrics metrics(options);
  metrics.RecordFinished(
      {"stop", 12, 5, absl::Milliseconds(3), absl::Milliseconds(20), absl::Milliseconds(80)});
  metrics.RecordInterToken(absl::Milliseconds(10), 2);
  metrics.RecordMedia(1, 1.5);
  metrics.RecordRejected("invalid_argument");
  metrics.RecordConstrainedRequest();
  metrics.RecordMaskTime(absl::Microseconds(7));
  metrics.RecordMaskTime(absl::Microseconds(30));
  metrics.SetReady(true);
  metrics.SetModelInfo("Gemma4", "cpu", "abc123", 4096);
  metrics.UpdateEngine({1, 2, 0.25, 0, 100, 40, 1, 3, 1});
  metrics.UpdateEngine({0, 0, 0.0, 0, 150, 40, 1, 3, 1});
  const std::string text = metrics.Serialize();

  for (const char* prefix : {"tessera:", "vllm:"}) {
    const std::string p = prefix;
    EXPECT_TRUE(absl::StrContains(text, p + "num_requests_running{model_name=\"tiny\"} 0"));
    EXPECT_TRUE(absl::StrContains(text, p + "kv_cache_usage_perc{model_name=\"tiny\"} 0"));
    EXPECT_TRUE(absl::StrContains(text, p + "prefix_cache_queries_total{model_name=\"tiny\"} 150"));
    EXPECT_TRUE(absl::StrContains(text, p + "prefix_cache_hits_total{model_name=\"tiny\"} 40"));
    EXPECT_TRUE(absl::StrContains(text, p + "num_preemptions_total{model_name=\"tiny\"} 1"));
    EXPECT_TRUE(absl::StrContains(text, p + "prompt_tokens_total{model_name=\"tiny\"} 12"));
    EXPECT_TRUE(absl::StrContains(text, p + "generation_tokens_total{model_name=\"tiny\"} 5"));
    EXPECT_TRUE(absl::StrContains(
        text, p + "request_success_total{finished_reason=\"stop\",model_name=\"tiny\"} 1"));
    EXPECT_TRUE(absl::StrContains(
        text, p + "request_success_total{finished_reason=\"abort\",model_name=\"tiny\"} 0"));
    EXPECT_TRUE(
        absl::StrContains(text, p + "time_to_first_token_seconds_count{model_name=\"tiny\"} 1"));
    EXPECT_TRUE(
        absl::StrContains(text, p + "inter_token_latency_seconds_count{model_name=\"tiny\"} 2"));
    for (const char* h : {"e2e_request_latency_seconds", "request_queue_time_seconds",
                          "request_prefill_time_seconds", "request_decode_time_seconds"}) {
      EXPECT_TRUE(absl::StrContains(text, p + h + "_count{model_name=\"tiny\"} 1")) << h;
    }
    EXPECT_TRUE(absl::StrContains(text, p + "media_images_total{model_name=\"tiny\"} 1"));
    EXPECT_TRUE(absl::StrContains(text, p + "media_audio_seconds_total{model_name=\"tiny\"} 1.5"));
    EXPECT_TRUE(absl::StrContains(text, p + "model_info{"));
    EXPECT_TRUE(absl::StrContains(text, p + "server_ready{model_name=\"tiny\"} 1"));
    EXPECT_TRUE(
        absl::StrContains(text, p + "structured_output_requests_total{model_name=\"tiny\"} 1"));
    EXPECT_TRUE(
        absl::StrContains(text, p + "structured_output_mask_seconds_count{model_name=\"tiny\"} 2"));
    // 7 us and 30 us: one at or below 10 us, both below 50 us.
    EXPECT_TRUE(absl::StrContains(
        text, p + "structured_output_mask_seconds_bucket{model_name=\"tiny\",le=\"1e-05\"} 1"))
        << text;
  }
  EXPECT_EQ(PromtoolProblems(text), "") << text;
}

}  // namespace
}  // namespace tessera::server
