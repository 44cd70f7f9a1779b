// The sampler: see sampler.h for the order of operations.
//
// NOTE: everything here is O(V) in the vocabulary (262144 for Gemma 4) plus work on the surviving
// candidates only: top-k and top-p use partial selection, never a sort of the whole vocabulary, and
// the greedy path is a single argmax pass. Scratch buffers are thread_local so a step allocates
// nothing once warm; they hold no state between calls.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "runtime/structured/token_bitmask.h"

namespace tessera::runtime {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Up to this top_k the k best are kept in a heap during the scan; above it, nth_element.
constexpr int64_t kHeapTopK = 4096;

// SplitMix64's finaliser: a bijective 64-bit mixer with full avalanche.
uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct Candidate {
  float score;  // (logit - max) / temperature: <= 0; the log of the unnormalised probability.
  int32_t id;
};

// Higher score first; equal scores by lower id, so every ordering is total and canonical.
bool Better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

bool InVocab(int32_t id, int32_t vocab_size) { return id >= 0 && id < vocab_size; }

// Index of the largest finite value (lowest id on ties), or -1 when none is finite.
int32_t ArgMax(const float* v, int32_t n) {
  int32_t best = -1;
  float best_value = kNegInf;
  for (int32_t i = 0; i < n; ++i) {
    if (v[i] > best_value) {  // Strict: keeps the lowest id on ties; NaN never compares greater.
      best_value = v[i];
      best = i;
    }
  }
  return best;
}

// When nothing is left to choose from (every logit -inf or banned): the lowest id not banned, so
// the result is still a valid, deterministic token. The edge bans at most a few stop ids.
int32_t Fallback(int32_t vocab_size, const std::vector<int32_t>& banned) {
  for (int32_t id = 0; id < vocab_size; ++id) {
    if (std::find(banned.begin(), banned.end(), id) == banned.end()) return id;
  }
  return 0;
}

// Every logit is -inf (or NaN) after bans and the mask: the first token the mask allows and the
// bans do not forbid, else the first the mask allows, else the first not banned.
int32_t Fallback(int32_t vocab_size, const SamplingContext& context) {
  if (context.allowed_tokens != nullptr) {
    const int32_t n = std::min(vocab_size, context.allowed_tokens_vocab);
    int32_t first_allowed = -1;
    for (int32_t id = 0; id < n; ++id) {
      if (!structured::BitmaskTest(context.allowed_tokens, id)) continue;
      if (first_allowed < 0) first_allowed = id;
      const auto& b = context.banned_tokens;
      if (std::find(b.begin(), b.end(), id) == b.end()) return id;
    }
    if (first_allowed >= 0) return first_allowed;
  }
  return Fallback(vocab_size, context.banned_tokens);
}

// log(sum(exp(logits))) over finite logits, accumulated in double.
double LogSumExp(const float* logits, int32_t n) {
  float max_value = kNegInf;
  for (int32_t i = 0; i < n; ++i) max_value = std::max(max_value, logits[i]);
  if (!std::isfinite(max_value)) return max_value;
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) sum += std::exp(logits[i] - max_value);
  return max_value + std::log(sum);
}

// The `n` largest logits, most likely first, ties by lower id. One pass with a sorted buffer of n.
std::vector<TokenChoice> TopN(const float* logits, int32_t vocab_size, int32_t n, double lse) {
  n = std::min(n, vocab_size);
  std::vector<Candidate> best;
  best.reserve(n + 1);
  for (int32_t i = 0; i < vocab_size && n > 0; ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    // Ids arrive in increasing order, so an equal score never displaces an earlier id.
    if (static_cast<int32_t>(best.size()) == n && !(v > best.back().score)) continue;
    const Candidate c{v, i};
    best.insert(std::upper_bound(best.begin(), best.end(), c, Better), c);
    if (static_cast<int32_t>(best.size()) > n) best.pop_back();
  }
  std::vector<TokenChoice> out;
  out.reserve(best.size());
  for (const Candidate& c : best) {
    out.push_back({c.id, std::isfinite(lse) ? static_cast<float>(c.score - lse) : kNegInf});
  }
  return out;
}

// The last candidate of the top-p nucleus in (score desc, id asc) order: the smallest set of most
// likely tokens whose mass reaches `target` (the token that crosses it is kept).
//
// NOTE: a sort of a flat 262144-entry distribution took 44 ms here; instead the scores are
// bucketed (4096 equal-width buckets over [min score, 0]), bucket masses summed from the top, and
// only the bucket that crosses the target is sorted: O(V) plus a sort of one bucket (~1 ms).
Candidate NucleusBoundary(const std::vector<Candidate>& candidates,
                          const std::vector<float>& weights, double target) {
  constexpr int kBuckets = 4096;
  thread_local std::vector<Candidate> bucket;
  if (candidates.size() <= 1024) {
    // Small sets: sorting them outright is cheaper than clearing the buckets.
    bucket.assign(candidates.begin(), candidates.end());
    std::sort(bucket.begin(), bucket.end(), Better);
    double cumulative = 0.0;
    for (const Candidate& c : bucket) {
      cumulative += std::exp(c.score);
      if (cumulative >= target) return c;
    }
    return bucket.back();
  }
  float lowest = 0.0f;
  for (const Candidate& c : candidates) lowest = std::min(lowest, c.score);
  // Bucket 0 holds the highest scores; equal scores share a bucket (the map is monotone).
  const float scale = lowest < 0.0f ? (kBuckets - 1) / -lowest : 0.0f;
  auto bucket_of = [&](float score) {
    return std::min(kBuckets - 1, static_cast<int>(-score * scale));
  };
  thread_local std::vector<double> mass;
  mass.assign(kBuckets, 0.0);
  for (size_t j = 0; j < candidates.size(); ++j) mass[bucket_of(candidates[j].score)] += weights[j];

  double cumulative = 0.0;
  int crossing = kBuckets - 1;
  for (int b = 0; b < kBuckets; ++b) {
    if (cumulative + mass[b] >= target) {
      crossing = b;
      break;
    }
    cumulative += mass[b];
  }
  // Rounding may leave the target just out of reach: then the whole last bucket is scanned and
  // its final element is the boundary (everything is kept).
  bucket.clear();
  for (const Candidate& c : candidates) {
    if (bucket_of(c.score) == crossing) bucket.push_back(c);
  }
  if (bucket.empty()) {
    // The crossing index was past every non-empty bucket: keep everything.
    return *std::min_element(candidates.begin(), candidates.end(),
                             [](const Candidate& a, const Candidate& b) { return Better(b, a); });
  }
  std::sort(bucket.begin(), bucket.end(), Better);
  for (const Candidate& c : bucket) {
    cumulative += std::exp(c.score);
    if (cumulative >= target) return c;
  }
  return bucket.back();
}

// Temperature, min-p, top-k, top-p and the draw itself over (penalised) logits.
int32_t Draw(const float* logits, int32_t vocab_size, const SamplingParams& params, double u,
             const SamplingContext& context) {
  float max_value = kNegInf;
  for (int32_t i = 0; i < vocab_size; ++i) max_value = std::max(max_value, logits[i]);
  if (!std::isfinite(max_value)) return Fallback(vocab_size, context);

  const float inv_temperature = 1.0f / params.temperature;
  // min-p keeps p_i >= min_p * p_max, i.e. score_i >= log(min_p).
  const float min_score = params.min_p > 0.0f ? std::log(params.min_p) : kNegInf;

  const int64_t k = params.top_k;
  if ((k <= 0 || k >= vocab_size) && params.top_p >= 1.0f) {
    // Temperature and min-p only: weights in place over the whole vocabulary, no candidate list.
    // Same weights, order and sums as the general path below, so the same token.
    thread_local std::vector<float> dense;
    dense.resize(vocab_size);
    double total = 0.0;
    for (int32_t i = 0; i < vocab_size; ++i) {
      const float score = (logits[i] - max_value) * inv_temperature;
      dense[i] = score >= min_score ? std::exp(score) : 0.0f;  // NaN fails the test: weight 0.
      total += dense[i];
    }
    const double threshold = u * total;
    double cumulative = 0.0;
    int32_t last = 0;
    for (int32_t i = 0; i < vocab_size; ++i) {
      if (dense[i] == 0.0f) continue;
      cumulative += dense[i];
      last = i;
      if (cumulative > threshold) return i;
    }
    return last;  // Only reachable through rounding at u close to 1.
  }

  // Candidates in increasing id order; the maximum always survives (score 0 >= log(min_p)).
  thread_local std::vector<Candidate> candidates;
  candidates.clear();
  bool selected = false;  // Whether top-k reordered the candidates.
  if (k > 0 && k <= kHeapTopK && k < vocab_size) {
    selected = true;
    // NOTE: a bounded heap of the k best costs O(V) compares for the usual small k (1.2 ms for
    // 262144 logits with k = 50, against 2.6 ms for nth_element over every candidate).
    for (int32_t i = 0; i < vocab_size; ++i) {
      const float score = (logits[i] - max_value) * inv_temperature;
      if (!(score >= min_score && score > kNegInf)) continue;
      const Candidate c{score, i};
      if (static_cast<int64_t>(candidates.size()) < k) {
        candidates.push_back(c);
        std::push_heap(candidates.begin(), candidates.end(), Better);  // Worst on top.
      } else if (Better(c, candidates.front())) {
        std::pop_heap(candidates.begin(), candidates.end(), Better);
        candidates.back() = c;
        std::push_heap(candidates.begin(), candidates.end(), Better);
      }
    }
  } else {
    for (int32_t i = 0; i < vocab_size; ++i) {
      const float score = (logits[i] - max_value) * inv_temperature;
      // Drops -inf (banned) and NaN; keeps what min-p keeps.
      if (score >= min_score && score > kNegInf) candidates.push_back({score, i});
    }
    if (k > 0 && k < static_cast<int64_t>(candidates.size())) {
      std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end(), Better);
      candidates.resize(k);
      selected = true;
    }
  }
  if (selected) {
    // Back to id order so the draw does not depend on how the selection permuted.
    std::sort(candidates.begin(), candidates.end(),
              [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  }

  // Unnormalised probabilities exp(score) in (0, 1].
  thread_local std::vector<float> weights;
  weights.resize(candidates.size());
  double total = 0.0;
  for (size_t j = 0; j < candidates.size(); ++j) {
    weights[j] = std::exp(candidates[j].score);
    total += weights[j];
  }

  if (params.top_p < 1.0f && candidates.size() > 1) {
    const Candidate last = NucleusBoundary(candidates, weights, params.top_p * total);
    // Keep exactly the candidates ordered at or before the boundary, still in id order.
    size_t kept = 0;
    total = 0.0;
    for (size_t j = 0; j < candidates.size(); ++j) {
      if (Better(last, candidates[j])) continue;
      candidates[kept] = candidates[j];
      weights[kept] = weights[j];
      total += weights[j];
      ++kept;
    }
    candidates.resize(kept);
    weights.resize(kept);
  }

  const double threshold = u * total;
  double cumulative = 0.0;
  for (size_t j = 0; j < candidates.size(); ++j) {
    cumulative += weights[j];
    if (cumulative > threshold) return candidates[j].id;
  }
  return candidates.back().id;  // Only reachable through rounding at u close to 1.
}

}  // namespace

double UniformForStep(uint64_t seed, uint64_t step) {
  // Keyed by the seed, counted by the step: three rounds of mixing decorrelate nearby seeds and
  // nearby steps alike.
  uint64_t h = Mix64(seed);
  h = Mix64(h ^ (step * 0xd6e8feb86659fd93ull));
  h = Mix64(h + 0x632be59bd9b4e019ull);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

void ApplyPenalties(const float* logits, int32_t vocab_size, const SamplingParams& params,
                    const SamplingContext& context, float* out) {
  if (out != logits) std::copy(logits, logits + vocab_size, out);
  if (vocab_size <= 0) return;

  const std::vector<int32_t> empty;
  const std::vector<int32_t>& prompt = context.prompt_tokens ? *context.prompt_tokens : empty;
  const std::vector<int32_t>& output = context.output_tokens ? *context.output_tokens : empty;

  if (params.repetition_penalty != 1.0f && (!prompt.empty() || !output.empty())) {
    thread_local std::vector<uint8_t> seen;
    if (static_cast<int32_t>(seen.size()) < vocab_size) seen.assign(vocab_size, 0);
    const float penalty = params.repetition_penalty;
    auto apply = [&](const std::vector<int32_t>& tokens) {
      for (int32_t id : tokens) {
        if (!InVocab(id, vocab_size) || seen[id]) continue;
        seen[id] = 1;
        out[id] = out[id] > 0.0f ? out[id] / penalty : out[id] * penalty;
      }
    };
    apply(prompt);
    apply(output);
    for (int32_t id : prompt) {
      if (InVocab(id, vocab_size)) seen[id] = 0;
    }
    for (int32_t id : output) {
      if (InVocab(id, vocab_size)) seen[id] = 0;
    }
  }

  if ((params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) && !output.empty()) {
    thread_local std::vector<int32_t> counts;
    if (static_cast<int32_t>(counts.size()) < vocab_size) counts.assign(vocab_size, 0);
    for (int32_t id : output) {
      if (InVocab(id, vocab_size)) ++counts[id];
    }
    for (int32_t id : output) {
      if (!InVocab(id, vocab_size) || counts[id] == 0) continue;
      out[id] -=
          params.frequency_penalty * static_cast<float>(counts[id]) + params.presence_penalty;
      counts[id] = 0;  // Once per distinct token; also leaves the buffer zeroed.
    }
  }

  for (int32_t id : context.banned_tokens) {
    if (InVocab(id, vocab_size)) out[id] = kNegInf;
  }
  if (context.allowed_tokens != nullptr) {
    structured::ApplyTokenBitmask(context.allowed_tokens, context.allowed_tokens_vocab, out,
                                  vocab_size);
  }
}

SampleResult Sample(const float* logits, int32_t vocab_size, const SamplingParams& params,
                    const SamplingContext& context) {
  SampleResult result;
  if (vocab_size <= 0) return result;

  const bool has_prompt = context.prompt_tokens && !context.prompt_tokens->empty();
  const bool has_output = context.output_tokens && !context.output_tokens->empty();
  const bool adjust =
      (params.repetition_penalty != 1.0f && (has_prompt || has_output)) ||
      ((params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) && has_output) ||
      !context.banned_tokens.empty() || context.allowed_tokens != nullptr;

  const float* adjusted = logits;
  thread_local std::vector<float> scratch;
  if (adjust) {
    scratch.resize(vocab_size);
    ApplyPenalties(logits, vocab_size, params, context, scratch.data());
    adjusted = scratch.data();
  }

  if (params.temperature <= 0.0f || params.top_k == 1) {
    const int32_t best = ArgMax(adjusted, vocab_size);
    result.token = best >= 0 ? best : Fallback(vocab_size, context);
  } else {
    result.token =
        Draw(adjusted, vocab_size, params, UniformForStep(params.seed, context.step), context);
  }

  if (params.logprobs || params.top_logprobs > 0) {
    const double lse = LogSumExp(logits, vocab_size);
    result.logprob = std::isfinite(lse) ? static_cast<float>(logits[result.token] - lse) : kNegInf;
    if (params.top_logprobs > 0) result.top = TopN(logits, vocab_size, params.top_logprobs, lse);
  }
  return result;
}

}  // namespace tessera::runtime
