// golden_check --model DIR|FILE.gguf [--mmproj FILE] --golden FILE [--tolerance T] [--chunk N]
//               [--threads N] [--dump OUT.safetensors]
//
// Two golden layouts, told apart by their tensors:
// - transformers' (testdata/gemma4-tiny/golden.safetensors, runtime/testing/golden.h): every prompt
//   runs through the CPU runner; per prompt, the max relative error of the prompt logits and of the
//   decode-step logits and how many greedy ids match. Default tolerance 1e-4.
// - llama.cpp's (testdata/gguf/README.md: prompt_ids, prefill_logits, greedy_ids, decode_logits):
//   the prompt is prefilled and greedy_ids are fed one by one as llama.cpp did; prints the worst
//   and median row deviation (max |ours - ref| / max |ref| per row) of prefill and decode rows and
//   argmax agreement. Default tolerance: the one the model's weight types allow
//   (golden_check_lib.cc).
//   --dump writes Tessera's logits for the same ids in the same format.
// The row deviation is relative to each row's largest reference logit. Exits 0 when every error is
// within the tolerance (and, for transformers' layout, every greedy id matches), 1 otherwise, 2 on
// usage or load errors.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/model/model_loader.h"
#include "runtime/testing/golden.h"
#include "tools/golden_check_lib.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: golden_check --model DIR|FILE.gguf [--mmproj FILE] --golden FILE "
               "[--tolerance T (1e-4; llama.cpp logits: by weight type)] "
               "[--chunk N (whole prompt)] [--threads N (all cores)] [--dump OUT.safetensors]\n");
  return 2;
}

// Options for a runner with room for `positions` positions in one sequence.
tessera::runtime::CpuRunnerOptions RunnerOptions(int64_t positions, int threads) {
  tessera::runtime::CpuRunnerOptions options;
  options.block_size = 16;
  options.num_blocks_sliding = options.num_blocks_global =
      static_cast<int32_t>((positions + options.block_size - 1) / options.block_size + 1);
  options.num_threads = threads;
  return options;
}

int CheckLlamaLogits(std::shared_ptr<const tessera::runtime::LoadedModel> model,
                     const std::string& golden_path, double tolerance, int chunk, int threads,
                     const std::string& dump) {
  using namespace tessera;
  auto ref = tools::ReadLogitsFile(golden_path);
  if (!ref.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(ref.status().message()).c_str());
    return 2;
  }
  if (ref->vocab != model->config.text.vocab_size) {
    std::fprintf(stderr, "golden_check: %s has %lld logits per row; the model's vocabulary is %d\n",
                 golden_path.c_str(), static_cast<long long>(ref->vocab),
                 model->config.text.vocab_size);
    return 2;
  }
  const std::set<std::string> types = tools::MatrixTypes(*model);
  std::string type_list;
  for (const std::string& t : types) type_list += (type_list.empty() ? "" : ", ") + t;
  if (tolerance == 0.0) {
    tolerance = tools::ToleranceForTypes(types);
    if (tolerance == 0.0) {
      std::fprintf(stderr,
                   "golden_check: no tolerance is known for weight types {%s}; pass --tolerance\n",
                   type_list.c_str());
      return 2;
    }
  }
  auto runner = runtime::CreateCpuModelRunner(
      model, RunnerOptions(ref->prompt_ids.size() + ref->greedy_ids.size(), threads));
  if (!runner.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(runner.status().message()).c_str());
    return 2;
  }
  auto ours = tools::RunLogits(runner->get(), ref->prompt_ids, ref->greedy_ids, chunk);
  if (!ours.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(ours.status().message()).c_str());
    return 2;
  }
  if (!dump.empty()) {
    absl::Status s =
        tools::WriteLogitsFile(dump, *ours,
                               {{"model", model->path},
                                {"made_by", "tessera golden_check --dump"},
                                {"fed_ids", "prompt_ids, then greedy_ids of " + golden_path}});
    if (!s.ok()) {
      std::fprintf(stderr, "golden_check: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  const tools::RowStats pre =
      tools::CompareRows(ours->prefill_logits, ref->prefill_logits, ref->vocab);
  const tools::RowStats dec =
      tools::CompareRows(ours->decode_logits, ref->decode_logits, ref->vocab);
  std::printf("weight types {%s}: tolerance %.3g (max |ours - ref| / max |ref| per logit row)\n",
              type_list.c_str(), tolerance);
  std::printf("prefill %3d rows: worst %.3e median %.3e argmax %d/%d\n", pre.rows, pre.max,
              pre.median, pre.argmax_agree, pre.rows);
  std::printf("decode  %3d rows: worst %.3e median %.3e argmax %d/%d\n", dec.rows, dec.max,
              dec.median, dec.argmax_agree, dec.rows);
  const bool ok = pre.max <= tolerance && dec.max <= tolerance;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tessera::runtime;
  std::string model_dir, golden_path, mmproj, dump;
  double tolerance = 0.0;
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
    } else if (arg == "--mmproj") {
      mmproj = v;
    } else if (arg == "--dump") {
      dump = v;
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

  LoadModelOptions load_options;
  load_options.mmproj = mmproj;
  auto model = LoadModel(model_dir, load_options);
  if (!model.ok()) {
    std::fprintf(stderr, "golden_check: %s\n", std::string(model.status().message()).c_str());
    return 2;
  }
  if (tessera::tools::IsLogitsFile(golden_path)) {
    return CheckLlamaLogits(*model, golden_path, tolerance, chunk, threads, dump);
  }
  if (!dump.empty()) {
    std::fprintf(stderr, "golden_check: --dump needs a llama.cpp logits file as --golden\n");
    return 2;
  }
  if (tolerance == 0.0) tolerance = 1e-4;
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
  auto runner = CreateCpuModelRunner(*model, RunnerOptions(longest, threads));
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
