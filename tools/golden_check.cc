// golden_check --model DIR --golden FILE [--tolerance 1e-4] [--chunk N] [--threads N]
//
// Runs every prompt of a golden file laid out like
// testdata/gemma4-tiny/golden.safetensors (see runtime/testing/golden.h) through the CPU
// runner and prints, per prompt, the max relative error of the prompt logits and of the decode-step
// logits (relative to each row's largest reference logit) and how many greedy ids match. Exits 0
// when every error is within the tolerance and every greedy id matches, 1 otherwise, 2 on usage or
// load errors.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/model/model_loader.h"
#include "runtime/testing/golden.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: golden_check --model DIR --golden FILE [--tolerance T (1e-4)] "
               "[--chunk N (whole prompt)] [--threads N (all cores)]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tessera::runtime;
  std::string model_dir, golden_path;
  double tolerance = 1e-4;
  int chunk = 1 << 30, threads = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 < argc) {
        *out = argv[++i];
        return true;
      }
      return false;
    };
    std::string v;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      v = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--help" || arg == "-h") {
      return Usage();
    } else if (!value(&v)) {
      return Usage();
    }
    char* end = nullptr;
    if (arg == "--model") {
      model_dir = v;
    } else if (arg == "--golden") {
      golden_path = v;
    } else if (arg == "--tolerance") {
      tolerance = std::strtod(v.c_str(), &end);
      if (*end != '\0' || !(tolerance > 0)) return Usage();
    } else if (arg == "--chunk") {
      chunk = static_cast<int>(std::strtol(v.c_str(), &end, 10));
      if (*end != '\0' || chunk < 1) return Usage();
    } else if (arg == "--threads") {
      threads = static_cast<int>(std::strtol(v.c_str(), &end, 10));
      if (*end != '\0' || threads < 0) return Usage();
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return Usage();
    }
  }
  if (model_dir.empty() || golden_path.empty()) return Usage();

  auto model = LoadModel(model_dir);
  if (!model.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(model.status().message()).c_str());
    return 2;
  }
  auto golden = cpu::ReadGolden(golden_path, (*model)->config);
  if (!golden.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(golden.status().message()).c_str());
    return 2;
  }
  // Enough KV blocks for the longest prompt plus its continuation, in each group.
  int64_t longest = 0;
  for (const auto& g : *golden) {
    longest = std::max<int64_t>(longest, g.prompt.size() + g.greedy_ids.size());
  }
  CpuRunnerOptions options;
  options.block_size = 16;
  options.num_blocks_sliding = options.num_blocks_global =
      static_cast<int32_t>((longest + options.block_size - 1) / options.block_size + 1);
  options.num_threads = threads;
  auto runner = CreateCpuModelRunner(*model, options);
  if (!runner.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(runner.status().message()).c_str());
    return 2;
  }
  std::printf("tolerance %.3g (max |ours - ref| / max |ref| per logit row)\n", tolerance);
  bool ok = true;
  for (const auto& g : *golden) {
    auto res = cpu::CheckGoldenPrompt(runner->get(), g, chunk);
    if (!res.ok()) {
      std::printf("%-12s ERROR %s\n", g.name.c_str(), std::string(res.status().message()).c_str());
      ok = false;
      continue;
    }
    const bool pass = res->prefill_error <= tolerance && res->decode_error <= tolerance &&
                      res->greedy_matched == res->greedy_total;
    ok = ok && pass;
    auto fmt = [](bool have, float err) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.3g", err);
      return have ? std::string(buf) : std::string("(none)");
    };
    std::printf(
        "%-12s %4d tokens, %zu media runs: prompt logits %s, decode logits %s, "
        "greedy %d/%d  %s\n",
        g.name.c_str(), res->prompt_tokens, g.prompt.media.size(),
        fmt(!g.logits.empty(), res->prefill_error).c_str(),
        fmt(!g.decode_logits.empty(), res->decode_error).c_str(), res->greedy_matched,
        res->greedy_total, pass ? "PASS" : "FAIL");
  }
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
