// LaunchSample (GPU sampling) against the CPU sampler, runtime::Sample, on the same rows: random
// logits (N(0, 3) squashed into the softcap's (-30, 30), rows with ties, -inf, NaN, +inf, all
// -inf), random parameters (temperature, top-k, top-p, min-p, penalties, bans, seeds and steps),
// many rows of different parameters per launch. Runs on a GPU (sampling_gpu_test) and, unchanged,
// on the CPU emulation (sampling_emu_test) with smaller vocabularies.
//
// What must match:
//  - The token, exactly, except in rows whose draw lies within rounding of a cumulative-sum
//    boundary. The kernel sums the same fp32 weights in fp64 in another order (relative error
//    < n * 2^-53, about 3e-11 for n = 262144), so under the emulation, where expf is the host's
//    expf as in the CPU sampler and the weights are bit for bit the same, a row is "near" when the
//    CPU's threshold (or top-p target) is within 1e-9 * total of a cumulative sum; near rows must
//    be under 1%. On a GPU, expf is within 2 ulp of the host's (CUDA's documented bound), so each
//    weight, each cumulative sum c and the threshold may differ by 2^-22 relative: a row is near
//    when |threshold - c| <= 2^-22 (c + threshold) + 1e-9 total, or when a score is within 2 ulp
//    of log(min_p) (logf may differ by an ulp). That bound is the worst case (every weight off
//    in the same direction), so at vocab 262144 a few percent of dense rows count as near; what
//    must stay under 1% there is the rows whose token actually differs (all of them near).
//  - The logprob within 1e-5: the kernel's log-sum-exp sums fp32 exp terms in fp64 (the CPU does
//    the same in another order), so only the last bits of the fp32 result differ.
//
// The "near" test is computed here by a naive reference (a full sort, no shared code with the
// kernel), which must also agree with the CPU sampler on every row that is not near.
#include "runtime/cuda/sampling.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/test_util.h"
#include "runtime/sampler.h"
#include "runtime/sampling_params.h"

namespace tessera::runtime::cuda {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Test values drawn from SplitMix64 (test_util.h).
class Rng : public test_util::SplitMix64 {
 public:
  using SplitMix64::SplitMix64;
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  double Normal() {
    const double u1 = std::max(Uniform(), 1e-300), u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  template <typename T>
  T Pick(const std::vector<T>& v) {
    return v[Next() % v.size()];
  }
};

// One row to sample: its logits and everything the CPU sampler takes.
struct Row {
  std::vector<float> logits;
  SamplingParams params;
  std::vector<int32_t> prompt, output;
  std::vector<int32_t> banned;
  uint64_t step = 0;
};

SamplingContext ContextOf(const Row& row) {
  SamplingContext c;
  c.prompt_tokens = &row.prompt;
  c.output_tokens = &row.output;
  c.banned_tokens = row.banned;
  c.step = row.step;
  return c;
}

enum class Kind { kNormal, kTies, kNegInf, kNaN, kAllNegInf, kPosInf, kPeaked };

std::vector<float> MakeLogits(Rng& rng, int vocab, Kind kind) {
  std::vector<float> x(vocab);
  for (float& v : x) v = static_cast<float>(30.0 * std::tanh(3.0 * rng.Normal() / 30.0));
  switch (kind) {
    case Kind::kNormal:
      break;
    case Kind::kTies:  // Coarse values: many exact ties, at the maximum too.
      for (float& v : x) v = std::round(v);
      break;
    case Kind::kNegInf:
      for (float& v : x) {
        if (rng.Uniform() < 0.3) v = -kInf;
      }
      break;
    case Kind::kNaN:
      for (int j = 0; j < 5; ++j) x[rng.Int(0, vocab - 1)] = NAN;
      break;
    case Kind::kAllNegInf:
      for (float& v : x) v = -kInf;
      break;
    case Kind::kPosInf:
      x[rng.Int(0, vocab - 1)] = kInf;
      break;
    case Kind::kPeaked:  // A few dominant tokens: top-p keeps very few.
      for (int j = 0; j < 3; ++j) x[rng.Int(0, vocab - 1)] = 25.0f + j;
      break;
  }
  return x;
}

Row RandomRow(Rng& rng, int vocab) {
  Row row;
  const double k = rng.Uniform();
  const Kind kind = k < 0.45   ? Kind::kNormal
                    : k < 0.6  ? Kind::kTies
                    : k < 0.72 ? Kind::kNegInf
                    : k < 0.8  ? Kind::kNaN
                    : k < 0.85 ? Kind::kAllNegInf
                    : k < 0.89 ? Kind::kPosInf
                               : Kind::kPeaked;
  row.logits = MakeLogits(rng, vocab, kind);
  SamplingParams& p = row.params;
  p.temperature = rng.Pick<float>({0.0f, 0.7f, 1.0f, 1.3f, 1.3f});
  p.top_k = rng.Pick<int32_t>({0, 0, 1, 5, 50, vocab / 3, vocab});
  p.top_p = rng.Pick<float>({1.0f, 1.0f, 0.9f, 0.5f, 0.98f});
  p.min_p = rng.Pick<float>({0.0f, 0.0f, 0.05f});
  p.seed = rng.Next();
  p.logprobs = true;
  row.step = rng.Next() % 1000;
  if (rng.Uniform() < 0.6) {
    // Penalties over prompt and output tokens with repeats (and an id outside the vocabulary,
    // which both sides ignore).
    const int prompt_len = rng.Int(0, 40), output_len = rng.Int(0, 30);
    for (int j = 0; j < prompt_len; ++j) row.prompt.push_back(rng.Int(0, vocab - 1));
    for (int j = 0; j < output_len; ++j) {
      row.output.push_back(rng.Uniform() < 0.4 && !row.output.empty() ? rng.Pick(row.output)
                                                                      : rng.Int(0, vocab - 1));
    }
    if (rng.Uniform() < 0.2) row.prompt.push_back(vocab + 7);
    p.repetition_penalty = rng.Pick<float>({1.0f, 1.3f, 0.8f});
    p.presence_penalty = rng.Pick<float>({0.0f, 0.5f, -0.3f});
    p.frequency_penalty = rng.Pick<float>({0.0f, 0.2f, 0.7f});
  }
  if (rng.Uniform() < 0.3) {
    // Bans: sometimes the lowest ids (so that the fallback of an all -inf row moves on), sometimes
    // the row's best token.
    const int n = rng.Int(1, 4);
    for (int j = 0; j < n; ++j)
      row.banned.push_back(rng.Uniform() < 0.5 ? j : rng.Int(0, vocab - 1));
    const auto best = std::max_element(row.logits.begin(), row.logits.end(), [](float a, float b) {
      return std::isnan(a) || (!std::isnan(b) && a < b);
    });
    if (rng.Uniform() < 0.5) row.banned.push_back(static_cast<int32_t>(best - row.logits.begin()));
  }
  return row;
}

// The row's penalty entries (distinct tokens, with all their flags) and per-row parameters.
void ToDevice(const Row& row, std::vector<PenaltyEntry>& entries, SampleRowParams& rp) {
  std::map<int32_t, PenaltyEntry> by_token;
  for (int32_t t : row.prompt) by_token[t].in_context = 1;
  for (int32_t t : row.output) {
    by_token[t].in_context = 1;
    ++by_token[t].output_count;
  }
  for (int32_t t : row.banned) by_token[t].banned = 1;
  rp.temperature = row.params.temperature;
  rp.top_k = row.params.top_k;
  rp.top_p = row.params.top_p;
  rp.min_p = row.params.min_p;
  rp.repetition_penalty = row.params.repetition_penalty;
  rp.presence_penalty = row.params.presence_penalty;
  rp.frequency_penalty = row.params.frequency_penalty;
  rp.penalty_begin = static_cast<int32_t>(entries.size());
  for (auto& [token, e] : by_token) {
    e.token = token;
    entries.push_back(e);
  }
  rp.penalty_end = static_cast<int32_t>(entries.size());
  rp.uniform = UniformForStep(row.params.seed, row.step);
}

// The naive reference: the kept set by a full sort, the draw's threshold and cumulative sums in
// id order. `near` says whether a cumulative sum (of the draw or of the top-p nucleus) lies within
// rel * (sum + target) + abs * total of its target, i.e. whether the weights' rounding (rel) or
// any summation order (abs) could change the token.
struct Reference {
  int32_t token = -1;  // -1: greedy or fallback rows (no draw).
  bool near = false;
};

Reference NaiveDraw(const Row& row, double rel, double abs) {
  Reference ref;
  const SamplingParams& p = row.params;
  const int vocab = static_cast<int>(row.logits.size());
  if (p.temperature <= 0.0f || p.top_k == 1) return ref;
  std::vector<float> a(vocab);
  ApplyPenalties(row.logits.data(), vocab, p, ContextOf(row), a.data());
  float max_value = -kInf;
  for (float v : a) {
    if (v > max_value) max_value = v;
  }
  if (!std::isfinite(max_value)) return ref;
  const float inv_t = 1.0f / p.temperature;
  const float min_score = p.min_p > 0.0f ? std::log(p.min_p) : -kInf;
  struct C {
    float score;
    int32_t id;
    float w;
  };
  std::vector<C> cands;
  for (int i = 0; i < vocab; ++i) {
    const float s = (a[i] - max_value) * inv_t;
    if (std::isfinite(min_score) &&
        std::fabs(s - min_score) <= 2 * (std::nextafter(min_score, 0.0f) - min_score)) {
      ref.near = true;  // logf may differ by an ulp on a GPU.
    }
    if (s >= min_score && s > -kInf) cands.push_back({s, i, std::exp(s)});
  }
  std::sort(cands.begin(), cands.end(), [](const C& x, const C& y) {
    return x.score > y.score || (x.score == y.score && x.id < y.id);
  });
  if (p.top_k > 0 && p.top_k < static_cast<int>(cands.size())) cands.resize(p.top_k);
  if (p.top_p < 1.0f && cands.size() > 1) {
    double total = 0.0;
    for (const C& c : cands) total += c.w;
    const double target = p.top_p * total;
    double cum = 0.0;
    size_t keep = cands.size();
    for (size_t j = 0; j < cands.size(); ++j) {
      cum += cands[j].w;
      if (std::fabs(cum - target) <= rel * (cum + target) + abs * total) ref.near = true;
      if (cum >= target && keep == cands.size()) keep = j + 1;
    }
    cands.resize(keep);
  }
  std::sort(cands.begin(), cands.end(), [](const C& x, const C& y) { return x.id < y.id; });
  double total = 0.0;
  for (const C& c : cands) total += c.w;
  const double threshold = UniformForStep(p.seed, row.step) * total;
  double cum = 0.0;
  for (const C& c : cands) {
    cum += c.w;
    if (c.w > 0.0f && std::fabs(cum - threshold) <= rel * (cum + threshold) + abs * total) {
      ref.near = true;
    }
    if (ref.token < 0 && cum > threshold) ref.token = c.id;
  }
  if (ref.token < 0) ref.token = cands.back().id;
  return ref;
}

class SamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = QueryDevices();
    if (!devices.ok() || devices->empty()) GTEST_SKIP() << "no GPU: " << devices.status();
    emulated_ = (*devices)[0].name.find("emulation") != std::string::npos;
  }

  // Samples `rows` on the device in one launch; returns tokens and logprobs.
  void RunBatch(const std::vector<Row>& rows, int vocab, int64_t stride,
                std::vector<int32_t>& tokens, std::vector<float>& logprobs) {
    const int n = static_cast<int>(rows.size());
    std::vector<float> logits(static_cast<size_t>(n) * stride, 0.0f);
    std::vector<PenaltyEntry> entries;
    std::vector<SampleRowParams> params(n);
    for (int r = 0; r < n; ++r) {
      std::copy(rows[r].logits.begin(), rows[r].logits.end(), logits.begin() + r * stride);
      ToDevice(rows[r], entries, params[r]);
    }
    ASSERT_OK_AND_ASSIGN(d_logits, Upload(logits));
    ASSERT_OK_AND_ASSIGN(d_params, Upload(params));
    ASSERT_OK_AND_ASSIGN(d_entries, Upload(entries));
    ASSERT_OK_AND_ASSIGN(d_ws, DeviceBuffer::Allocate(SampleWorkspaceBytes(n, vocab)));
    ASSERT_OK_AND_ASSIGN(d_tok, DeviceBuffer::Allocate(sizeof(int32_t) * n));
    ASSERT_OK_AND_ASSIGN(d_lp, DeviceBuffer::Allocate(sizeof(float) * n));
    SampleParams p;
    p.logits = d_logits.as<float>();
    p.row_stride = stride;
    p.rows = n;
    p.vocab = vocab;
    p.row_params = d_params.as<SampleRowParams>();
    p.penalties = entries.empty() ? nullptr : d_entries.as<PenaltyEntry>();
    p.workspace = d_ws.data();
    p.out_token = d_tok.as<int32_t>();
    p.out_logprob = d_lp.as<float>();
    ASSERT_OK(LaunchSample(p, nullptr));
    ASSERT_OK(Synchronize());
    ASSERT_OK_AND_ASSIGN(tok, Download<int32_t>(d_tok, n));
    ASSERT_OK_AND_ASSIGN(lp, Download<float>(d_lp, n));
    tokens = tok;
    logprobs = lp;
  }

  struct Tally {
    int near = 0;       // Rows within rounding of a boundary.
    int differing = 0;  // Near rows whose token differs from the CPU's.
  };

  // Compares every row with the CPU sampler. With `exact`, near rows must match too (rows whose
  // sums are exact in any order).
  Tally Compare(const std::vector<Row>& rows, const std::vector<int32_t>& tokens,
                const std::vector<float>& logprobs, const std::string& what, bool exact = false) {
    const double rel = emulated_ ? 0.0 : 0x1.0p-22, abs = 1e-9;
    Tally tally;
    int bad = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      const Row& row = rows[r];
      const int vocab = static_cast<int>(row.logits.size());
      const SampleResult want = Sample(row.logits.data(), vocab, row.params, ContextOf(row));
      const Reference ref = NaiveDraw(row, rel, abs);
      tally.near += ref.near ? 1 : 0;
      tally.differing += ref.near && tokens[r] != want.token ? 1 : 0;
      const std::string where =
          absl::StrCat(what, " row ", r, " (T=", row.params.temperature, " k=", row.params.top_k,
                       " p=", row.params.top_p, " min_p=", row.params.min_p, ")");
      if (!ref.near && ref.token >= 0) {
        EXPECT_EQ(ref.token, want.token) << "naive reference disagrees with the CPU, " << where;
      }
      if ((exact || !ref.near) && tokens[r] != want.token && ++bad <= 10) {
        ADD_FAILURE() << where << ": GPU token " << tokens[r] << ", CPU token " << want.token;
      }
      if (std::isinf(want.logprob)) {
        EXPECT_EQ(logprobs[r], want.logprob) << where;
      } else if (tokens[r] == want.token) {
        EXPECT_NEAR(logprobs[r], want.logprob, 1e-5) << where;
      }
    }
    return tally;
  }

  // Near rows must be rare under the emulation (exact weights); everywhere, rows that differ.
  void ExpectRare(const Tally& t, int rows, const std::string& what) {
    if (emulated_) {
      EXPECT_LE(t.near, rows / 100) << what << ": rows near a boundary";
    }
    EXPECT_LE(t.differing, rows / 100) << what << ": rows that differ from the CPU";
  }

  bool emulated_ = false;
};

TEST_F(SamplingTest, MatchesCpuSampler) {
  Rng rng(4242);
  // (vocab, rows per launch, launches). The emulation runs each CTA's 1024 threads as fibers on
  // one core, so it samples small vocabularies; a GPU also runs the real one.
  std::vector<std::array<int, 3>> shapes = {{512, 48, 3}, {1000, 48, 2}, {4096, 32, 2}};
  if (!emulated_) shapes = {{512, 256, 4}, {4096, 256, 4}, {33001, 64, 2}, {262144, 64, 4}};
  int total = 0, greedy = 0, top_k = 0, top_p = 0, min_p = 0;
  Tally tally;
  for (const auto& [vocab, n, launches] : shapes) {
    for (int l = 0; l < launches; ++l) {
      std::vector<Row> rows;
      for (int r = 0; r < n; ++r) rows.push_back(RandomRow(rng, vocab));
      const int64_t stride = vocab + (l % 2 == 0 ? 0 : 3);
      std::vector<int32_t> tokens;
      std::vector<float> logprobs;
      RunBatch(rows, vocab, stride, tokens, logprobs);
      if (HasFatalFailure()) return;
      const Tally t = Compare(rows, tokens, logprobs, absl::StrCat("vocab ", vocab, " launch ", l));
      tally.near += t.near;
      tally.differing += t.differing;
      for (const Row& row : rows) {
        const SamplingParams& sp = row.params;
        const bool g = sp.temperature <= 0.0f || sp.top_k == 1;
        greedy += g ? 1 : 0;
        top_k += !g && sp.top_k > 1 && sp.top_k < vocab ? 1 : 0;
        top_p += !g && sp.top_p < 1.0f ? 1 : 0;
        min_p += !g && sp.min_p > 0.0f ? 1 : 0;
      }
      total += n;
    }
  }
  std::printf("%d rows (%d greedy, %d top-k, %d top-p, %d min-p), %d near a boundary, %d differ\n",
              total, greedy, top_k, top_p, min_p, tally.near, tally.differing);
  ExpectRare(tally, total, "random rows");
}

// Parameter sweeps on one row shape: every combination of the listed settings, each with several
// seeds, so that each branch (greedy, dense, top-k, top-p, both, min-p) runs on the same logits.
TEST_F(SamplingTest, ParameterGrid) {
  Rng rng(77);
  const int vocab = emulated_ ? 768 : 262144;
  std::vector<Row> rows;
  for (float t : {0.0f, 0.7f, 1.3f}) {
    for (int k : {0, 1, 5, 50}) {
      for (float top_p : {1.0f, 0.9f, 0.5f}) {
        for (float min_p : {0.0f, 0.05f}) {
          Row row;
          row.logits = MakeLogits(rng, vocab, rows.size() % 3 == 1 ? Kind::kTies : Kind::kNormal);
          row.params.temperature = t;
          row.params.top_k = k;
          row.params.top_p = top_p;
          row.params.min_p = min_p;
          row.params.seed = rng.Next();
          row.params.logprobs = true;
          row.step = rng.Next() % 100;
          rows.push_back(row);
        }
      }
    }
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  RunBatch(rows, vocab, vocab, tokens, logprobs);
  if (HasFatalFailure()) return;
  ExpectRare(Compare(rows, tokens, logprobs, "grid"), 100, "grid");
}

// Exact ties at the top-k / top-p boundary: a group of equally likely tokens, of which top-k or
// top-p keeps only the lowest ids; draws with many seeds then land on every kept one, so keeping
// one id too many or too few shows.
TEST_F(SamplingTest, TiesAtTheBoundary) {
  Rng rng(9001);
  const int vocab = emulated_ ? 1000 : 262144;
  std::vector<Row> rows;
  for (int r = 0; r < 60; ++r) {
    Row row;
    row.logits.resize(vocab);
    for (float& v : row.logits) v = static_cast<float>(rng.Normal() - 12.0);
    // Two leaders, then 24 tokens tied at 4.0, then 24 more tied at 3.0.
    for (int j = 0; j < 2; ++j) row.logits[rng.Int(0, vocab - 1)] = 5.0f;
    for (int j = 0; j < 24; ++j) row.logits[rng.Int(0, vocab - 1)] = 4.0f;
    for (int j = 0; j < 24; ++j) row.logits[rng.Int(0, vocab - 1)] = 3.0f;
    row.params.temperature = rng.Pick<float>({1.0f, 0.7f, 2.0f});
    row.params.top_k = rng.Pick<int32_t>({0, 5, 9, 17, 30, 40});
    row.params.top_p = rng.Pick<float>({1.0f, 0.2f, 0.45f, 0.7f});
    row.params.seed = rng.Next();
    row.params.logprobs = true;
    if (r % 4 == 0) row.banned = {rng.Int(0, vocab - 1)};
    rows.push_back(row);
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  RunBatch(rows, vocab, vocab, tokens, logprobs);
  if (HasFatalFailure()) return;
  ExpectRare(Compare(rows, tokens, logprobs, "ties"), 100, "ties");

  // Eight equal tokens and nothing else: top-p 0.5 reaches its target exactly at the fourth (the
  // crossing token is kept, the fifth is not), 0.25 at the second. Every weight is exp(0) = 1, so
  // every sum is an exact integer in any order: these rows must match exactly although their
  // target sits on a boundary.
  rows.clear();
  for (int r = 0; r < 24; ++r) {
    Row row;
    row.logits.assign(vocab, -kInf);
    for (int j = 0; j < 8; ++j) row.logits[(j * 7919 + r) % vocab] = 2.0f;
    row.params.top_p = r % 2 == 0 ? 0.5f : 0.25f;
    row.params.top_k = r % 3 == 0 ? 6 : 0;
    row.params.seed = rng.Next();
    row.params.logprobs = true;
    rows.push_back(row);
  }
  RunBatch(rows, vocab, vocab, tokens, logprobs);
  if (HasFatalFailure()) return;
  Compare(rows, tokens, logprobs, "exact ties", /*exact=*/true);
}

// Kept sets of thousands of candidates (flat rows, large top-k, big tie groups): beyond what the
// kernel finishes in shared memory (2048 candidates), so these take the multi-pass radix selection.
TEST_F(SamplingTest, LargeKeptSets) {
  Rng rng(31337);
  const int vocab = emulated_ ? 4096 : 262144;
  std::vector<Row> rows;
  for (int r = 0; r < 40; ++r) {
    Row row;
    row.logits.resize(vocab);
    for (float& v : row.logits) v = static_cast<float>(0.5 * rng.Normal());
    if (r % 4 == 1) {
      // A tie group of 60% of the vocabulary at the top: the cut falls inside it.
      for (int i = 0; i < vocab; ++i) {
        if (rng.Uniform() < 0.6) row.logits[i] = 2.0f;
      }
    }
    if (r % 4 == 2) {
      for (float& v : row.logits) v = std::round(v * 4.0f) / 4.0f;  // Several large tie groups.
    }
    row.params.temperature = rng.Pick<float>({1.0f, 1.3f, 0.7f});
    row.params.top_k = rng.Pick<int32_t>({0, vocab * 3 / 5, vocab * 4 / 5});
    row.params.top_p = rng.Pick<float>({1.0f, 0.9f, 0.75f, 0.6f});
    if (row.params.top_k == 0 && row.params.top_p == 1.0f) row.params.top_p = 0.8f;
    row.params.min_p = r % 5 == 0 ? 0.05f : 0.0f;
    row.params.seed = rng.Next();
    row.params.logprobs = true;
    if (r % 3 == 0) {
      for (int j = 0; j < 20; ++j) row.output.push_back(rng.Int(0, vocab - 1));
      row.params.repetition_penalty = 1.2f;
      row.params.frequency_penalty = 0.3f;
    }
    rows.push_back(row);
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  RunBatch(rows, vocab, vocab + 1, tokens, logprobs);
  if (HasFatalFailure()) return;
  ExpectRare(Compare(rows, tokens, logprobs, "large"), 100, "large");
}

// A vocabulary past 524288 (more than 2048 tiles of 256 ids): the draw's tile sums then live in
// the workspace instead of shared memory.
TEST_F(SamplingTest, VocabPastSharedTiles) {
  Rng rng(555);
  const int vocab = 600001;
  std::vector<Row> rows;
  for (int r = 0; r < 4; ++r) {
    Row row;
    row.logits = MakeLogits(rng, vocab, r == 3 ? Kind::kTies : Kind::kNormal);
    row.params.temperature = 1.0f;
    row.params.top_k = r == 1 ? 20 : r == 3 ? 200000 : 0;
    row.params.top_p = r == 2 ? 0.9f : 1.0f;
    row.params.seed = rng.Next();
    row.params.logprobs = true;
    rows.push_back(row);
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  RunBatch(rows, vocab, vocab, tokens, logprobs);
  if (HasFatalFailure()) return;
  ExpectRare(Compare(rows, tokens, logprobs, "vocab 600001"), 100, "vocab 600001");
}

// Rows with nothing to draw from: the fallback is the lowest id not banned, for greedy and
// sampled rows alike; a +inf logit makes a sampled row fall back too (as on the CPU), while the
// greedy one picks it.
TEST_F(SamplingTest, Fallbacks) {
  const int vocab = 300;
  std::vector<Row> rows;
  for (float t : {0.0f, 1.0f}) {
    Row all_neg;
    all_neg.logits.assign(vocab, -kInf);
    all_neg.params.temperature = t;
    all_neg.params.logprobs = true;
    rows.push_back(all_neg);
    Row banned = all_neg;
    banned.banned = {0, 1, 3, 2, 5};
    rows.push_back(banned);
    Row nan = all_neg;
    nan.logits.assign(vocab, NAN);
    nan.banned = {0};
    rows.push_back(nan);
    Row pos_inf = all_neg;
    pos_inf.logits.assign(vocab, 1.0f);
    pos_inf.logits[17] = kInf;
    pos_inf.banned = {0, 1};
    rows.push_back(pos_inf);
    Row only_banned_finite = all_neg;
    only_banned_finite.logits[4] = 3.0f;
    only_banned_finite.banned = {4, 0};
    rows.push_back(only_banned_finite);
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  RunBatch(rows, vocab, vocab, tokens, logprobs);
  if (HasFatalFailure()) return;
  EXPECT_EQ(Compare(rows, tokens, logprobs, "fallbacks").near, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const SampleResult want =
        Sample(rows[r].logits.data(), vocab, rows[r].params, ContextOf(rows[r]));
    EXPECT_EQ(tokens[r], want.token) << "row " << r;
  }
}

TEST_F(SamplingTest, BadParams) {
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(4096));
  SampleParams p;
  p.logits = buf.as<float>();
  p.row_params = buf.as<SampleRowParams>();
  p.workspace = buf.data();
  p.out_token = buf.as<int32_t>();
  p.rows = 1;
  p.vocab = 8;
  p.row_stride = 8;
  SampleParams q = p;
  q.vocab = 0;
  EXPECT_EQ(LaunchSample(q, nullptr).code(), absl::StatusCode::kInvalidArgument);
  q = p;
  q.row_stride = 7;
  EXPECT_EQ(LaunchSample(q, nullptr).code(), absl::StatusCode::kInvalidArgument);
  q = p;
  q.rows = -1;
  EXPECT_EQ(LaunchSample(q, nullptr).code(), absl::StatusCode::kInvalidArgument);
  for (int which = 0; which < 4; ++which) {
    q = p;
    if (which == 0) q.logits = nullptr;
    if (which == 1) q.row_params = nullptr;
    if (which == 2) q.workspace = nullptr;
    if (which == 3) q.out_token = nullptr;
    EXPECT_EQ(LaunchSample(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << which;
  }
  q = p;
  q.workspace = static_cast<char*>(buf.data()) + 4;
  EXPECT_EQ(LaunchSample(q, nullptr).code(), absl::StatusCode::kInvalidArgument);
  // No rows: nothing to do, whatever the pointers.
  SampleParams empty;
  empty.vocab = 8;
  empty.row_stride = 8;
  EXPECT_TRUE(LaunchSample(empty, nullptr).ok());
  EXPECT_EQ(SampleWorkspaceBytes(0, 8), 0u);
  EXPECT_GE(SampleWorkspaceBytes(3, 262144), 3u * 262144 * sizeof(float));
}

}  // namespace
}  // namespace tessera::runtime::cuda
