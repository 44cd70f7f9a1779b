// Sampler cost per call on the real Gemma 4 vocabulary (262144 logits), one path per benchmark.
//
//   bazel run -c opt //runtime:sampler_benchmark
#include <cmath>
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "runtime/sampler.h"

namespace tessera::runtime {
namespace {

constexpr int32_t kVocab = 262144;

// A peaked, irregular row like a language model's: a few hundred plausible tokens, a long tail.
const std::vector<float>& Logits() {
  static const std::vector<float> logits = [] {
    std::vector<float> l(kVocab);
    for (int32_t i = 0; i < kVocab; ++i) {
      l[i] = 4.0f * std::sin(i * 12.9898f) + (i % 1000 == 7 ? 12.0f : 0.0f);
    }
    return l;
  }();
  return logits;
}

void Run(benchmark::State& state, const SamplingParams& params, bool penalties) {
  static const std::vector<int32_t> prompt = [] {
    std::vector<int32_t> p(4000);
    for (int i = 0; i < 4000; ++i) p[i] = (i * 7919) % kVocab;
    return p;
  }();
  static const std::vector<int32_t> output = [] {
    std::vector<int32_t> o(500);
    for (int i = 0; i < 500; ++i) o[i] = (i * 104729) % kVocab;
    return o;
  }();
  SamplingContext context;
  if (penalties) {
    context.prompt_tokens = &prompt;
    context.output_tokens = &output;
  }
  for (auto _ : state) {
    ++context.step;
    benchmark::DoNotOptimize(Sample(Logits().data(), kVocab, params, context));
  }
}

void BM_Greedy(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.0f;
  Run(state, p, false);
}
void BM_GreedyPenalties(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.1f;
  p.frequency_penalty = 0.2f;
  p.presence_penalty = 0.2f;
  Run(state, p, true);
}
void BM_GreedyTopLogprobs(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.logprobs = true;
  p.top_logprobs = 20;
  Run(state, p, false);
}
void BM_Temperature(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.8f;
  Run(state, p, false);
}
void BM_TopK50(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 50;
  Run(state, p, false);
}
void BM_TopP95(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_p = 0.95f;
  Run(state, p, false);
}
void BM_MinP(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.min_p = 0.05f;
  Run(state, p, false);
}
void BM_Everything(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 64;
  p.top_p = 0.95f;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.1f;
  p.frequency_penalty = 0.2f;
  p.logprobs = true;
  p.top_logprobs = 5;
  Run(state, p, true);
}

BENCHMARK(BM_Greedy)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GreedyPenalties)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GreedyTopLogprobs)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Temperature)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopK50)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopP95)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MinP)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Everything)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tessera::runtime
