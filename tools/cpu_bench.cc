// cpu_bench: CPU runner throughput next to the machine's own limits, measured in the same run.
//
//   cpu_bench [--dir DIR] [--spec JSON] [--threads N] [--decode_steps N] [--prefill_tokens N]
//
// Writes (or reuses) a random bf16 Gemma 4 checkpoint of a few hundred MB in DIR with
// tools/make_model's generator, loads it through the normal mmap path, and reports:
//   - memory read bandwidth (all threads summing a buffer larger than the caches), and the fp32
//     matrix-multiply rate of this project's kernel on a cache-resident problem;
//   - decode tokens/s at batch 1 and 8, with the weight bytes each step must read and the ratio to
//     the bandwidth limit (decode at batch 1 is bound by reading every weight once per token);
//   - prefill tokens/s at batch 1 and 8, with the ratio of achieved FLOP/s to the matmul rate.
// A benchmark, not a test: numbers on a shared 2-core machine are noisy.
#include <immintrin.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/model/model_loader.h"
#include "runtime/testing/golden.h"
#include "tools/make_model_lib.h"

namespace {

using namespace tessera::runtime;
using Clock = std::chrono::steady_clock;

// CPU seconds used by the whole process (all threads). On a shared machine wall time includes the
// time other processes held our cores; CPU time / threads is what the step costs when it has them.
double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Read bandwidth in bytes/s: every thread sums its share of a 1 GiB buffer, best of 3 passes.
double MeasureBandwidth(cpu::ThreadPool* pool) {
  const size_t n = (size_t{1} << 30) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  std::vector<float> sums(pool->num_threads() * 16);
  for (int pass = 0; pass < 3; ++pass) {
    auto t0 = Clock::now();
    pool->ParallelFor(static_cast<int64_t>(n / 64), 1, [&](int64_t b, int64_t e) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
      for (int64_t i = b * 64; i < e * 64; i += 64) {
        const float* p = buf.data() + i;
        acc0 = _mm256_add_ps(acc0, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)));
        acc1 = _mm256_add_ps(acc1, _mm256_add_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)));
        acc2 = _mm256_add_ps(acc2, _mm256_add_ps(_mm256_loadu_ps(p + 32), _mm256_loadu_ps(p + 40)));
        acc3 = _mm256_add_ps(acc3, _mm256_add_ps(_mm256_loadu_ps(p + 48), _mm256_loadu_ps(p + 56)));
      }
      float out[8];
      _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
      sums[(b * 16 / std::max<int64_t>(1, e - b)) % sums.size()] += out[0];
    });
    const double s = Seconds(t0, Clock::now());
    best = std::max(best, n * sizeof(float) / s);
  }
  if (sums[0] < 0) std::printf(" ");  // Keep the sums alive.
  return best;
}

// FLOP/s of cpu::MatMul over fp32 weights on a problem that fits in the caches (T=96 rows,
// 512 x 512 weights), best of 5.
double MeasureMatmul(cpu::ThreadPool* pool) {
  const int64_t T = 96, N = 512, K = 512;
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  std::vector<float> x(T * K), w(N * K), y(T * N);
  for (float& v : x) v = d(rng);
  for (float& v : w) v = d(rng);
  WeightMatrix m{WeightMatrix::Type::kF32, w.data(), N, K};
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    for (int i = 0; i < 20; ++i) cpu::MatMul(x.data(), T, m, y.data(), N, pool);
    best = std::max(best, 20 * 2.0 * T * N * K / Seconds(t0, Clock::now()));
  }
  return best;
}

// Text-decoder weights every decode step reads: all layers plus the tied embedding (logits).
int64_t DecodeBytes(const ModelWeights& w) {
  int64_t b = w.embed_tokens.bytes();
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* m :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      if (!m->empty()) b += m->bytes();
    }
  }
  return b;
}

// Multiply-adds per token through the projections (attention over short contexts is negligible).
double FlopsPerToken(const ModelWeights& w) {
  double f = 0;
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* m :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      if (!m->empty()) f += 2.0 * m->rows * m->cols;
    }
  }
  return f;  // The logits matmul runs only for sampled rows.
}

struct Seq {
  Prompt prompt;
  std::vector<std::vector<int32_t>> tables;
  int32_t pos = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/tessera_cpu_bench_model";
  std::string spec_json =
      R"({"num_layers": 16, "global_every": 6, "hidden_size": 1024, "intermediate_size": 4096,
          "num_heads": 8, "num_kv_heads": 4, "head_dim": 128, "global_head_dim": 256,
          "global_kv_heads": 1, "sliding_window": 512, "vocab_size": 32768, "seed": 7})";
  int threads = 0, decode_steps = 16, prefill_tokens = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--dir")
      dir = v;
    else if (a == "--spec")
      spec_json = v;
    else if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--decode_steps")
      decode_steps = std::max(1, std::atoi(v.c_str()));
    else if (a == "--prefill_tokens")
      prefill_tokens = std::max(8, std::atoi(v.c_str()));
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  auto spec = tessera::tools::ParseModelSpec(spec_json, tessera::tools::ModelSpec());
  if (!spec.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", std::string(spec.status().message()).c_str());
    return 2;
  }
  const std::string stamp = dir + "/spec.json";
  std::string old;
  {
    std::ifstream in(stamp);
    std::getline(in, old, '\0');
  }
  if (old != spec_json) {
    std::printf("writing model to %s ...\n", dir.c_str());
    auto st = tessera::tools::WriteModel(*spec, dir);
    if (!st.ok()) {
      std::fprintf(stderr, "cpu_bench: %s\n", std::string(st.message()).c_str());
      return 2;
    }
    std::ofstream(stamp) << spec_json;
  }
  auto model = LoadModel(dir);
  if (!model.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", std::string(model.status().message()).c_str());
    return 2;
  }
  CpuRunnerOptions options;
  options.num_threads = threads;
  options.kv_memory_bytes = int64_t{1} << 30;
  auto runner_or = CreateCpuModelRunner(*model, options);
  if (!runner_or.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", std::string(runner_or.status().message()).c_str());
    return 2;
  }
  CpuModelRunner* runner = runner_or->get();
  const ModelWeights& w = *(*model)->weights;
  const int64_t decode_bytes = DecodeBytes(w);
  const double flops_per_token = FlopsPerToken(w);
  cpu::ThreadPool pool(runner->num_threads());
  std::printf(
      "model: %d layers, hidden %d, vocab %d, %.0f MiB of weights (%.0f MiB read per decode "
      "step); %d threads\n",
      (*model)->config.text.num_layers, (*model)->config.text.hidden_size,
      (*model)->config.text.vocab_size, w.total_bytes / 1048576.0, decode_bytes / 1048576.0,
      runner->num_threads());
  const double bandwidth = MeasureBandwidth(&pool);
  const double matmul = MeasureMatmul(&pool);
  std::printf(
      "machine: memory read bandwidth %.1f GB/s; fp32 matmul (our kernel, cache-resident) "
      "%.1f GFLOP/s\n",
      bandwidth / 1e9, matmul / 1e9);

  cpu::LinearBlockAllocator alloc(runner->kv_spec());
  std::mt19937 rng(5);
  auto make_prompt = [&](int n) {
    Prompt p;
    p.token_ids.push_back(2);
    for (int i = 1; i < n; ++i) p.token_ids.push_back(10 + rng() % 30000);
    return p;
  };
  auto run = [&](std::vector<Seq>& seqs, int rows_each, bool decode) {
    BatchPlan plan;
    for (size_t s = 0; s < seqs.size(); ++s) {
      Seq& q = seqs[s];
      SequencePlan sp;
      sp.seq_id = s;
      if (decode) {
        sp.start_pos = q.pos;
        sp.token_ids = {static_cast<int32_t>(10 + rng() % 30000)};
      } else {
        cpu::FillRows(q.prompt, q.pos, q.pos + rows_each, &sp);
      }
      const int32_t end = q.pos + static_cast<int32_t>(sp.token_ids.size());
      if (!alloc.Grow(end, &q.tables).ok()) std::abort();
      sp.block_tables = q.tables;
      sp.sample = true;
      sp.sampling.temperature = 0.0f;
      plan.seqs.push_back(std::move(sp));
      q.pos = end;
    }
    StepOutput out;
    auto st = runner->Execute(plan, &out);
    if (!st.ok()) {
      std::fprintf(stderr, "cpu_bench: %s\n", std::string(st.message()).c_str());
      std::exit(1);
    }
  };
  for (int batch : {1, 8}) {
    // Prefill: `batch` prompts of prefill_tokens / batch... each of prefill_tokens rows in one
    // step.
    const int rows = batch == 1 ? prefill_tokens : std::max(8, prefill_tokens / batch);
    std::vector<Seq> seqs(batch);
    for (Seq& s : seqs) s.prompt = make_prompt(rows);
    const double nt = runner->num_threads();
    double c0 = CpuSeconds();
    auto t0 = Clock::now();
    run(seqs, rows, false);
    const double prefill_s = Seconds(t0, Clock::now());
    const double prefill_cpu_s = (CpuSeconds() - c0) / nt;
    const double prefill_tps = batch * rows / prefill_s;
    run(seqs, 1, true);  // Warm-up decode.
    c0 = CpuSeconds();
    t0 = Clock::now();
    for (int i = 0; i < decode_steps; ++i) run(seqs, 1, true);
    const double step_s = Seconds(t0, Clock::now()) / decode_steps;
    const double step_cpu_s = (CpuSeconds() - c0) / nt / decode_steps;
    const double decode_tps = batch / step_s;
    const double achieved_bw = decode_bytes / step_s;
    std::printf(
        "batch %d: prefill %d x %d tokens: %.1f tokens/s (%.1f GFLOP/s, %.0f%% of the matmul "
        "rate)\n",
        batch, batch, rows, prefill_tps, prefill_tps * flops_per_token / 1e9,
        100.0 * prefill_tps * flops_per_token / matmul);
    std::printf(
        "batch %d: decode %.1f tokens/s (%.1f ms/step; weights streamed at %.1f GB/s = "
        "%.0f%% of the bandwidth limit of %.1f tokens/s at batch 1)\n",
        batch, decode_tps, step_s * 1e3, achieved_bw / 1e9, 100.0 * achieved_bw / bandwidth,
        bandwidth / decode_bytes);
    std::printf(
        "batch %d: by CPU time / threads: prefill %.1f tokens/s, decode %.1f tokens/s "
        "(%.0f%% of the bandwidth limit)\n",
        batch, batch * rows / prefill_cpu_s, batch / step_cpu_s,
        100.0 * decode_bytes / step_cpu_s / bandwidth);
  }
  return 0;
}
