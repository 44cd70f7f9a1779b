#include "runtime/model/gguf_model.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_model_runner.h"
#include "runtime/model/gguf_writer.h"
#include "runtime/model/model_loader.h"
#include "runtime/testing/golden.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string Fixtures() { return tessera::testing::FixturesDir(); }
std::string TinyGguf() { return Fixtures() + "/gguf/gemma4-tiny/gemma4-tiny-f32.gguf"; }
std::string TinyMmproj() { return Fixtures() + "/gguf/gemma4-tiny/mmproj-gemma4-tiny-f32.gguf"; }

std::vector<float> Row(const WeightMatrix& m, int64_t r) {
  std::vector<float> out(m.cols);
  m.RowToFloat(r, out.data());
  return out;
}

void ExpectSameMatrix(const WeightMatrix& a, const WeightMatrix& b, const std::string& what) {
  ASSERT_EQ(a.rows, b.rows) << what;
  ASSERT_EQ(a.cols, b.cols) << what;
  for (int64_t r = 0; r < a.rows; ++r) ASSERT_EQ(Row(a, r), Row(b, r)) << what << " row " << r;
}

// The checkpoint's config.json and the converter's GGUF metadata describe the same model.
TEST(GgufModelTest, ConfigMatchesConfigJson) {
  auto text = GgufFile::Open(TinyGguf());
  auto mm = GgufFile::Open(TinyMmproj());
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_TRUE(mm.ok()) << mm.status();
  auto got = GgufModelConfig(**text, mm->get());
  ASSERT_TRUE(got.ok()) << got.status();
  auto want = LoadModelConfig(Fixtures() + "/gemma4-tiny");
  ASSERT_TRUE(want.ok()) << want.status();
  const TextConfig& g = got->text;
  const TextConfig& w = want->text;
  EXPECT_EQ(g.vocab_size, w.vocab_size);
  EXPECT_EQ(g.hidden_size, w.hidden_size);
  EXPECT_EQ(g.intermediate_size, w.intermediate_size);
  EXPECT_EQ(g.num_layers, w.num_layers);
  EXPECT_EQ(g.num_heads, w.num_heads);
  EXPECT_FLOAT_EQ(g.rms_norm_eps, w.rms_norm_eps);
  EXPECT_EQ(g.final_logit_softcapping, w.final_logit_softcapping);
  EXPECT_EQ(g.sliding_window, w.sliding_window);
  EXPECT_EQ(g.max_position_embeddings, w.max_position_embeddings);
  EXPECT_EQ(g.bos_token_id, w.bos_token_id);
  EXPECT_EQ(g.pad_token_id, w.pad_token_id);
  EXPECT_EQ(g.eos_token_ids, w.eos_token_ids);
  ASSERT_EQ(g.layers.size(), w.layers.size());
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const LayerConfig& a = g.layers[i];
    const LayerConfig& b = w.layers[i];
    EXPECT_EQ(a.type, b.type) << i;
    EXPECT_EQ(a.head_dim, b.head_dim) << i;
    EXPECT_EQ(a.num_kv_heads, b.num_kv_heads) << i;
    EXPECT_EQ(a.rope_theta, b.rope_theta) << i;
    EXPECT_EQ(a.rope_pairs, b.rope_pairs) << i;  // Global: 4 pairs from rope_freqs' 1s.
    EXPECT_EQ(a.k_eq_v, b.k_eq_v) << i;
    EXPECT_EQ(a.window, b.window) << i;
  }
  for (auto id :
       {&ModelConfig::image_token_id, &ModelConfig::boi_token_id, &ModelConfig::eoi_token_id,
        &ModelConfig::audio_token_id, &ModelConfig::boa_token_id, &ModelConfig::eoa_token_id,
        &ModelConfig::video_token_id}) {
    EXPECT_EQ((*got).*id, (*want).*id);
  }
  EXPECT_TRUE(got->vision.present);
  EXPECT_EQ(got->vision.mm_embed_dim, want->vision.mm_embed_dim);
  EXPECT_EQ(got->vision.mm_posemb_size, want->vision.mm_posemb_size);
  EXPECT_EQ(got->vision.layer_norm_eps, want->vision.layer_norm_eps);
  EXPECT_EQ(got->vision.rms_norm_eps, want->vision.rms_norm_eps);
  EXPECT_TRUE(got->audio.present);
  EXPECT_EQ(got->audio.audio_embed_dim, want->audio.audio_embed_dim);
  EXPECT_EQ(got->audio.rms_norm_eps, want->audio.rms_norm_eps);

  auto text_only = GgufModelConfig(**text, nullptr);
  ASSERT_TRUE(text_only.ok());
  EXPECT_FALSE(text_only->vision.present);
  EXPECT_FALSE(text_only->audio.present);
}

TEST(GgufModelTest, HwcColumnUndoesTheConvertersPermutation) {
  // conversion/gemma.py: perm[i] = row * p * 3 + col * 3 + ch for CHW position i.
  constexpr int64_t p = 48;
  std::set<int64_t> seen;
  for (int64_t i = 0; i < p * p * 3; ++i) seen.insert(HwcColumn(i, p));
  EXPECT_EQ(seen.size(), static_cast<size_t>(p * p * 3));
  EXPECT_EQ(HwcColumn(0, p), 0);
  EXPECT_EQ(HwcColumn(1, p), 3);      // CHW (ch 0, row 0, col 1) is HWC column 3.
  EXPECT_EQ(HwcColumn(p * p, p), 1);  // Channel 1 of pixel (0, 0).
  EXPECT_EQ(HwcColumn(p, p), p * 3);  // Row 1, col 0, ch 0.
}

// Every tensor the GGUF files bind equals the checkpoint's (the converter widened bf16 to f32),
// the vision tensors after undoing its permutations.
TEST(GgufModelTest, WeightsMatchTheCheckpoint) {
  LoadModelOptions options;
  options.mmproj = TinyMmproj();
  auto gguf = LoadModel(TinyGguf(), options);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto st = LoadModel(Fixtures() + "/gemma4-tiny");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ((*gguf)->format, ModelFormat::kGguf);
  EXPECT_EQ((*gguf)->mmproj_path, TinyMmproj());
  const ModelWeights& a = *(*gguf)->weights;
  const ModelWeights& b = *(*st)->weights;
  EXPECT_FALSE(a.bf16_constants);
  EXPECT_EQ(a.embed_scale, std::sqrt(64.0f));
  ExpectSameMatrix(a.embed_tokens, b.embed_tokens, "embed");
  EXPECT_EQ(a.final_norm, b.final_norm);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeights& x = a.layers[i];
    const LayerWeights& y = b.layers[i];
    const std::string l = "layer " + std::to_string(i);
    ExpectSameMatrix(x.q_proj, y.q_proj, l + " q");
    ExpectSameMatrix(x.k_proj, y.k_proj, l + " k");
    EXPECT_EQ(x.v_proj.empty(), y.v_proj.empty()) << l;
    if (!y.v_proj.empty()) ExpectSameMatrix(x.v_proj, y.v_proj, l + " v");
    ExpectSameMatrix(x.o_proj, y.o_proj, l + " o");
    ExpectSameMatrix(x.gate_proj, y.gate_proj, l + " gate");
    ExpectSameMatrix(x.up_proj, y.up_proj, l + " up");
    ExpectSameMatrix(x.down_proj, y.down_proj, l + " down");
    EXPECT_EQ(x.input_norm, y.input_norm) << l;
    EXPECT_EQ(x.post_attention_norm, y.post_attention_norm) << l;
    EXPECT_EQ(x.pre_feedforward_norm, y.pre_feedforward_norm) << l;
    EXPECT_EQ(x.post_feedforward_norm, y.post_feedforward_norm) << l;
    EXPECT_EQ(x.q_norm, y.q_norm) << l;
    EXPECT_EQ(x.k_norm, y.k_norm) << l;
    EXPECT_EQ(x.layer_scalar, y.layer_scalar) << l;
  }
  ASSERT_TRUE(a.has_vision && a.has_audio);
  EXPECT_EQ(a.vision.ln1_weight, b.vision.ln1_weight);
  EXPECT_EQ(a.vision.ln1_bias, b.vision.ln1_bias);
  ExpectSameMatrix(a.vision.patch_dense, b.vision.patch_dense, "patch_dense");
  EXPECT_EQ(a.vision.patch_dense_bias, b.vision.patch_dense_bias);
  EXPECT_EQ(a.vision.ln2_weight, b.vision.ln2_weight);
  EXPECT_EQ(a.vision.ln2_bias, b.vision.ln2_bias);
  EXPECT_EQ(a.vision.pos_embedding, b.vision.pos_embedding);
  EXPECT_EQ(a.vision.pos_norm_weight, b.vision.pos_norm_weight);
  EXPECT_EQ(a.vision.pos_norm_bias, b.vision.pos_norm_bias);
  ExpectSameMatrix(a.vision.projection, b.vision.projection, "vision projection");
  ExpectSameMatrix(a.audio.projection, b.audio.projection, "audio projection");
}

// The safetensors checkpoint with the constants llama.cpp uses (fp32 sqrt(hidden) and RoPE
// frequencies) and the GGUF files of it compute the same logits on every golden prompt: text,
// image (bidirectional runs, 2-D positions) and audio.
TEST(GgufModelTest, SameLogitsAsTheSafetensorsForm) {
  auto config = LoadModelConfig(Fixtures() + "/gemma4-tiny");
  ASSERT_TRUE(config.ok());
  auto ckpt = Checkpoint::Open(Fixtures() + "/gemma4-tiny");
  ASSERT_TRUE(ckpt.ok());
  auto weights = BindWeights(*config, std::move(*ckpt));
  ASSERT_TRUE(weights.ok());
  (*weights)->bf16_constants = false;
  (*weights)->embed_scale = std::sqrt(static_cast<float>(config->text.hidden_size));
  auto st = std::make_shared<LoadedModel>();
  st->config = *config;
  st->weights = std::move(*weights);
  auto golden = cpu::ReadGolden(Fixtures() + "/gemma4-tiny/golden.safetensors", *config);
  ASSERT_TRUE(golden.ok()) << golden.status();

  for (const char* name : {"gemma4-tiny-f32.gguf", "gemma4-tiny-bf16.gguf"}) {
    LoadModelOptions options;
    options.mmproj = TinyMmproj();
    auto gguf = LoadModel(Fixtures() + "/gguf/gemma4-tiny/" + name, options);
    ASSERT_TRUE(gguf.ok()) << gguf.status();
    CpuRunnerOptions ro;
    ro.block_size = 16;
    ro.num_blocks_sliding = ro.num_blocks_global = 64;
    ro.num_threads = 1;
    auto r1 = CreateCpuModelRunner(st, ro);
    auto r2 = CreateCpuModelRunner(*gguf, ro);
    ASSERT_TRUE(r1.ok() && r2.ok());
    for (const cpu::GoldenPrompt& g : *golden) {
      cpu::LinearBlockAllocator a1((*r1)->kv_spec()), a2((*r2)->kv_spec());
      std::vector<std::vector<int32_t>> t1, t2;
      auto l1 = cpu::PrefillAll(r1->get(), &a1, g.prompt, 1 << 20, &t1);
      auto l2 = cpu::PrefillAll(r2->get(), &a2, g.prompt, 1 << 20, &t2);
      ASSERT_TRUE(l1.ok() && l2.ok()) << g.name;
      // Identical weights and constants; only the matmul kernel may differ (F32 vs BF16 storage
      // of the same values): fp32 rounding in summation order, 1e-5 relative at most.
      const float err = cpu::MaxRowRelativeError(l2->data(), l1->data(), g.prompt.size(),
                                                 config->text.vocab_size);
      EXPECT_LE(err, 1e-5f) << name << " " << g.name;
    }
  }
}

// A copy of `src` through GgufWriter without `drop_keys` / `drop_tensors`, then `add`.
std::string Rewrite(const GgufFile& src, const std::set<std::string>& drop_keys,
                    const std::set<std::string>& drop_tensors,
                    const std::function<void(GgufWriter&)>& add) {
  GgufWriter w;
  for (std::string_view k : src.keys()) {
    if (drop_keys.count(std::string(k)) == 0) w.AddValue(k, *src.Find(k));
  }
  for (const GgufTensor& t : src.tensors()) {
    if (drop_tensors.count(t.name) != 0) continue;
    w.AddTensor(t.name, t.ggml_type(), t.ne,
                std::string(reinterpret_cast<const char*>(t.data), t.num_bytes));
  }
  if (add) add(w);
  auto bytes = w.Serialize();
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

absl::Status LoadEdited(const std::string& text_bytes, const std::string* mmproj_bytes) {
  auto text = GgufFile::Parse(text_bytes, "edited.gguf");
  if (!text.ok()) return text.status();
  std::shared_ptr<const GgufFile> mm;
  if (mmproj_bytes != nullptr) {
    auto m = GgufFile::Parse(*mmproj_bytes, "edited-mmproj.gguf");
    if (!m.ok()) return m.status();
    mm = std::move(*m);
  }
  auto config = GgufModelConfig(**text, mm.get());
  if (!config.ok()) return config.status();
  std::shared_ptr<const GgufFile> t = std::move(*text);
  return BindGgufWeights(*config, t, mm).status();
}

TEST(GgufModelTest, RewrittenFileStillLoads) {
  auto src = GgufFile::Open(TinyGguf());
  ASSERT_TRUE(src.ok());
  const std::string bytes = Rewrite(**src, {}, {}, nullptr);
  EXPECT_TRUE(LoadEdited(bytes, nullptr).ok()) << LoadEdited(bytes, nullptr);
}

TEST(GgufModelTest, BadMetadataAndTensorsAreNamed) {
  auto src = GgufFile::Open(TinyGguf());
  ASSERT_TRUE(src.ok());
  const std::string kv = "gemma4.attention.head_count_kv";
  struct Case {
    std::set<std::string> drop_keys, drop_tensors;
    std::function<void(GgufWriter&)> add;
    const char* expect;
  };
  std::vector<float> freqs(16, 1e30f);
  for (int i = 0; i < 4; ++i) freqs[i] = 1.0f;
  std::vector<float> bad_freqs = freqs;
  bad_freqs[4] = 0.5f;
  std::vector<float> gap_freqs = freqs;
  gap_freqs[6] = 1.0f;
  const std::vector<Case> cases = {
      {{"general.architecture"},
       {},
       [](GgufWriter& w) { w.AddString("general.architecture", "llama"); },
       "general.architecture is 'llama'"},
      {{kv}, {}, nullptr, "metadata key gemma4.attention.head_count_kv is missing"},
      {{"gemma4.block_count"},
       {},
       [](GgufWriter& w) { w.AddUint32("gemma4.block_count", 1u << 29); },
       "block_count is 536870912 but the file has 86 tensors"},
      {{kv},
       {},
       [&](GgufWriter& w) {
         w.AddInt32Array(kv, {2, 2, 1});
       },
       "head_count_kv has 3 entries for 6 layers"},
      {{kv}, {}, [&](GgufWriter& w) { w.AddUint32(kv, 3); }, "is not a multiple of its 3 KV heads"},
      {{kv},
       {},
       [&](GgufWriter& w) { w.AddString(kv, "2"); },
       "head_count_kv has type string; expected an integer"},
      {{"gemma4.attention.sliding_window_pattern"},
       {},
       [](GgufWriter& w) {
         w.AddBoolArray("gemma4.attention.sliding_window_pattern", {true, false});
       },
       "sliding_window_pattern has 2 entries for 6 layers"},
      {{"gemma4.attention.sliding_window_pattern"},
       {},
       [](GgufWriter& w) {
         w.AddBoolArray("gemma4.attention.sliding_window_pattern",
                        {true, true, true, true, false, false});
       },
       "layer 5 has a KV shape different from layer 4"},
      {{},
       {"rope_freqs.weight"},
       [&](GgufWriter& w) {
         w.AddTensor("rope_freqs.weight", GgmlType::kF32, {16}, F32Bytes(bad_freqs));
       },
       "rope_freqs.weight[4] is 0.5"},
      {{},
       {"rope_freqs.weight"},
       [&](GgufWriter& w) {
         w.AddTensor("rope_freqs.weight", GgmlType::kF32, {16}, F32Bytes(gap_freqs));
       },
       "rope_freqs.weight[6] is 1"},
      {{}, {"rope_freqs.weight"}, nullptr, "tensor rope_freqs.weight is missing"},
      {{"gemma4.rope.dimension_count_swa"},
       {},
       [](GgufWriter& w) { w.AddUint32("gemma4.rope.dimension_count_swa", 8); },
       "RoPE over the first dims only is not supported"},
      {{},
       {},
       [](GgufWriter& w) { w.AddUint32("gemma4.expert_count", 4); },
       "gemma4.expert_count is 4"},
      {{"gemma4.attention.shared_kv_layers"},
       {},
       [](GgufWriter& w) { w.AddUint32("gemma4.attention.shared_kv_layers", 2); },
       "shared_kv_layers is 2"},
      {{"gemma4.feed_forward_length"},
       {},
       [](GgufWriter& w) {
         w.AddInt32Array("gemma4.feed_forward_length", {128, 128, 128, 128, 128, 256});
       },
       "double-wide MLP"},
      {{},
       {},
       [](GgufWriter& w) {
         w.AddTensor("output.weight", GgmlType::kF32, {64, 512}, std::string(64 * 512 * 4, '\0'));
       },
       "tensor output.weight [64, 512] is not part of the Gemma 4 text model"},
      {{}, {"blk.3.ffn_up.weight"}, nullptr, "tensor blk.3.ffn_up.weight is missing"},
      {{},
       {"blk.0.attn_q.weight"},
       [](GgufWriter& w) {
         w.AddTensor("blk.0.attn_q.weight", GgmlType::kF32, {64, 32},
                     std::string(64 * 32 * 4, '\0'));
       },
       "blk.0.attn_q.weight has shape [64, 32]; the metadata implies [64, 64]"},
      {{},
       {"blk.0.attn_q.weight"},
       [](GgufWriter& w) {
         w.AddTensor("blk.0.attn_q.weight", GgmlType::kI32, {64, 64},
                     std::string(64 * 64 * 4, '\0'));
       },
       "matrix blk.0.attn_q.weight has type i32; supported: f32, f16, bf16, q8_0"},
      {{},
       {"blk.0.attn_norm.weight"},
       [](GgufWriter& w) {
         w.AddTensor("blk.0.attn_norm.weight", GgmlType::kI32, {64}, std::string(256, '\0'));
       },
       "tensor blk.0.attn_norm.weight has type I32, which Tessera cannot decode"},
      {{"tokenizer.ggml.tokens"},
       {},
       [](GgufWriter& w) {
         w.AddStringArray("tokenizer.ggml.tokens", std::vector<std::string>(511, "x"));
       },
       "has 511 tokens but token_embd.weight has 512 rows"},
      {{"tokenizer.ggml.eos_token_id"},
       {},
       [](GgufWriter& w) { w.AddUint32("tokenizer.ggml.eos_token_id", 512); },
       "eos_token_id is 512, beyond the vocabulary of 512"},
      {{"gemma4.attention.layer_norm_rms_epsilon"},
       {},
       [](GgufWriter& w) { w.AddFloat32("gemma4.attention.layer_norm_rms_epsilon", NAN); },
       "layer_norm_rms_epsilon is not finite"},
  };
  for (const Case& c : cases) {
    const std::string bytes = Rewrite(**src, c.drop_keys, c.drop_tensors, c.add);
    absl::Status s = LoadEdited(bytes, nullptr);
    ASSERT_FALSE(s.ok()) << c.expect;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s << "\nwanted: " << c.expect;
  }
}

TEST(GgufModelTest, BadMmprojIsNamed) {
  auto text = GgufFile::Open(TinyGguf());
  auto mm = GgufFile::Open(TinyMmproj());
  ASSERT_TRUE(text.ok() && mm.ok());
  const std::string text_bytes = Rewrite(**text, {}, {}, nullptr);
  struct Case {
    std::set<std::string> drop_keys, drop_tensors;
    std::function<void(GgufWriter&)> add;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {{"clip.vision.projector_type"},
       {},
       [](GgufWriter& w) { w.AddString("clip.vision.projector_type", "gemma4v"); },
       "vision projector type 'gemma4v' is not supported"},
      {{"clip.audio.projector_type"},
       {},
       [](GgufWriter& w) { w.AddString("clip.audio.projector_type", "gemma4a"); },
       "audio projector type 'gemma4a' is not supported"},
      {{"clip.vision.image_mean"},
       {},
       [](GgufWriter& w) {
         w.AddFloat32Array("clip.vision.image_mean", {0.5f, 0.5f, 0.5f});
       },
       "clip.vision.image_mean is not all 0"},
      {{"general.architecture"},
       {},
       [](GgufWriter& w) { w.AddString("general.architecture", "gemma4"); },
       "an mmproj file has 'clip'"},
      {{}, {"v.patch_norm.3.bias"}, nullptr, "tensor v.patch_norm.3.bias is missing"},
      {{},
       {},
       [](GgufWriter& w) {
         w.AddTensor("v.blk.0.attn_q.weight", GgmlType::kF32, {4}, std::string(16, '\0'));
       },
       "v.blk.0.attn_q.weight [4] is not part of the Gemma 4 multimodal projector"},
      {{"clip.has_vision_encoder", "clip.has_audio_encoder"},
       {},
       nullptr,
       "neither a vision nor an audio part"},
  };
  for (const Case& c : cases) {
    const std::string bytes = Rewrite(**mm, c.drop_keys, c.drop_tensors, c.add);
    absl::Status s = LoadEdited(text_bytes, &bytes);
    ASSERT_FALSE(s.ok()) << c.expect;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s << "\nwanted: " << c.expect;
  }
}

}  // namespace
}  // namespace tessera::runtime
