// cpu_bench_kernels: the CPU matmul kernels alone, on random weights of each type, next to the
// machine's read bandwidth measured in the same run.
//
//   cpu_bench_kernels [--threads 1,2] [--types bf16,q8_0,q4_K,q6_K] [--rows 1,8,64,512]
//                     [--shapes 4096x1024,1024x4096] [--paths avx512,avx2,portable] [--reps 5]
//                     [--weight_set_mib 256]
//
// Per (type, shape [N x K], activation rows T, threads, path): the median time of MatMul over
// `reps` runs, as GB/s of weights streamed (the decode limit at T = 1) and GFLOP/s (2 N K T).
// The weights are --weight_set_mib (256) MiB or more per matrix set (several copies, used
// round-robin) so decode reads them from memory, not from the caches; 0 keeps one copy. A benchmark, not a test.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "runtime/cpu/cpu_features.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/quant/ggml_type.h"
#include "runtime/quant/quantize.h"

namespace {

using namespace tessera::runtime;
using Clock = std::chrono::steady_clock;

// CPU seconds of the whole process. On this shared machine wall time includes the time other
// processes held our cores; CPU time / threads is what the work costs when it has them.
double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// All threads summing a 1 GiB buffer; best of 3 (bytes/s).
double MeasureBandwidth(cpu::ThreadPool* pool) {
  const size_t n = (size_t{1} << 30) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  std::vector<double> sums(1024, 0.0);
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    pool->ParallelFor(1024, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const float* p = buf.data() + c * (n / 1024);
        float acc[16] = {};
        for (size_t i = 0; i < n / 1024; i += 16) {
          for (int l = 0; l < 16; ++l) acc[l] += p[i + l];
        }
        for (float a : acc) sums[c] += a;
      }
    });
    best = std::max(best, n * sizeof(float) / Seconds(t0, Clock::now()));
  }
  return sums[0] < 0 ? 0 : best;
}

std::vector<std::string> List(const std::string& s) { return absl::StrSplit(s, ','); }

}  // namespace

int main(int argc, char** argv) {
  std::string threads_s = "1,2", types_s = "bf16,q8_0,q4_0,q4_K,q5_K,q6_K", rows_s = "1,8,64,512",
              shapes_s = "4096x1024,1024x4096", paths_s;
  int reps = 5;
  double sample_s = 0.02;
  int64_t weight_set_bytes = int64_t{256} << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads") {
      threads_s = v;
    } else if (a == "--types") {
      types_s = v;
    } else if (a == "--rows") {
      rows_s = v;
    } else if (a == "--shapes") {
      shapes_s = v;
    } else if (a == "--paths") {
      paths_s = v;
    } else if (a == "--weight_set_mib") {
      // 0: one copy of the weights (cache-resident when small): the kernels' compute alone.
      weight_set_bytes = std::atoll(v.c_str()) << 20;
    } else if (a == "--sample_ms") {
      // Short samples and many --reps make the best-of column robust on a loaded machine.
      sample_s = std::atof(v.c_str()) / 1e3;
    } else if (a == "--reps") {
      reps = std::max(1, std::atoi(v.c_str()));
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  std::vector<cpu::KernelPath> paths;
  if (paths_s.empty()) {
    paths.push_back(cpu::DefaultKernelPath());
  } else {
    for (const std::string& p : List(paths_s)) {
      auto path = cpu::ParseKernelPath(p);
      if (!path.ok() || !cpu::PathSupported(*path)) {
        std::fprintf(stderr, "path %s is not available here\n", p.c_str());
        return 2;
      }
      paths.push_back(*path);
    }
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (const std::string& ts : List(threads_s)) {
    const int threads = std::atoi(ts.c_str());
    cpu::ThreadPool pool(threads);
    std::printf("threads %d: read bandwidth %.1f GB/s\n", threads,
                MeasureBandwidth(&pool) / 1e9);
    for (const std::string& shape : List(shapes_s)) {
      std::vector<std::string> nk = absl::StrSplit(shape, 'x');
      const int64_t N = std::atoll(nk[0].c_str()), K = std::atoll(nk[1].c_str());
      for (const std::string& tname : List(types_s)) {
        quant::GgmlType type = quant::GgmlType::kF32;
        for (uint32_t id = 0; id < 64; ++id) {
          const quant::TypeTraits* t = quant::FindTypeTraits(id);
          if (t != nullptr && tname == t->name) type = t->type;
        }
        const int64_t row_bytes = *quant::RowBytes(type, K);
        const int64_t matrix_bytes = N * row_bytes;
        const int copies = static_cast<int>(std::max<int64_t>(1, weight_set_bytes / matrix_bytes));
        std::vector<uint8_t> bytes(copies * matrix_bytes);
        std::vector<float> row(K);
        for (int64_t r = 0; r < N; ++r) {
          for (float& v : row) v = normal(rng);
          if (!quant::QuantizeRow(type, row.data(), bytes.data() + r * row_bytes, K).ok()) {
            std::fprintf(stderr, "cannot make %s weights\n", tname.c_str());
            return 2;
          }
        }
        for (int c = 1; c < copies; ++c) {
          std::copy_n(bytes.data(), matrix_bytes, bytes.data() + c * matrix_bytes);
        }
        for (const std::string& rs : List(rows_s)) {
          const int64_t T = std::atoll(rs.c_str());
          std::vector<float> x(T * K), y(T * N);
          for (float& v : x) v = normal(rng) * 20;
          for (cpu::KernelPath path : paths) {
            std::vector<double> times, cpu_times;
            int next = 0;
            for (int rep = 0; rep < reps + 1; ++rep) {
              // Enough calls per sample for ~20 ms, each on the next copy of the weights.
              const int calls = static_cast<int>(std::max<double>(
                  1, sample_s * 1e9 / std::max<double>(1.0, static_cast<double>(matrix_bytes) +
                                                     8.0 * N * K * T / 100)));
              const auto t0 = Clock::now();
              const double c0 = CpuSeconds();
              for (int c = 0; c < calls; ++c) {
                const WeightMatrix w{type, bytes.data() + (next++ % copies) * matrix_bytes, N, K};
                cpu::MatMul(x.data(), T, w, y.data(), N, &pool, path);
              }
              if (rep > 0) {
                times.push_back(Seconds(t0, Clock::now()) / calls);
                cpu_times.push_back((CpuSeconds() - c0) / threads / calls);
              }
            }
            std::sort(times.begin(), times.end());
            std::sort(cpu_times.begin(), cpu_times.end());
            const double s = times[times.size() / 2];
            const double cs = cpu_times[cpu_times.size() / 2];
            std::printf(
                "  %-5s %5lldx%-5lld T=%-4lld %-8s wall %8.3f ms %6.1f GB/s %6.1f GFLOP/s "
                "(spread %3.0f%%) | cpu %8.3f ms %6.1f GB/s %6.1f GFLOP/s | best %6.1f GB/s %6.1f GFLOP/s\n",
                tname.c_str(), static_cast<long long>(N), static_cast<long long>(K),
                static_cast<long long>(T), cpu::KernelPathName(path), s * 1e3,
                matrix_bytes / s / 1e9, 2.0 * N * K * T / s / 1e9,
                100.0 * (times.back() - times.front()) / s, cs * 1e3, matrix_bytes / cs / 1e9,
                2.0 * N * K * T / cs / 1e9, matrix_bytes / times.front() / 1e9,
                2.0 * N * K * T / times.front() / 1e9);
            std::fflush(stdout);
          }
        }
      }
    }
  }
  return 0;
}
