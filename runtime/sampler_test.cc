#include "runtime/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera::runtime {
namespace {

using ::testing::ElementsAre;

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double max_value = -1e300;
  for (float l : logits) max_value = std::max(max_value, static_cast<double>(l));
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((logits[i] - max_value) / temperature);
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  return p;
}

// Draws `n` tokens with steps 0..n-1 (each step a fresh, independent uniform) and counts them.
std::vector<int> Histogram(const std::vector<float>& logits, SamplingParams params, int n) {
  std::vector<int> counts(logits.size(), 0);
  SamplingContext context;
  for (int i = 0; i < n; ++i) {
    context.step = i;
    ++counts[Sample(logits.data(), logits.size(), params, context).token];
  }
  return counts;
}

// Each count is Binomial(n, p): |count - n p| <= 5 sd holds with probability > 1 - 6e-7 per
// token for a correct sampler, so with fixed seeds this never flakes, yet a wrong distribution
// (e.g. temperature applied twice, an off-by-one in the CDF walk) moves a count by tens of sd.
void ExpectMatches(const std::vector<int>& counts, const std::vector<double>& p, int n) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double sd = std::sqrt(n * p[i] * (1 - p[i]));
    EXPECT_NEAR(counts[i], n * p[i], 5 * sd + 1e-9) << "token " << i;
  }
}

TEST(SamplerTest, GreedyPicksArgmaxLowestIdOnTies) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(Sample(logits.data(), logits.size(), Greedy(), {}).token, 1);
}

TEST(SamplerTest, TopKOneIsGreedyAtAnyTemperature) {
  const std::vector<float> logits = {0.5f, 1.0f, 4.0f, 3.9f};
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  for (uint64_t step = 0; step < 50; ++step) {
    SamplingContext c;
    c.step = step;
    EXPECT_EQ(Sample(logits.data(), logits.size(), p, c).token, 2);
  }
}

TEST(SamplerTest, AllNegativeInfinityButOne) {
  std::vector<float> logits(1000, -kInf);
  logits[777] = -50.0f;
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_p = 0.5f;
  p.min_p = 0.3f;
  p.logprobs = true;
  p.top_logprobs = 3;
  for (uint64_t step = 0; step < 20; ++step) {
    SamplingContext c;
    c.step = step;
    SampleResult r = Sample(logits.data(), logits.size(), p, c);
    EXPECT_EQ(r.token, 777);
    EXPECT_FLOAT_EQ(r.logprob, 0.0f);
    ASSERT_EQ(r.top.size(), 3u);
    EXPECT_EQ(r.top[0].token, 777);
    EXPECT_FLOAT_EQ(r.top[0].logprob, 0.0f);
    // The -inf alternatives are listed by id.
    EXPECT_EQ(r.top[1].token, 0);
    EXPECT_EQ(r.top[1].logprob, -kInf);
    EXPECT_EQ(r.top[2].token, 1);
  }
  EXPECT_EQ(Sample(logits.data(), logits.size(), Greedy(), {}).token, 777);
}

TEST(SamplerTest, EverythingBannedFallsBackToLowestUnbannedId) {
  std::vector<float> logits(5, -kInf);
  SamplingContext c;
  c.banned_tokens = {0, 1};
  EXPECT_EQ(Sample(logits.data(), logits.size(), Greedy(), c).token, 2);
  SamplingParams p;
  EXPECT_EQ(Sample(logits.data(), logits.size(), p, c).token, 2);
}

TEST(SamplerTest, BannedTokensAreNeverSampled) {
  const std::vector<float> logits = {5.0f, 4.9f, 0.0f, 1.0f};
  SamplingContext c;
  c.banned_tokens = {0};
  EXPECT_EQ(Sample(logits.data(), logits.size(), Greedy(), c).token, 1);
  SamplingParams p;
  for (uint64_t step = 0; step < 500; ++step) {
    c.step = step;
    EXPECT_NE(Sample(logits.data(), logits.size(), p, c).token, 0);
  }
}

// Constrained decoding: only tokens whose bit is set may be drawn, and the draw over them follows
// the softmax renormalised to the allowed tokens (as masking logits to -inf does).
TEST(SamplerTest, TheAllowedMaskRestrictsAndRenormalises) {
  const std::vector<float> logits = {5.0f, 1.0f, 0.5f, 2.0f, -1.0f, 3.0f};
  const uint64_t mask = (1u << 1) | (1u << 3) | (1u << 4);  // Tokens 1, 3, 4.
  SamplingContext c;
  c.allowed_tokens = &mask;
  c.allowed_tokens_vocab = 6;
  EXPECT_EQ(Sample(logits.data(), logits.size(), Greedy(), c).token, 3);
  SamplingParams p;
  p.temperature = 0.7f;
  std::vector<int> counts(logits.size(), 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    c.step = i;
    ++counts[Sample(logits.data(), logits.size(), p, c).token];
  }
  EXPECT_EQ(counts[0] + counts[2] + counts[5], 0);
  const std::vector<double> allowed = Softmax({1.0f, 2.0f, -1.0f}, 0.7);
  ExpectMatches({counts[1], counts[3], counts[4]}, allowed, n);
  // Logprobs stay those of the model's distribution (as for penalties).
  p.logprobs = true;
  const SampleResult r = Sample(logits.data(), logits.size(), p, c);
  const std::vector<double> full = Softmax(logits, 1.0);
  EXPECT_NEAR(r.logprob, std::log(full[r.token]), 1e-5);
  // Ids past the mask's vocabulary are not allowed; a mask with its only token banned still
  // yields an allowed token rather than an arbitrary one.
  const uint64_t only_five = 1u << 5;
  SamplingContext narrow;
  narrow.allowed_tokens = &only_five;
  narrow.allowed_tokens_vocab = 5;  // Token 5 is past it.
  narrow.banned_tokens = {};
  std::vector<float> flat(8, 0.0f);
  EXPECT_EQ(Sample(flat.data(), flat.size(), Greedy(), narrow).token, 0);  // Nothing allowed.
  SamplingContext both;
  both.allowed_tokens = &only_five;
  both.allowed_tokens_vocab = 8;
  both.banned_tokens = {5};
  EXPECT_EQ(Sample(flat.data(), flat.size(), Greedy(), both).token, 5);
  EXPECT_EQ(Sample(flat.data(), flat.size(), p, both).token, 5);
}

TEST(SamplerTest, PenaltyArithmetic) {
  const std::vector<float> logits = {2.0f, -1.0f, 3.0f, 0.5f, -0.5f, 1.0f};
  const std::vector<int32_t> prompt = {0, 1, 0};         // Repeats count once for repetition.
  const std::vector<int32_t> output = {2, 2, 2, 3, 99};  // 99 is out of range: ignored.
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.25f;
  p.presence_penalty = 0.5f;
  SamplingContext c;
  c.prompt_tokens = &prompt;
  c.output_tokens = &output;
  c.banned_tokens = {5};
  std::vector<float> out(logits.size());
  ApplyPenalties(logits.data(), logits.size(), p, c, out.data());
  // 0: 2/2. 1: -1*2. 2: 3/2 - 3*0.25 - 0.5. 3: 0.5/2 - 0.25 - 0.5. 4: untouched. 5: banned.
  EXPECT_THAT(out, ElementsAre(1.0f, -2.0f, 0.25f, -0.5f, -0.5f, -kInf));

  // In place gives the same.
  std::vector<float> in_place = logits;
  ApplyPenalties(in_place.data(), in_place.size(), p, c, in_place.data());
  EXPECT_EQ(in_place, out);

  // Greedy sees the penalised logits: token 0 (now 1.0) beats token 2 (now 0.25).
  EXPECT_EQ(Sample(logits.data(), logits.size(), Greedy(), {}).token, 2);
  SamplingParams g = p;
  g.temperature = 0.0f;
  EXPECT_EQ(Sample(logits.data(), logits.size(), g, c).token, 0);
}

TEST(SamplerTest, PresenceAndFrequencyIgnorePromptTokens) {
  const std::vector<float> logits = {1.0f, 1.0f};
  const std::vector<int32_t> prompt = {0, 0, 0};
  const std::vector<int32_t> output = {1};
  SamplingParams p;
  p.frequency_penalty = 1.0f;
  p.presence_penalty = 1.0f;
  SamplingContext c;
  c.prompt_tokens = &prompt;
  c.output_tokens = &output;
  std::vector<float> out(2);
  ApplyPenalties(logits.data(), 2, p, c, out.data());
  EXPECT_THAT(out, ElementsAre(1.0f, -1.0f));
  // Called twice: the thread-local count buffer was left clean.
  ApplyPenalties(logits.data(), 2, p, c, out.data());
  EXPECT_THAT(out, ElementsAre(1.0f, -1.0f));
}

TEST(SamplerTest, TemperatureMatchesSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.0f, -1.0f, 1.5f, 0.3f};
  for (float temperature : {1.0f, 0.5f, 2.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 42;
    const int n = 20000;
    ExpectMatches(Histogram(logits, p, n), Softmax(logits, temperature), n);
  }
}

TEST(SamplerTest, TopKRenormalisesOverTheKBest) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.0f, -1.0f, 1.5f, 0.3f};
  SamplingParams p;
  p.top_k = 3;
  p.seed = 7;
  const int n = 20000;
  // Keeps 1, 4, 0.
  std::vector<double> expected = Softmax({1.0f, 2.0f, -kInf, -kInf, 1.5f, -kInf}, 1.0);
  ExpectMatches(Histogram(logits, p, n), expected, n);
}

TEST(SamplerTest, AllPathsDrawTheSameTokenFromTheSameWeights) {
  // The dense path (no top-k/top-p), the heap top-k path and the nth_element top-k path must agree
  // exactly when top-k drops only a token of weight 0: same weights, same id order, same sums.
  for (int32_t vocab : {100, 5000}) {  // k = vocab - 1: heap path at 100, nth_element at 5000.
    std::vector<float> logits(vocab);
    for (int32_t i = 0; i < vocab; ++i) logits[i] = std::sin(i * 0.7f) * 4.0f;
    logits[vocab / 2] = -1e30f;  // Finite, but exp((l - max) / T) is exactly 0.
    SamplingParams dense;
    dense.temperature = 0.8f;
    dense.seed = 5;
    SamplingParams top_k = dense;
    top_k.top_k = vocab - 1;
    for (uint64_t step = 0; step < 200; ++step) {
      SamplingContext c;
      c.step = step;
      const int32_t a = Sample(logits.data(), vocab, dense, c).token;
      EXPECT_EQ(a, Sample(logits.data(), vocab, top_k, c).token) << vocab << " " << step;
      EXPECT_NE(a, vocab / 2);
    }
  }
}

TEST(SamplerTest, LargeTopKKeepsOnlyTheKBest) {
  // k above the heap limit: the nth_element path.
  const int32_t vocab = 20000;
  std::vector<float> logits(vocab);
  for (int32_t i = 0; i < vocab; ++i) logits[i] = std::sin(i * 12.9898f) * 2.0f;
  std::vector<float> sorted = logits;
  std::nth_element(sorted.begin(), sorted.begin() + 4999, sorted.end(), std::greater<float>());
  const float kth = sorted[4999];
  SamplingParams p;
  p.top_k = 5000;
  std::vector<int> counts = Histogram(logits, p, 500);
  int drawn = 0;
  for (int32_t i = 0; i < vocab; ++i) {
    if (logits[i] < kth) EXPECT_EQ(counts[i], 0) << i;
    drawn += counts[i];
  }
  EXPECT_EQ(drawn, 500);
}

TEST(SamplerTest, TopPKeepsTheTokenThatCrossesTheThreshold) {
  // Probabilities 0.5, 0.3, 0.15, 0.05.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  SamplingParams p;
  p.top_p = 0.7f;  // 0.5 < 0.7 so the 0.3 token is kept; 0.8 >= 0.7 so the rest go.
  p.seed = 3;
  const int n = 20000;
  ExpectMatches(Histogram(logits, p, n), {0.5 / 0.8, 0.3 / 0.8, 0, 0}, n);
  p.top_p = 0.85f;  // Now the 0.15 token is needed too.
  ExpectMatches(Histogram(logits, p, n), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, n);
}

TEST(SamplerTest, TopPOnALargeVocabularyUsesTheWholeNucleus) {
  // 300 equally likely tokens (more than the first selection chunk) and a long tail far below.
  std::vector<float> logits(5000, -10.0f);
  for (int i = 0; i < 300; ++i) logits[i * 7] = 5.0f;
  SamplingParams p;
  p.top_p = 0.9f;
  const int n = 1000;
  std::vector<int> counts = Histogram(logits, p, n);
  int in_top = 0, distinct = 0;
  for (int i = 0; i < 5000; ++i) {
    if (counts[i] > 0) ++distinct;
    if (logits[i] == 5.0f) in_top += counts[i];
  }
  EXPECT_EQ(in_top, n);
  // The nucleus is 0.9 of the mass: 270 of the 300 (lowest ids win the tie at equal scores).
  EXPECT_GT(distinct, 200);
  EXPECT_LE(distinct, 271);
}

TEST(SamplerTest, TopPMatchesAFullSortOnAFlatLargeDistribution) {
  // 20000 distinct logits spread over [-3, 3]: a wide nucleus (thousands of tokens), which takes
  // the bucketed path; its kept set must equal the one a full sort defines.
  const int32_t vocab = 20000;
  std::vector<float> logits(vocab);
  for (int32_t i = 0; i < vocab; ++i) logits[i] = 3.0f * std::sin(i * 12.9898f + 0.5f);
  const float top_p = 0.5f;
  std::vector<int32_t> order(vocab);
  for (int32_t i = 0; i < vocab; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const std::vector<double> p = Softmax(logits, 1.0);
  std::vector<bool> in_nucleus(vocab, false);
  double cumulative = 0;
  int nucleus = 0;
  for (int32_t id : order) {
    in_nucleus[id] = true;
    ++nucleus;
    cumulative += p[id];
    if (cumulative >= top_p) break;
  }
  ASSERT_GT(nucleus, 1000);
  SamplingParams params;
  params.top_p = top_p;
  params.seed = 11;
  const int n = 1000;
  std::vector<int> counts = Histogram(logits, params, n);
  int draws_near_boundary = 0;
  for (int32_t i = 0; i < vocab; ++i) {
    if (!in_nucleus[i]) EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the nucleus";
  }
  // The least likely tenth of the nucleus is still sampled (the boundary is not cut short).
  for (int j = nucleus - nucleus / 10; j < nucleus; ++j) draws_near_boundary += counts[order[j]];
  EXPECT_GT(draws_near_boundary, 0);
}

TEST(SamplerTest, MinPFiltersRelativeToTheMostLikely) {
  // Probabilities relative to the max: 1, 0.5, 0.2, 0.09.
  const std::vector<float> logits = {0.0f, std::log(0.5f), std::log(0.2f), std::log(0.09f)};
  SamplingParams p;
  p.min_p = 0.1f;  // Drops only the 0.09 token.
  const int n = 20000;
  std::vector<int> counts = Histogram(logits, p, n);
  EXPECT_EQ(counts[3], 0);
  ExpectMatches(counts, {1 / 1.7, 0.5 / 1.7, 0.2 / 1.7, 0}, n);
  p.min_p = 0.6f;  // Only the max survives.
  counts = Histogram(logits, p, 200);
  EXPECT_EQ(counts[0], 200);
}

TEST(SamplerTest, SameSeedAndStepSameTokenWhateverElseWasSampled) {
  std::vector<float> logits(1000);
  for (int i = 0; i < 1000; ++i) logits[i] = std::sin(i * 0.37f) * 3.0f;
  SamplingParams p;
  p.seed = 1234567;
  p.top_p = 0.95f;
  SamplingContext c;
  std::vector<int32_t> first;
  for (uint64_t step = 0; step < 50; ++step) {
    c.step = step;
    first.push_back(Sample(logits.data(), logits.size(), p, c).token);
  }
  // Interleave another request and resume from the middle (as after preemption): same tokens.
  SamplingParams other = p;
  other.seed = 99;
  for (uint64_t step = 25; step < 50; ++step) {
    c.step = step;
    Sample(logits.data(), logits.size(), other, c);
    EXPECT_EQ(Sample(logits.data(), logits.size(), p, c).token, first[step]);
  }
  // A different seed gives a different sequence.
  int differ = 0;
  for (uint64_t step = 0; step < 50; ++step) {
    c.step = step;
    differ += Sample(logits.data(), logits.size(), other, c).token != first[step];
  }
  EXPECT_GT(differ, 25);
}

TEST(SamplerTest, UniformForStepIsUniformAndKeyed) {
  double sum = 0;
  std::vector<int> bins(10, 0);
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = UniformForStep(5, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    ++bins[static_cast<int>(u * 10)];
  }
  // Mean of n uniforms has sd 1/sqrt(12 n) ~ 0.0009: 5 sd.
  EXPECT_NEAR(sum / n, 0.5, 0.0046);
  for (int b : bins) EXPECT_NEAR(b, n / 10, 5 * std::sqrt(n * 0.1 * 0.9));
  EXPECT_NE(UniformForStep(5, 0), UniformForStep(6, 0));
  EXPECT_NE(UniformForStep(5, 0), UniformForStep(5, 1));
  EXPECT_EQ(UniformForStep(5, 3), UniformForStep(5, 3));
}

TEST(SamplerTest, LogprobsAreOfTheRawDistribution) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -kInf};
  const std::vector<int32_t> output = {1, 1};
  SamplingParams p;
  p.temperature = 0.0f;
  p.frequency_penalty = 2.0f;  // Moves the greedy pick, not the reported distribution.
  p.logprobs = true;
  p.top_logprobs = 4;
  SamplingContext c;
  c.output_tokens = &output;
  SampleResult r = Sample(logits.data(), logits.size(), p, c);
  EXPECT_EQ(r.token, 3);
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(r.logprob, 3.0 - lse, 1e-6);
  ASSERT_EQ(r.top.size(), 4u);
  EXPECT_EQ(r.top[0].token, 1);  // Tie with 3 broken by the lower id.
  EXPECT_EQ(r.top[1].token, 3);
  EXPECT_EQ(r.top[2].token, 2);
  EXPECT_EQ(r.top[3].token, 0);
  EXPECT_NEAR(r.top[0].logprob, 3.0 - lse, 1e-6);
  EXPECT_NEAR(r.top[2].logprob, 2.0 - lse, 1e-6);
  EXPECT_NEAR(r.top[3].logprob, 1.0 - lse, 1e-6);
  // Not requested: nothing reported.
  p.logprobs = false;
  p.top_logprobs = 0;
  r = Sample(logits.data(), logits.size(), p, c);
  EXPECT_EQ(r.logprob, 0.0f);
  EXPECT_TRUE(r.top.empty());
}

TEST(SamplerTest, TopLogprobsOnTheFullVocabulary) {
  const int32_t vocab = 262144;
  std::vector<float> logits(vocab);
  for (int32_t i = 0; i < vocab; ++i) logits[i] = std::sin(i * 0.001f) * 10.0f + (i % 97) * 1e-3f;
  SamplingParams p = Greedy();
  p.top_logprobs = 20;
  SampleResult r = Sample(logits.data(), vocab, p, {});
  ASSERT_EQ(r.top.size(), 20u);
  EXPECT_EQ(r.top[0].token, r.token);
  // Independent check: partial_sort of (logit desc, id asc) over everything.
  std::vector<int32_t> ids(vocab);
  for (int32_t i = 0; i < vocab; ++i) ids[i] = i;
  std::partial_sort(ids.begin(), ids.begin() + 20, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < 20; ++i) EXPECT_EQ(r.top[i].token, ids[i]) << i;
}

TEST(SamplerTest, FastOnTheRealVocabulary) {
  // Not a benchmark, a guard against accidental O(V log V): each call on 262144 logits must be
  // well under 20 ms even on a loaded 2-core CI machine (it takes ~1-2 ms here).
  const int32_t vocab = 262144;
  std::vector<float> logits(vocab);
  for (int32_t i = 0; i < vocab; ++i) logits[i] = std::cos(i * 0.0137f) * 8.0f;
  std::vector<int32_t> prompt(4000), output(500);
  for (int i = 0; i < 4000; ++i) prompt[i] = (i * 7919) % vocab;
  for (int i = 0; i < 500; ++i) output[i] = (i * 104729) % vocab;
  SamplingParams p;
  p.top_p = 0.9f;
  p.top_k = 50;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.1f;
  p.frequency_penalty = 0.1f;
  p.logprobs = true;
  p.top_logprobs = 5;
  SamplingContext c;
  c.prompt_tokens = &prompt;
  c.output_tokens = &output;
  const auto start = std::chrono::steady_clock::now();
  const int calls = 20;
  for (int i = 0; i < calls; ++i) {
    c.step = i;
    Sample(logits.data(), vocab, p, c);
    p.top_k = 0;  // Also the plain top-p path.
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(ms / calls, 20.0);
}

}  // namespace
}  // namespace tessera::runtime
