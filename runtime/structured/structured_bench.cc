// Mask time per token on the real Gemma 4 vocabulary (262144 tokens), for the specs of
// testdata/specs.json (schemas, any JSON object, a regex, a GBNF grammar).
//
//   bazel run -c opt //runtime/structured:structured_bench -- [--docs N] [--seed S]
//       [--tokenizer PATH] [--specs PATH]
//
// For each spec: compile time (automaton + token tables) and size; then N documents, each produced
// by a seeded random walk under the masks, are re-tokenized by the tokenizer (the ids a model would
// emit for that text) and replayed through a fresh matcher, timing FillNextTokenMask and
// AcceptToken at every token. Prints p50 / p99 / max per spec and over all tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/prompt/tokenizer.h"
#include "runtime/structured/grammar_compiler.h"
#include "runtime/structured/grammar_matcher.h"
#include "runtime/structured/test_util.h"
#include "runtime/structured/token_bitmask.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime::structured {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

int Main(int argc, char** argv) {
  std::string tokenizer_path = "third_party/tokenizer/gemma4/tokenizer.json";
  std::string specs_path = "runtime/structured/testdata/specs.json";
  int docs = 20;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--tokenizer") {
      tokenizer_path = argv[i + 1];
    } else if (flag == "--specs") {
      specs_path = argv[i + 1];
    } else if (flag == "--docs") {
      docs = std::atoi(argv[i + 1]);
    } else if (flag == "--seed") {
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    if (tokenizer_path[0] != '/') tokenizer_path = std::string(ws) + "/" + tokenizer_path;
    if (specs_path[0] != '/') specs_path = std::string(ws) + "/" + specs_path;
  }
  auto t0 = Clock::now();
  auto tokenizer = Tokenizer::FromFile(tokenizer_path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  auto t1 = Clock::now();
  auto vocab = Vocabulary::FromTokenizer(**tokenizer);
  if (!vocab.ok()) return 1;
  auto t2 = Clock::now();
  std::printf("tokenizer load %.0f ms, vocabulary + trie %.0f ms (%d tokens, %d trie nodes)\n",
              Micros(t1 - t0) / 1000, Micros(t2 - t1) / 1000, (*vocab)->size(),
              (*vocab)->trie().num_nodes());
  auto specs = testing::LoadSpecs(specs_path);
  if (!specs.ok()) {
    std::fprintf(stderr, "%s\n", std::string(specs.status().message()).c_str());
    return 1;
  }
  const std::vector<int32_t> stops = {1, 106};  // <eos>, <turn|>
  GrammarCompiler compiler(*vocab);
  std::vector<double> all_mask, all_cpu;
  std::printf(
      "\nmask time per token (us): first call | least of 5 calls; accept = AcceptToken p50 (us)\n");
  std::printf("%-16s %9s %7s %7s %5s %6s | %6s %6s %8s %6s | %6s %6s %6s | %6s %4s\n", "spec",
              "compile", "states", "tables", "docs", "tokens", "p50", "p99", "max", "mean", "min50",
              "min99", "minmax", "accept", "skip");
  for (const auto& [name, spec] : *specs) {
    const auto c0 = Clock::now();
    auto grammar = compiler.Compile(spec);
    const double compile_ms = Micros(Clock::now() - c0) / 1000;
    if (!grammar.ok()) {
      std::printf("%-16s %s\n", name.c_str(), std::string(grammar.status().message()).c_str());
      continue;
    }
    std::vector<double> mask_us, cpu_us, accept_us;
    std::vector<uint64_t> mask((*vocab)->size() / 64 + 1);
    int replayed = 0, skipped = 0;
    for (int d = 0; d < docs; ++d) {
      GrammarMatcher walker(*grammar, stops);
      const testing::Walk walk = testing::RandomWalk(walker, seed * 1000 + d);
      if (!walk.finished) {
        ++skipped;
        continue;
      }
      // The canonical tokenization of the text, as a model would write it, then a stop token.
      std::vector<int32_t> ids = (*tokenizer)->Encode(walk.text);
      ids.push_back(stops[0]);
      GrammarMatcher m(*grammar, stops);
      bool ok = true;
      for (int32_t id : ids) {
        const auto a = Clock::now();
        m.FillNextTokenMask(mask.data());
        const auto b = Clock::now();
        // Four repeats: the least of five leaves out time other processes held the core (the
        // development machine is shared; a preempted call shows milliseconds).
        double least = Micros(b - a);
        for (int r = 0; r < 4; ++r) {
          const auto r0 = Clock::now();
          m.FillNextTokenMask(mask.data());
          least = std::min(least, Micros(Clock::now() - r0));
        }
        if (!BitmaskTest(mask.data(), id)) {
          ok = false;  // e.g. the text spells a special token, which encodes as that token
          break;
        }
        const auto c0 = Clock::now();
        const absl::Status s = m.AcceptToken(id);
        const auto c = Clock::now();
        if (!s.ok()) {
          ok = false;
          break;
        }
        mask_us.push_back(Micros(b - a));
        cpu_us.push_back(least);
        accept_us.push_back(Micros(c - c0));
      }
      ok ? ++replayed : ++skipped;
    }
    double mean = 0;
    for (double v : mask_us) mean += v;
    mean /= std::max<size_t>(1, mask_us.size());
    const auto& st = (*grammar)->stats();
    auto max_of = [](const std::vector<double>& v) {
      return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
    };
    std::printf(
        "%-16s %7.1fms %7d %7d %5d %6zu | %6.1f %6.1f %8.1f %6.1f | %6.1f %6.1f %6.1f | %6.2f "
        "%4d\n",
        name.c_str(), compile_ms, st.states, st.tables.tables, replayed, mask_us.size(),
        Percentile(mask_us, 0.5), Percentile(mask_us, 0.99), max_of(mask_us), mean,
        Percentile(cpu_us, 0.5), Percentile(cpu_us, 0.99), max_of(cpu_us),
        Percentile(accept_us, 0.5), skipped);
    all_mask.insert(all_mask.end(), mask_us.begin(), mask_us.end());
    all_cpu.insert(all_cpu.end(), cpu_us.begin(), cpu_us.end());
  }
  std::printf(
      "\nall specs: %zu tokens; mask first call p50 %.1f us, p99 %.1f us; least of 5 p50 %.1f us, "
      "p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
      all_mask.size(), Percentile(all_mask, 0.5), Percentile(all_mask, 0.99),
      Percentile(all_cpu, 0.5), Percentile(all_cpu, 0.99), Percentile(all_cpu, 0.999),
      all_cpu.empty() ? 0 : *std::max_element(all_cpu.begin(), all_cpu.end()));
  // Applying a mask to one row of logits (what the sampler adds per constrained token): a sparse
  // mask (a structural position: few tokens allowed) and a dense one (inside a string).
  {
    auto grammar = compiler.Compile(GrammarSpec::JsonObject());
    GrammarMatcher sparse(*grammar, stops), dense(*grammar, stops);
    (void)dense.AcceptBytes("{\"k\": \"text");
    std::vector<float> logits((*vocab)->size());
    for (auto* m : {&sparse, &dense}) {
      const std::vector<uint64_t> mask = m->NextTokenMask();
      std::vector<double> us;
      for (int r = 0; r < 200; ++r) {
        for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i % 97);
        const auto a = Clock::now();
        ApplyTokenBitmask(mask.data(), m->vocab_size(), logits.data(), m->vocab_size());
        us.push_back(Micros(Clock::now() - a));
      }
      std::printf("ApplyTokenBitmask, %d of %d tokens allowed: p50 %.1f us, p99 %.1f us\n",
                  CountAllowed(mask.data(), m->vocab_size()), m->vocab_size(), Percentile(us, 0.5),
                  Percentile(us, 0.99));
    }
  }
  return 0;
}

}  // namespace
}  // namespace tessera::runtime::structured

int main(int argc, char** argv) { return tessera::runtime::structured::Main(argc, argv); }
