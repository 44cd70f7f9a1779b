// The CUDA runner end to end on quantized GGUF files made by llama.cpp's own converter and
// llama-quantize (testdata/gguf/gemma4-quant-s: hidden 256, 6 layers, every matrix k-quantizable),
// with the weights kept in their blocks on the device, against two references on the same file:
// llama.cpp's logits (the .logits.safetensors beside each file) and Tessera's CPU runner. The same
// source runs on a GPU (tag gpu) and on the CPU emulation of the kernels in CI.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/cuda/cuda_model_runner.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/device.h"
#include "runtime/model/model_loader.h"
#include "testdata/testdata.h"
#include "tools/golden_check_lib.h"

namespace tessera::runtime {
namespace {

// Decode rows compared: the last prefill row and three fed tokens (the emulation is slow; a GPU
// run could take all 16).
constexpr int kDecodeRows = 4;

// What the CUDA runner adds on top of the CPU runner's rounding, and why:
// - bf16 activations, bf16 K/V and bf16 norm outputs where the CPU runner keeps fp32: on the
//   gemma4-tiny golden fixture this path sits 1.8e-2 (text rows) from an fp32 reference
//   (cuda_model_runner_test.cc, kBf16Tolerance 3e-2);
// - the activations of a decode step quantized to q8_1 (blocks of 32 with an fp32 scale) where
//   the CPU path and llama.cpp use Q8_0 / Q8_K: the same family of rounding, of the size of the
//   bf16 rounding (quant.h).
// So against llama.cpp: the CPU runner's allowance for the file's types (tools/golden_check_lib,
// ToleranceForTypes: 5e-2 for 8/6-bit, 8e-2 for 4/5-bit weights) plus 3e-2; against the CPU runner
// on the same weights: 3e-2 for bf16 plus as much again for the two activation quantizations
// (different block sizes, so their errors do not cancel). A wrong block decode or scale moves rows
// by more than 1e-1 (the quantization error itself is 4e-2..2e-1 of f32: deviation.md).
constexpr double kBf16Allowance = 3e-2;
constexpr double kCpuTolerance = 6e-2;

std::string Dir() { return tessera::testing::FixturesDir() + "/gguf/gemma4-quant-s/"; }

class CudaGgufTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no GPU: " << cuda::QueryDevices().status();
  }
};

TEST_P(CudaGgufTest, MatchesLlamaCppAndTheCpuRunner) {
  const std::string stem = Dir() + "gemma4-quant-s-" + GetParam();
  auto model = LoadModel(stem + ".gguf");
  ASSERT_TRUE(model.ok()) << model.status();
  auto ref = tools::ReadLogitsFile(stem + ".logits.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const std::vector<int32_t> feed(ref->greedy_ids.begin(), ref->greedy_ids.begin() + kDecodeRows);
  const int64_t V = ref->vocab;

  CudaRunnerOptions o;
  o.num_blocks_sliding = 64;
  o.num_blocks_global = 64;
  o.max_step_tokens = 64;
  o.max_step_seqs = 4;
  o.max_seq_len = 256;
  auto cuda_runner = CreateCudaModelRunner(*model, o);
  ASSERT_TRUE(cuda_runner.ok()) << cuda_runner.status();

  // The weights stayed in their blocks: the device holds what their formats take (parts are
  // 256-byte aligned), not their bf16 expansion.
  const cuda::ModelFormats formats = cuda::FormatsOf((*model)->config, *(*model)->weights);
  const int64_t blocks = cuda::DeviceWeightBytes((*model)->config, formats);
  const int64_t bf16 = cuda::DeviceWeightBytes(
      (*model)->config, cuda::LlamaQuantizeFormats((*model)->config, cuda::QuantMix::kBf16));
  EXPECT_GE((*cuda_runner)->weight_bytes(), static_cast<uint64_t>(blocks));
  EXPECT_LE((*cuda_runner)->weight_bytes(), static_cast<uint64_t>(blocks + 256 * 64));
  std::printf("%s: device weights %llu bytes (bf16 would be %lld)\n", GetParam().c_str(),
              static_cast<unsigned long long>((*cuda_runner)->weight_bytes()),
              static_cast<long long>(bf16));

  auto ours = tools::RunLogits(cuda_runner->get(), ref->prompt_ids, feed, 64);
  ASSERT_TRUE(ours.ok()) << ours.status();

  CpuRunnerOptions co;
  co.num_blocks_sliding = 64;
  co.num_blocks_global = 64;
  co.num_threads = 2;
  auto cpu_runner = CreateCpuModelRunner(*model, co);
  ASSERT_TRUE(cpu_runner.ok()) << cpu_runner.status();
  auto cpu = tools::RunLogits(cpu_runner->get(), ref->prompt_ids, feed, 64);
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  const std::vector<float> ref_decode(ref->decode_logits.begin(),
                                      ref->decode_logits.begin() + kDecodeRows * V);
  const double tol = tools::ToleranceForTypes(tools::MatrixTypes(**model)) + kBf16Allowance;
  const tools::RowStats pre = tools::CompareRows(ours->prefill_logits, ref->prefill_logits, V);
  const tools::RowStats dec = tools::CompareRows(ours->decode_logits, ref_decode, V);
  const tools::RowStats cpu_pre = tools::CompareRows(ours->prefill_logits, cpu->prefill_logits, V);
  const tools::RowStats cpu_dec = tools::CompareRows(ours->decode_logits, cpu->decode_logits, V);
  std::printf(
      "%s vs llama.cpp: prefill max %.3e median %.3e argmax %d/%d, decode max %.3e; vs the CPU "
      "runner: prefill max %.3e, decode max %.3e (tolerances %.3e, %.3e)\n",
      GetParam().c_str(), pre.max, pre.median, pre.argmax_agree, pre.rows, dec.max, cpu_pre.max,
      cpu_dec.max, tol, kCpuTolerance);
  EXPECT_LE(pre.max, tol);
  EXPECT_LE(dec.max, tol);
  EXPECT_LE(cpu_pre.max, kCpuTolerance);
  EXPECT_LE(cpu_dec.max, kCpuTolerance);
}

// Every type of the fixture: Q8_0 (8-bit, 32-value blocks; its 40-row prefill takes the dequantize
// + GEMM path), Q6_K, Q5_K_M (Q5_K + Q6_K), Q4_K_M (Q4_K + Q6_K, fused QKV in two formats), Q4_0
// (+ a Q6_K embedding), and the bf16 file (cuBLASLt only).
INSTANTIATE_TEST_SUITE_P(Files, CudaGgufTest,
                         ::testing::Values("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "bf16"));

}  // namespace
}  // namespace tessera::runtime
