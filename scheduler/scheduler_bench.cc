// Scheduler benchmark with a fake runner (no model): the engine's own cost per step.
//
//   bazel run -c opt //scheduler:scheduler_bench
//
// 1. Decode steady state: 256 running sequences (Gemma 4 KV layout: sliding window 1024 and
//    global, block size 16) and 1000 queued; microseconds per Engine::Step, with the runner's
//    time subtracted (the runner here only samples from made-up logits).
// 2. Prefix lookups of 8k-token prompts: KvCacheManager::FindPrefix for a fresh 8192-token
//    sequence whose prefix is cached (key hashing included), and whole-engine admission of
//    8k-token requests that hit the cache.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "runtime/testing/fake_model_runner.h"
#include "scheduler/engine.h"
#include "scheduler/kv_cache_manager.h"

namespace tessera::scheduler {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// CPU time of the calling thread: on a shared machine, wall time includes other processes' turns.
double ThreadCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

runtime::KvCacheSpec GemmaSpec(int32_t sliding_blocks, int32_t global_blocks) {
  runtime::KvCacheSpec spec;
  runtime::KvGroupSpec s;
  s.name = "sliding";
  s.window = 1024;
  s.block_size = 16;
  s.num_blocks = sliding_blocks;
  runtime::KvGroupSpec g;
  g.name = "global";
  g.block_size = 16;
  g.num_blocks = global_blocks;
  spec.groups = {s, g};
  return spec;
}

// Times Execute so that the engine's own cost can be separated from the runner's.
class TimedRunner : public FakeModelRunner {
 public:
  using FakeModelRunner::FakeModelRunner;
  absl::Status Execute(const runtime::BatchPlan& plan, runtime::StepOutput* out) override {
    const auto t0 = Clock::now();
    const double c0 = ThreadCpuMicros();
    absl::Status s = FakeModelRunner::Execute(plan, out);
    runner_cpu_us += ThreadCpuMicros() - c0;
    runner_time += Clock::now() - t0;
    return s;
  }
  Clock::duration runner_time{};
  double runner_cpu_us = 0;
};

std::vector<int32_t> Tokens(int32_t n, uint64_t seed) {
  std::vector<int32_t> t(n);
  uint64_t x = seed * 2654435761ULL + 1;
  for (auto& v : t) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<int32_t>(10 + (x >> 33) % 60000);
  }
  return t;
}

int g_steps = 2000;

void DecodeSteadyState(const char* label) {
  constexpr int kRunning = 256, kQueued = 1000, kPrompt = 512;
  const int kSteps = g_steps;
  TimedRunner runner(GemmaSpec(256 * 80, 256 * 200), 1000, /*verify_kv=*/false);
  EngineOptions o;
  o.start_loop_thread = false;
  o.max_num_seqs = kRunning;
  o.max_num_batched_tokens = 8192;
  o.max_queue_length = 2000;
  o.max_context_length = 200 * 16;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  auto engine = *Engine::Create(o, &runner, nullptr);
  for (int i = 0; i < kRunning + kQueued; ++i) {
    GenerateRequest r;
    r.request_id = absl::StrCat("r", i);
    r.prompt.token_ids = Tokens(kPrompt, i);
    r.sampling.temperature = 0;
    r.stopping.max_tokens = 100000;  // Capped by the context: nobody finishes during the run.
    r.stopping.stop_strings = {"never"};
    handles.push_back(*engine->Submit(std::move(r)));
  }
  // Prefill everything that fits, then a few decode steps.
  for (int i = 0; i < 40; ++i) engine->Step();
  EngineStats s = engine->Stats();
  std::vector<RequestEvent> sink;
  runner.runner_time = {};
  std::vector<double> per_step, per_step_cpu;
  const auto t0 = Clock::now();
  for (int i = 0; i < kSteps; ++i) {
    const auto a = Clock::now();
    const double c = ThreadCpuMicros();
    const auto r0 = runner.runner_time;
    const double rc0 = runner.runner_cpu_us;
    engine->Step();
    per_step.push_back(Micros(Clock::now() - a) - Micros(runner.runner_time - r0));
    per_step_cpu.push_back(ThreadCpuMicros() - c - (runner.runner_cpu_us - rc0));
    if (i % 16 == 0) {  // The server drains handles; keep the queues short.
      for (auto& h : handles) {
        sink.clear();
        h->Drain(&sink);
      }
    }
  }
  const double total = Micros(Clock::now() - t0);
  s = engine->Stats();
  std::sort(per_step.begin(), per_step.end());
  std::sort(per_step_cpu.begin(), per_step_cpu.end());
  std::printf(
      "decode (%s): %d running, %d waiting, %d steps:\n"
      "  engine wall %.1f us/step (p50 %.1f, p99 %.1f); engine thread CPU %.1f us/step (p50 %.1f, "
      "min %.1f);"
      " runner %.1f us/step; step wall incl. runner %.1f us\n",
      label, s.running, s.waiting, kSteps,
      std::accumulate(per_step.begin(), per_step.end(), 0.0) / kSteps, per_step[kSteps / 2],
      per_step[kSteps * 99 / 100],
      std::accumulate(per_step_cpu.begin(), per_step_cpu.end(), 0.0) / kSteps,
      per_step_cpu[kSteps / 2], per_step_cpu[0], Micros(runner.runner_time) / kSteps,
      total / kSteps);
}

void PrefixLookups() {
  constexpr int kPrompt = 8192, kIters = 200;
  KvCacheManager kv(GemmaSpec(4096, 4096), true);
  // Cache one 8k prompt.
  Sequence first;
  first.prompt = Tokens(kPrompt, 1);
  first.root_key = RootKey("bench", "");
  kv.InitSequence(&first);
  kv.Allocate(&first, kPrompt);
  first.num_computed = kPrompt;
  kv.OnComputed(&first);
  kv.Free(&first);
  double find = 0;
  int32_t hit = 0;
  for (int i = 0; i < kIters; ++i) {
    Sequence seq;
    seq.prompt = first.prompt;
    seq.prompt.push_back(5);
    seq.root_key = first.root_key;
    kv.InitSequence(&seq);
    const auto t0 = Clock::now();
    PrefixMatch m = kv.FindPrefix(&seq);
    find += Micros(Clock::now() - t0);
    hit = m.num_tokens;
  }
  std::printf(
      "prefix lookup: 8192-token prompt, hit %d tokens: %.1f us per lookup "
      "(hashing %d blocks x 2 groups included)\n",
      hit, find / kIters, kPrompt / 16);

  // Whole engine: 8k-token requests that hit the cache, one token each.
  TimedRunner runner(GemmaSpec(4096, 4096), 1000, /*verify_kv=*/false);
  EngineOptions o;
  o.start_loop_thread = false;
  o.max_num_batched_tokens = 8192;
  o.max_context_length = 16384;
  auto engine = *Engine::Create(o, &runner, nullptr);
  auto submit = [&](int i) {
    GenerateRequest r;
    r.request_id = absl::StrCat("p", i);
    r.prompt.token_ids = first.prompt;
    r.prompt.token_ids.push_back(100 + i);
    r.sampling.temperature = 0;
    r.stopping.max_tokens = 1;
    return *engine->Submit(std::move(r));
  };
  auto h = submit(0);
  while (engine->Step()) {
  }
  runner.runner_time = {};
  int steps = 0;
  const auto t0 = Clock::now();
  for (int i = 1; i <= kIters; ++i) {
    submit(i);
    while (engine->Step()) ++steps;
  }
  const double engine_us = Micros(Clock::now() - t0) - Micros(runner.runner_time);
  EngineStats s = engine->Stats();
  std::printf(
      "engine admission of 8192-token prompts hitting the cache: %.1f us per request "
      "(%d steps, runner excluded); hits %lld of %lld prompt tokens\n",
      engine_us / kIters, steps, static_cast<long long>(s.prefix_hit_tokens),
      static_cast<long long>(s.prefix_query_tokens));
}

}  // namespace
}  // namespace tessera::scheduler

// Optional argument: decode steps to time (default 2000).
int main(int argc, char** argv) {
  if (argc > 1) tessera::scheduler::g_steps = std::max(10, std::atoi(argv[1]));
  tessera::scheduler::DecodeSteadyState("absl mutex deadlock detection on, the debug default");
  // What a production main() should do: the per-lock cycle check costs several us per step.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tessera::scheduler::DecodeSteadyState("deadlock detection off");
  tessera::scheduler::PrefixLookups();
  return 0;
}
