// structured_decode_bench: decode tokens/s of a model with and without constrained decoding, in one
// run, through the server's own path (EngineBackend: prompt builder, grammar compiler, engine,
// CPU runner, sampler with the mask).
//
//   bazel run -c opt //tools:structured_decode_bench -- [--model DIR] [--rounds N] [--tokens N]
//                                                      [--batch N]
//
// Each round runs `batch` concurrent requests of each kind, alternating the kinds so that both see
// the same machine load:
//   - free:        a chat request decoding `tokens` tokens with ignore_eos (no grammar);
//   - json_schema: the same prompt with response_format json_schema forcing an array of `tokens`/2
//                  one-digit integers (about `tokens` tokens of JSON);
//   - tool_call:   tool_choice "required" on a tool whose arguments are that array.
// Decode tok/s of a request = (completion tokens - 1) / (total time - time to first token). The
// report gives the median per kind and the ratio to free decoding (the issue's aim: a constrained
// stream within 5% of an unconstrained one). A benchmark, not a test: on a shared machine compare
// the ratios of one run, not absolute numbers across runs.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/engine_backend.h"

namespace {

using tessera::server::Backend;
using tessera::server::ReplyEvent;
namespace v1 = tessera::v1;

std::string Arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return fallback;
}

std::string DefaultModel(const char* argv0) {
  for (const std::string& dir :
       {std::string("models/default"), std::string(argv0) + ".runfiles/tessera/models/default",
        std::string("bazel-bin/models/default")}) {
    if (access((dir + "/config.json").c_str(), R_OK) == 0) return dir;
  }
  return "bazel-bin/models/default";
}

struct Sample {
  double tok_per_s = 0;
  int tokens = 0;
  std::string finish;
};

// Runs `request` to its end; decode tok/s from the engine's own timings.
Sample RunOne(Backend* backend, const v1::GenerateRequest& request) {
  Sample s;
  auto stream = backend->Generate(request, absl::InfiniteFuture());
  if (!stream.ok()) {
    std::fprintf(stderr, "request refused: %s\n", std::string(stream.status().message()).c_str());
    std::exit(1);
  }
  ReplyEvent e;
  while ((*stream)->Next(&e, absl::InfiniteDuration())) {
    const auto* c = std::get_if<tessera::scheduler::Completion>(&e);
    if (c == nullptr) continue;
    s.tokens = c->usage.completion_tokens;
    s.finish = tessera::scheduler::FinishReasonName(c->reason);
    const double decode_s =
        absl::ToDoubleSeconds(c->usage.total_time - c->usage.time_to_first_token);
    s.tok_per_s = decode_s > 0 ? (s.tokens - 1) / decode_s : 0;
  }
  return s;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = Arg(argc, argv, "model", DefaultModel(argv[0]));
  const int rounds = std::stoi(Arg(argc, argv, "rounds", "5"));
  const int tokens = std::stoi(Arg(argc, argv, "tokens", "256"));
  const int batch = std::stoi(Arg(argc, argv, "batch", "1"));

  tessera::server::EngineBackendOptions options;
  options.model_dir = model;
  options.device = "cpu";
  auto backend = tessera::server::CreateEngineBackend(options, nullptr);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", std::string(backend.status().message()).c_str());
    return 1;
  }

  const std::string array_schema = absl::StrCat(
      R"({"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"minItems":)",
      tokens / 2, R"(,"maxItems":)", tokens / 2, "}");
  auto base = [&](uint64_t seed) {
    v1::GenerateRequest r;
    v1::Message* m = r.add_messages();
    m->set_role("user");
    m->add_parts()->set_text("List some digits.");
    r.mutable_sampling()->set_temperature(1.0f);
    r.mutable_sampling()->set_seed(seed);
    r.mutable_stopping()->set_max_tokens(static_cast<uint32_t>(tokens * 3));
    return r;
  };
  struct Kind {
    const char* name;
    std::function<v1::GenerateRequest(uint64_t)> make;
    std::vector<double> tps;
    int64_t tokens = 0;
  };
  std::vector<Kind> kinds;
  kinds.push_back({"free", [&](uint64_t seed) {
                     v1::GenerateRequest r = base(seed);
                     r.mutable_stopping()->set_max_tokens(static_cast<uint32_t>(tokens));
                     r.mutable_stopping()->set_ignore_eos(true);
                     return r;
                   }});
  kinds.push_back({"json_schema", [&](uint64_t seed) {
                     v1::GenerateRequest r = base(seed);
                     r.mutable_response_format()->set_json_schema(array_schema);
                     return r;
                   }});
  kinds.push_back({"tool_call", [&](uint64_t seed) {
                     v1::GenerateRequest r = base(seed);
                     v1::Tool* t = r.add_tools();
                     t->set_name("record");
                     t->set_parameters(absl::StrCat(R"({"type":"object","properties":{"digits":)",
                                                    array_schema, R"(},"required":["digits"]})"));
                     r.mutable_tool_choice()->set_mode(v1::ToolChoice::TOOL_CHOICE_REQUIRED);
                     r.set_parallel_tool_calls(false);
                     return r;
                   }});
  // Warm-up: the vocabulary index and the grammars compile once.
  for (Kind& k : kinds) RunOne(backend->get(), k.make(1));

  for (int round = 0; round < rounds; ++round) {
    for (Kind& k : kinds) {
      std::vector<Sample> samples(batch);
      std::vector<std::thread> threads;
      for (int b = 0; b < batch; ++b) {
        threads.emplace_back(
            [&, b] { samples[b] = RunOne(backend->get(), k.make(1000 * round + b + 7)); });
      }
      for (auto& t : threads) t.join();
      for (const Sample& s : samples) {
        k.tps.push_back(s.tok_per_s);
        k.tokens += s.tokens;
      }
    }
  }
  const double free_tps = Median(kinds[0].tps);
  std::printf("model %s, batch %d, %d rounds, ~%d tokens per request (decode tok/s per request)\n",
              model.c_str(), batch, rounds, tokens);
  std::printf("%-12s %10s %8s %10s\n", "kind", "median", "ratio", "tokens");
  for (const Kind& k : kinds) {
    const double m = Median(k.tps);
    std::printf("%-12s %10.1f %8.3f %10lld\n", k.name, m, free_tps > 0 ? m / free_tps : 0.0,
                static_cast<long long>(k.tokens));
  }
  return 0;
}
