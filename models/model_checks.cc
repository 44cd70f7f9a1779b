#include "models/model_checks.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/model/model_config.h"
#include "runtime/model/model_loader.h"
#include "runtime/model/safetensors.h"
#include "tools/make_model_lib.h"

namespace tessera::models {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

tools::ModelSpec SpecOf(const std::string& name) {
  auto spec = tools::ParseModelSpec(ReadAll("models/" + name + ".json"), tools::ModelSpec{});
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : tools::ModelSpec{};
}

}  // namespace

void ExpectModelMatchesSpec(const std::string& name) {
  SCOPED_TRACE(name);
  const tools::ModelSpec spec = SpecOf(name);
  const std::string dir = "models/" + name;
  auto config = runtime::LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->text.vocab_size, spec.vocab_size);
  EXPECT_EQ(config->text.hidden_size, spec.hidden_size);
  EXPECT_EQ(config->text.num_layers, spec.num_layers);
  EXPECT_EQ(config->text.sliding_window, spec.sliding_window);
  EXPECT_EQ(config->vision.mm_embed_dim, spec.mm_embed_dim);
  EXPECT_EQ(config->image_token_id, spec.ids.image);
  EXPECT_EQ(config->text.eos_token_ids, spec.ids.eos_ids);
  ASSERT_EQ(config->text.layers.size(), static_cast<size_t>(spec.num_layers));
  for (int i = 0; i < spec.num_layers; ++i) {
    EXPECT_EQ(config->text.layers[i].type,
              spec.IsGlobal(i) ? runtime::LayerType::kGlobal : runtime::LayerType::kSliding)
        << "layer " << i;
  }

  auto file = runtime::SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const std::vector<tools::TensorSpec> expected = tools::CheckpointTensors(spec);
  ASSERT_EQ((*file)->tensors().size(), expected.size());
  for (const tools::TensorSpec& t : expected) {
    const runtime::TensorView* v = (*file)->Find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->dtype, runtime::DType::kBF16) << t.name;
    EXPECT_EQ(v->shape, t.shape) << t.name;
  }
  // Spot-check values: the file holds what the generator computes for this seed.
  const tools::TensorSpec& q = expected.back();
  auto values = runtime::ToFloatVector(*(*file)->Find(q.name));
  ASSERT_TRUE(values.ok());
  EXPECT_EQ(*values, tools::TensorValues(spec, q)) << q.name;
}

void ExpectModelRuns(const std::string& name) {
  SCOPED_TRACE(name);
  auto model = runtime::LoadModel("models/" + name);
  ASSERT_TRUE(model.ok()) << model.status();
  runtime::CpuRunnerOptions options;
  options.num_blocks_sliding = 8;
  options.num_blocks_global = 8;
  options.num_threads = 2;
  auto runner = runtime::CreateCpuModelRunner(*model, options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  runtime::SequencePlan sp;
  for (int i = 0; i < 40; ++i) sp.token_ids.push_back(10 + (i * 37) % 400);  // Plain text ids.
  sp.token_ids[0] = 2;                                                       // <bos>
  const int num_groups = static_cast<int>((*runner)->kv_spec().groups.size());
  const int block_size = (*runner)->kv_spec().groups[0].block_size;
  const int blocks = (40 + block_size - 1) / block_size;
  for (int g = 0; g < num_groups; ++g) {
    std::vector<int32_t> table(blocks);
    for (int b = 0; b < blocks; ++b) table[b] = b;
    sp.block_tables.push_back(table);
  }
  sp.logits_rows = {39};
  sp.sample = true;
  sp.sampling.temperature = 0.0f;
  runtime::BatchPlan plan;
  plan.seqs.push_back(sp);
  runtime::StepOutput out;
  ASSERT_TRUE((*runner)->Execute(plan, &out).ok());
  ASSERT_EQ(out.seqs.size(), 1u);
  const std::vector<float>& logits = out.seqs[0].logits;
  ASSERT_EQ(logits.size(), static_cast<size_t>((*model)->config.text.vocab_size));
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  const auto [lo, hi] = std::minmax_element(logits.begin(), logits.end());
  EXPECT_GT(*hi - *lo, 1.0f);  // Random weights spread the logits widely; 0 would mean a dead path.
  EXPECT_LE(*hi, 30.0f);       // The softcap.
  EXPECT_EQ(out.seqs[0].sampled.token,
            std::max_element(logits.begin(), logits.end()) - logits.begin());
}

}  // namespace tessera::models
