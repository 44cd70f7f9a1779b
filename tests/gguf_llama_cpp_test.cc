// A second, independent check of GGUF support: llama.cpp itself (node-llama-cpp's prebuilt CPU
// libraries, tests/node/gguf_llama.js) loads GGUF files that tools/gguf_convert wrote for a model
// of a shape no fixture has, tokenizes the same prompt to the same ids and computes the same
// logits as Tessera within the tolerance of each file's weight types.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/model/model_loader.h"
#include "testdata/testdata.h"
#include "tools/gguf_convert.h"
#include "tools/golden_check_lib.h"
#include "tools/make_model_lib.h"

namespace tessera {
namespace {

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

std::string RunCommand(const std::string& command, int* exit_code) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return "popen failed";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST(GgufLlamaCppTest, SameTokensAndLogitsAsLlamaCpp) {
  const std::string node_modules =
      tessera::testing::WorkspaceDir() + "/third_party/node/node_modules";
  if (!std::filesystem::exists(node_modules + "/node-llama-cpp")) {
    GTEST_SKIP() << "node-llama-cpp is not installed (tools/setup.sh installs it)";
  }
  // A shape no fixture has: 5 layers, global at 2 and 4, window 16, wider heads.
  tools::ModelSpec spec;
  spec.num_layers = 5;
  spec.global_layers = {2, 4};
  spec.hidden_size = 256;
  spec.intermediate_size = 512;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 64;
  spec.global_head_dim = 128;
  spec.global_kv_heads = 1;
  spec.sliding_window = 16;
  spec.vocab_size = 512;
  spec.seed = 11;
  const std::string dir = Tmp("model");
  ASSERT_TRUE(tools::WriteModel(spec, dir).ok());
  const std::string tok = tessera::testing::FixturesDir() + "/gguf/gemma4-tiny/";
  // Text past the sliding window, with chat control tokens.
  const std::string text =
      "<|turn>user\nwrite a short poem about the sea and the sky, then explain it.<turn|>\n"
      "<|turn>model\n";

  nlohmann::json cases = nlohmann::json::array();
  // The types the CPU runner computes with; the tolerance is golden_check's for the file.
  for (const std::string type : {"F32", "BF16", "Q8_0", "Q6_K", "Q4_K_M", "Q4_0"}) {
    tools::GgufConvertOptions o;
    o.model_dir = dir;
    o.type = type;
    o.out = Tmp("model-" + type + ".gguf");
    o.tokenizer_json = tok + "tokenizer.json";
    o.tokenizer_config_json = tok + "tokenizer_config.json";
    o.chat_template = tok + "chat_template.jinja";
    ASSERT_TRUE(tools::ConvertToGguf(o).ok()) << type;
    auto model = runtime::LoadModel(o.out);
    ASSERT_TRUE(model.ok()) << model.status();
    auto tokenizer = runtime::LoadTokenizer(**model);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    std::vector<int32_t> ids = {(*model)->config.text.bos_token_id};
    for (int32_t id : (*tokenizer)->Encode(text)) ids.push_back(id);
    ASSERT_GT(ids.size(), 2u * spec.sliding_window);
    runtime::CpuRunnerOptions ro;
    ro.block_size = 16;
    ro.num_blocks_sliding = ro.num_blocks_global = 16;
    ro.num_threads = 1;
    auto runner = runtime::CreateCpuModelRunner(*model, ro);
    ASSERT_TRUE(runner.ok()) << runner.status();
    auto logits = tools::RunLogits(runner->get(), ids, {}, 1 << 20);
    ASSERT_TRUE(logits.ok()) << logits.status();
    const std::string logits_file = Tmp("tessera-" + type + ".safetensors");
    ASSERT_TRUE(tools::WriteLogitsFile(logits_file, *logits, {}).ok());
    cases.push_back({{"model", o.out},
                     {"text", text},
                     {"ids", ids},
                     {"logits_file", logits_file},
                     {"tolerance", tools::ToleranceForTypes(tools::MatrixTypes(**model))}});
  }
  const std::string cases_file = Tmp("cases.json");
  std::ofstream(cases_file) << cases.dump();
  int code = -1;
  const std::string out =
      RunCommand("NODE_PATH='" + node_modules + "' node '" + tessera::testing::WorkspaceDir() +
                     "/tests/node/gguf_llama.js' '" + cases_file + "' 2>&1",
                 &code);
  std::printf("%s", out.c_str());
  EXPECT_EQ(code, 0) << out;
}

}  // namespace
}  // namespace tessera
