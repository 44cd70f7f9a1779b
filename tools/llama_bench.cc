// llama_bench: Tessera's CPU runner against llama.cpp (its prebuilt libllama from node-llama-cpp)
// side by side in one process, on the same GGUF files, interleaved, with the same thread counts.
//
//   llama_bench [--types BF16,Q8_0,Q4_K_M] [--threads 1,2] [--prompts 64,512] [--decode_steps 32]
//               [--reps 3] [--model_dir DIR] [--work_dir DIR] [--files TYPE=FILE.gguf,...]
//               [--only tessera|llama]
//
// Without --files it writes (once, cached) tools/cpu_bench's random Gemma 4 checkpoint to
// --model_dir and converts it with tools/gguf_writer's converter to one GGUF per type in
// --work_dir (llama-quantize's per-tensor mix for Q4_K_M). Per type, thread count and repetition
// (engines alternating which goes first), it measures:
//   - prefill tokens/s of one prompt of each --prompts length, in one step / one llama_decode;
//   - batch-1 decode tokens/s over --decode_steps single-token steps after a 64-token prompt;
//   - Tessera's batch-8 decode tokens/s (8 sequences, 64-token prompts, one row each per step);
// and the machine's read bandwidth with the same threads, against which batch-1 decode is shown as
// the fraction of the bandwidth limit (weights read per step / bandwidth). Prints medians, with the
// spread (max - min) / median, and a markdown table. A benchmark, not a test.
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/cpu_features.h"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/model/model_loader.h"
#include "runtime/testing/golden.h"
#include "testdata/testdata.h"
#include "tools/gguf_convert.h"
#include "tools/llama_bench_libllama.h"
#include "tools/make_model_lib.h"

namespace {

using namespace tessera;
using namespace tessera::runtime;
using Clock = std::chrono::steady_clock;

constexpr char kDefaultSpec[] =
    R"({"num_layers": 16, "global_every": 6, "hidden_size": 1024, "intermediate_size": 4096,
          "num_heads": 8, "num_kv_heads": 4, "head_dim": 128, "global_head_dim": 256,
          "global_kv_heads": 1, "sliding_window": 512, "vocab_size": 32768, "seed": 7})";

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "llama_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(absl::StatusOr<T> v) {
  if (!v.ok()) Die(std::string(v.status().message()));
  return std::move(*v);
}

void OrDie(const absl::Status& s) {
  if (!s.ok()) Die(std::string(s.message()));
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// All threads summing a 1 GiB buffer; best of 3 (bytes/s).
double MeasureBandwidth(int threads) {
  cpu::ThreadPool pool(threads);
  const size_t n = (size_t{1} << 30) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  std::vector<double> sums(1024, 0.0);
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    pool.ParallelFor(1024, 1, [&](int64_t b, int64_t e) {
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

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// llama.cpp refuses a GGUF without a tokenizer, and the random checkpoint has none: give it the
// synthetic Gemma-4-style tokenizer of the gemma4-quant-s fixture (ids 0-511: specials, byte
// tokens, a few merges) with filler tokens up to the model's vocabulary size.
void WriteTokenizer(const std::string& dir, int vocab) {
  const std::string fixture = testing::RunfilePath("testdata/gguf/gemma4-quant-s/hf");
  nlohmann::json tok = nlohmann::json::parse(ReadFile(fixture + "/tokenizer.json"));
  for (int id = static_cast<int>(tok["model"]["vocab"].size()); id < vocab; ++id) {
    tok["model"]["vocab"][absl::StrCat("\xe2\x96\x81" "filler", id)] = id;
  }
  std::ofstream(dir + "/tokenizer.json") << tok.dump();
  std::ofstream(dir + "/tokenizer_config.json") << ReadFile(fixture + "/tokenizer_config.json");
}

// Bytes of weights one decode step reads: every text matrix and the tied embedding (the logits).
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

// Tessera: one runner per thread count over the shared model.
class TesseraEngine {
 public:
  TesseraEngine(std::shared_ptr<const LoadedModel> model, int threads) : model_(model) {
    CpuRunnerOptions o;
    o.num_threads = threads;
    o.kv_memory_bytes = int64_t{640} << 20;  // 8 x (64 + decode) and a 512-token prompt.
    runner_ = OrDie(CreateCpuModelRunner(model, o));
  }

  // Seconds for one step prefilling each prompt (one sequence per prompt) with a sampled last
  // row, then `steps` decode steps (one row per sequence); returns {prefill s, decode s per step}.
  std::pair<double, double> Run(const std::vector<std::vector<int32_t>>& prompts, int steps,
                                std::mt19937* rng) {
    cpu::LinearBlockAllocator alloc(runner_->kv_spec());
    struct Seq {
      std::vector<std::vector<int32_t>> tables;
      int32_t pos = 0;
    };
    std::vector<Seq> seqs(prompts.size());
    const int32_t vocab = runner_->vocab_size();
    auto step = [&](bool prefill) {
      BatchPlan plan;
      for (size_t s = 0; s < seqs.size(); ++s) {
        SequencePlan sp;
        sp.seq_id = static_cast<int64_t>(s);
        sp.start_pos = seqs[s].pos;
        if (prefill) {
          sp.token_ids = prompts[s];
        } else {
          sp.token_ids = {static_cast<int32_t>(10 + (*rng)() % (vocab - 20))};
        }
        const int32_t end = seqs[s].pos + static_cast<int32_t>(sp.token_ids.size());
        OrDie(alloc.Grow(end, &seqs[s].tables));
        sp.block_tables = seqs[s].tables;
        sp.sample = true;
        sp.sampling.temperature = 0.0f;
        plan.seqs.push_back(std::move(sp));
        seqs[s].pos = end;
      }
      StepOutput out;
      OrDie(runner_->Execute(plan, &out));
    };
    auto t0 = Clock::now();
    step(true);
    const double prefill = Seconds(t0, Clock::now());
    if (steps == 0) return {prefill, 0.0};
    step(false);  // Warm-up.
    t0 = Clock::now();
    for (int i = 0; i < steps; ++i) step(false);
    return {prefill, Seconds(t0, Clock::now()) / steps};
  }

 private:
  std::shared_ptr<const LoadedModel> model_;
  std::unique_ptr<CpuModelRunner> runner_;
};

struct Samples {
  std::vector<double> v;
  double Median() const {
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s[s.size() / 2];
  }
  double Spread() const {
    if (v.empty()) return 0;
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return (*hi - *lo) / Median();
  }
};

std::string Cell(const Samples& s) {
  return absl::StrCat(static_cast<int64_t>(s.Median() * 10 + 0.5) / 10.0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string types_s = "BF16,Q8_0,Q4_K_M", threads_s = "1,2", prompts_s = "64,512", files_s;
  std::string model_dir = "/tmp/tessera_cpu_bench_model", work_dir = "/tmp/tessera_llama_bench";
  int decode_steps = 32, reps = 3;
  std::string only;  // "tessera" or "llama": run one engine (for profiling).
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--types") {
      types_s = v;
    } else if (a == "--threads") {
      threads_s = v;
    } else if (a == "--prompts") {
      prompts_s = v;
    } else if (a == "--decode_steps") {
      decode_steps = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--reps") {
      reps = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--model_dir") {
      model_dir = v;
    } else if (a == "--work_dir") {
      work_dir = v;
    } else if (a == "--only") {
      only = v;
    } else if (a == "--files") {
      files_s = v;
    } else {
      Die("unknown flag " + a);
    }
  }
  std::vector<std::string> types = absl::StrSplit(types_s, ',');
  std::vector<int> threads, prompts;
  for (const std::string& t : std::vector<std::string>(absl::StrSplit(threads_s, ',')))
    threads.push_back(std::atoi(t.c_str()));
  for (const std::string& p : std::vector<std::string>(absl::StrSplit(prompts_s, ',')))
    prompts.push_back(std::atoi(p.c_str()));

  // The GGUF file of each type.
  std::map<std::string, std::string> files;
  if (!files_s.empty()) {
    types.clear();
    for (const std::string& kv : std::vector<std::string>(absl::StrSplit(files_s, ','))) {
      std::vector<std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      if (p.size() != 2) Die("--files wants TYPE=FILE pairs");
      types.push_back(p[0]);
      files[p[0]] = p[1];
    }
  } else {
    const std::string stamp = model_dir + "/spec.json";
    std::string old;
    {
      std::ifstream in(stamp);
      std::getline(in, old, '\0');
    }
    if (old != kDefaultSpec) {
      std::printf("writing the cpu_bench checkpoint to %s ...\n", model_dir.c_str());
      auto spec = OrDie(tools::ParseModelSpec(kDefaultSpec, tools::ModelSpec()));
      OrDie(tools::WriteModel(spec, model_dir));
      std::ofstream(stamp) << kDefaultSpec;
    }
    if (!Exists(model_dir + "/tokenizer.json")) WriteTokenizer(model_dir, 32768);
    mkdir(work_dir.c_str(), 0755);
    for (const std::string& t : types) {
      const std::string out = absl::StrCat(work_dir, "/cpu-bench-", t, ".gguf");
      if (!Exists(out) || Exists(out + ".partial")) {
        std::printf("converting to %s ...\n", out.c_str());
        std::ofstream(out + ".partial") << "";
        tools::GgufConvertOptions o;
        o.model_dir = model_dir;
        o.out = out;
        o.type = t;
        OrDie(tools::ConvertToGguf(o));
        std::remove((out + ".partial").c_str());
      }
      files[t] = out;
    }
  }

  const auto lib = OrDie(tools::LibLlama::Load(tools::LibLlama::DefaultDir()));
  const cpu::CpuFeatures& f = cpu::DetectCpuFeatures();
  std::printf("Tessera kernel path: %s (avx2 %d, avx512 %d, vnni %d, bf16 %d)\n",
              cpu::KernelPathName(cpu::DefaultKernelPath()), f.avx2, f.avx512, f.avx512_vnni,
              f.avx512_bf16);

  // results[type][threads][metric]
  std::map<std::string, std::map<int, std::map<std::string, Samples>>> results;
  std::map<int, Samples> bandwidth;
  std::map<std::string, int64_t> step_bytes;
  std::mt19937 rng(7);
  for (const std::string& type : types) {
    std::printf("== %s: %s\n", type.c_str(), files[type].c_str());
    auto model = OrDie(LoadModel(files[type]));
    step_bytes[type] = DecodeBytes(*model->weights);
    auto llama = OrDie(lib->LoadModel(files[type], threads[0]));
    OrDie(llama->NewContext(1024, 512, threads[0]));
    const int32_t vocab = model->config.text.vocab_size;
    auto prompt = [&](int n) {
      std::vector<int32_t> p(n);
      p[0] = 2;
      for (int i = 1; i < n; ++i) p[i] = static_cast<int32_t>(10 + rng() % (vocab - 20));
      return p;
    };
    std::map<int, std::unique_ptr<TesseraEngine>> tessera;
    for (int t : threads) tessera[t] = std::make_unique<TesseraEngine>(model, t);
    for (int rep = 0; rep < reps; ++rep) {
      for (int t : threads) {
        if (type == types.front()) bandwidth[t].v.push_back(MeasureBandwidth(t) / 1e9);
        auto& r = results[type][t];
        llama->SetThreads(t);
        for (int order = 0; order < 2; ++order) {
          const bool run_tessera = (order == 0) == (rep % 2 == 0);
          if (!only.empty() && (only == "tessera") != run_tessera) continue;
          if (run_tessera) {
            TesseraEngine& e = *tessera[t];
            for (int p : prompts) {
              auto [s, unused] = e.Run({prompt(p)}, 0, &rng);
              r[absl::StrCat("tessera prefill ", p)].v.push_back(p / s);
            }
            auto [s1, d1] = e.Run({prompt(64)}, decode_steps, &rng);
            r["tessera decode 1"].v.push_back(1 / d1);
            std::vector<std::vector<int32_t>> eight;
            for (int i = 0; i < 8; ++i) eight.push_back(prompt(64));
            auto [s8, d8] = e.Run(eight, decode_steps / 2, &rng);
            r["tessera decode 8"].v.push_back(8 / d8);
          } else {
            for (int p : prompts) {
              llama->Clear();
              const auto t0 = Clock::now();
              OrDie(llama->Decode(prompt(p)));
              r[absl::StrCat("llama prefill ", p)].v.push_back(p / Seconds(t0, Clock::now()));
            }
            llama->Clear();
            OrDie(llama->Decode(prompt(64)));
            OrDie(llama->Decode({static_cast<int32_t>(10 + rng() % (vocab - 20))}));
            const auto t0 = Clock::now();
            for (int i = 0; i < decode_steps; ++i) {
              OrDie(llama->Decode({static_cast<int32_t>(10 + rng() % (vocab - 20))}));
            }
            r["llama decode 1"].v.push_back(decode_steps / Seconds(t0, Clock::now()));
          }
        }
        std::printf("  rep %d, %d thread%s:", rep, t, t > 1 ? "s" : "");
        for (const auto& [name, s] : r) std::printf(" %s %.1f;", name.c_str(), s.v.back());
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  }

  std::printf("\nmedians over %d repetitions (tokens/s; spread = (max - min) / median)\n\n", reps);
  std::printf("| type | threads |");
  for (int p : prompts) std::printf(" prefill %d llama.cpp / Tessera |", p);
  std::printf(
      " decode llama.cpp / Tessera | Tessera decode, batch 8 | batch-1 decode, %% of read "
      "bandwidth llama.cpp / Tessera |\n|---|---|");
  for (size_t i = 0; i < prompts.size(); ++i) std::printf("---|");
  std::printf("---|---|---|\n");
  for (const std::string& type : types) {
    for (int t : threads) {
      auto& r = results[type][t];
      std::printf("| %s | %d |", type.c_str(), t);
      for (int p : prompts) {
        std::printf(" %s / %s |", Cell(r[absl::StrCat("llama prefill ", p)]).c_str(),
                    Cell(r[absl::StrCat("tessera prefill ", p)]).c_str());
      }
      const double bw = bandwidth[t].Median() * 1e9;
      const double limit = bw / step_bytes[type];
      std::printf(" %s / %s | %s | %.0f%% / %.0f%% |\n", Cell(r["llama decode 1"]).c_str(),
                  Cell(r["tessera decode 1"]).c_str(), Cell(r["tessera decode 8"]).c_str(),
                  100 * r["llama decode 1"].Median() / limit,
                  100 * r["tessera decode 1"].Median() / limit);
    }
  }
  std::printf("\n");
  for (int t : threads) {
    std::printf("read bandwidth, %d thread%s: %.1f GB/s (spread %.0f%%)\n", t, t > 1 ? "s" : "",
                bandwidth[t].Median(), 100 * bandwidth[t].Spread());
  }
  for (const std::string& type : types) {
    std::printf("%s: %.0f MiB of weights read per decode step; spreads:", type.c_str(),
                step_bytes[type] / 1048576.0);
    for (int t : threads) {
      for (const auto& [name, s] : results[type][t]) {
        std::printf(" %dt %s %.0f%%;", t, name.c_str(), 100 * s.Spread());
      }
    }
    std::printf("\n");
  }
  return 0;
}
