// llama-quantize's type choices, checked against what it chose for testdata/gguf/gemma4-quant-s
// (that folder's README lists every matrix that did not get the mix's base type).
#include "runtime/cuda/quant_mix.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "runtime/cuda/gemma4_configs.h"
#include "testdata/testdata.h"

namespace tessera::runtime::cuda {
namespace {

ModelConfig QuantSConfig() {
  std::ifstream f(tessera::testing::FixturesDir() + "/gguf/gemma4-quant-s/hf/config.json");
  std::stringstream text;
  text << f.rdbuf();
  auto config = ParseModelConfig(text.str());
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

using F = WeightFormat;

TEST(QuantMixTest, MixesOfTheGemma4QuantSFixture) {
  const ModelConfig c = QuantSConfig();
  ASSERT_EQ(c.text.layers.size(), 6u);
  // README: "Q5_K_M / Q4_K_M q5_K / q4_K except q6_K for token_embd (tied output), blk.2.attn_v,
  // blk.2.ffn_down, blk.4.attn_v, blk.5.ffn_down" (layer 5 is global: K = V, no attn_v).
  for (auto [mix, base] : {std::pair{QuantMix::kQ4_K_M, F::kQ4_K}, {QuantMix::kQ5_K_M, F::kQ5_K}}) {
    SCOPED_TRACE(QuantMixName(mix));
    const ModelFormats f = LlamaQuantizeFormats(c, mix);
    EXPECT_EQ(f.embed, F::kQ6_K);
    for (int l = 0; l < 6; ++l) {
      const LayerFormats& lf = f.layers[l];
      for (F x : {lf.q, lf.k, lf.o, lf.gate, lf.up}) EXPECT_EQ(x, base) << "layer " << l;
      if (l < 5) {
        EXPECT_EQ(lf.v, l == 2 || l == 4 ? F::kQ6_K : base) << "layer " << l;
      }
      EXPECT_EQ(lf.down, l == 2 || l == 5 ? F::kQ6_K : base) << "layer " << l;
    }
  }
  // "Q4_0 q4_0 except token_embd q6_K"; "Q8_0 all 42 matrices q8_0; Q6_K all q6_K".
  for (auto [mix, base, embed] : {std::tuple{QuantMix::kQ4_0, F::kQ4_0, F::kQ6_K},
                                  {QuantMix::kQ8_0, F::kQ8_0, F::kQ8_0},
                                  {QuantMix::kQ6_K, F::kQ6_K, F::kQ6_K}}) {
    SCOPED_TRACE(QuantMixName(mix));
    const ModelFormats f = LlamaQuantizeFormats(c, mix);
    EXPECT_EQ(f.embed, embed);
    for (const LayerFormats& lf : f.layers) {
      for (F x : {lf.q, lf.k, lf.v, lf.o, lf.gate, lf.up, lf.down}) EXPECT_EQ(x, base);
    }
  }
}

TEST(QuantMixTest, DeviceBytesOfThe12B) {
  auto c = ParseModelConfig(Gemma4_12BConfigJson());
  ASSERT_TRUE(c.ok()) << c.status();
  // bf16: 2 bytes per parameter (11,959,730,224 published), except the media path's fp32 vectors
  // (patch LayerNorm 2 x 6912, five [3840] norms and biases, the 1120 x 2 x 3840 position table),
  // 2 bytes more each, plus the fp32 RoPE frequencies (40 sliding layers x 128, 8 global x 256).
  const int64_t bf16 = DeviceWeightBytes(*c, LlamaQuantizeFormats(*c, QuantMix::kBf16));
  EXPECT_EQ(bf16, 2 * 11959730224LL + 2 * (2 * 6912 + 5 * 3840 + 2 * 1120 * 3840) + 4 * 7168);
  // The text model alone in Q4_K_M: the issue quotes 6.9 (GiB, as model hubs show file sizes)
  // for the community Q4_K_M file of the text model.
  ModelConfig text = *c;
  text.vision.present = false;
  text.audio.present = false;
  const int64_t q4km = DeviceWeightBytes(text, LlamaQuantizeFormats(text, QuantMix::kQ4_K_M));
  EXPECT_NEAR(q4km / 1073741824.0, 6.9, 0.1);
  // Q8_0: 8.5 bits per text weight, every matrix.
  const int64_t q8 = DeviceWeightBytes(text, LlamaQuantizeFormats(text, QuantMix::kQ8_0));
  EXPECT_NEAR(q8 * 8.0 / 8.5, 11959730224.0 - 3840 * (6912 + 3840 + 640) - 1120 * 2 * 3840,
              2e6);  // Norms (bf16) and frequencies.
  std::printf("Gemma 4 12B text weights on the device: Q8_0 %.2f GB, Q4_K_M %.2f GB (%.2f GiB)\n",
              q8 / 1e9, q4km / 1e9, q4km / 1073741824.0);
}

}  // namespace
}  // namespace tessera::runtime::cuda
