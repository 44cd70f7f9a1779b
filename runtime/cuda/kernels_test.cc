// Kernel launchers without a GPU (CI): unsupported shapes and malformed params are InvalidArgument
// before anything touches CUDA, and a well-formed launch on a machine without a GPU is Unavailable,
// never a crash. Plus the host-side arithmetic (bf16 rounding, RoPE frequencies, split choice).
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/norm.h"
#include "runtime/cuda/pointwise.h"
#include "runtime/cuda/rope_kv.h"
#include "runtime/cuda/sampling.h"

namespace tessera::runtime::cuda {
namespace {

bool HaveGpu() { return QueryDevices().ok(); }

// Host storage whose addresses stand in for device pointers: on a machine without a GPU the launch
// fails before any kernel could dereference them; the tests that launch skip when a GPU is present.
struct FakeMemory {
  // operator new aligns to 16 bytes on x86-64 (__STDCPP_DEFAULT_NEW_ALIGNMENT__), as the 16-byte
  // checks of the launchers need.
  std::vector<Bf16> bf16 = std::vector<Bf16>(4096);
  std::vector<float> f32 = std::vector<float>(4096);
  std::vector<int32_t> i32 = std::vector<int32_t>(64);
  std::vector<int64_t> i64 = std::vector<int64_t>(64);
};

AttentionParams ValidAttention(FakeMemory& m, int head_dim, int q_heads, int kv_heads) {
  AttentionParams p;
  p.q = m.bf16.data();
  p.out = m.bf16.data();
  p.q_row_stride = p.out_row_stride = static_cast<int64_t>(q_heads) * head_dim;
  p.num_seqs = 1;
  p.total_rows = 1;
  p.num_q_heads = q_heads;
  p.kv.pool = m.bf16.data();
  p.kv.num_blocks = 4;
  p.kv.num_layers = 2;
  p.kv.layer = 1;
  p.kv.num_kv_heads = kv_heads;
  p.kv.block_size = 16;
  p.kv.head_dim = head_dim;
  p.row_start = m.i32.data();
  p.start_pos = m.i32.data();
  p.block_tables = m.i32.data();
  p.block_table_stride = 4;
  return p;
}

TEST(AttentionLaunchTest, ModelShapesAreAccepted) {
  FakeMemory m;
  for (auto [d, hq, hkv] : std::vector<std::tuple<int, int, int>>{{256, 16, 8},
                                                                  {512, 16, 1},
                                                                  {16, 4, 2},
                                                                  {32, 4, 1},
                                                                  {256, 4, 2},
                                                                  {64, 4, 2},
                                                                  {128, 4, 1}}) {
    EXPECT_TRUE(ValidateAttention(ValidAttention(m, d, hq, hkv)).ok())
        << d << " " << hq << "/" << hkv;
  }
}

TEST(AttentionLaunchTest, UnsupportedShapesAreInvalidArgument) {
  FakeMemory m;
  for (auto [d, hq, hkv] : std::vector<std::tuple<int, int, int>>{{128, 16, 8},
                                                                  {256, 16, 16},
                                                                  {256, 16, 1},
                                                                  {512, 16, 2},
                                                                  {64, 4, 1},
                                                                  {256, 12, 8},
                                                                  {256, 16, 0}}) {
    const AttentionParams p = ValidAttention(m, d, hq, hkv);
    for (auto launch : {LaunchPagedDecodeAttention, LaunchPagedPrefillAttention}) {
      const absl::Status s = launch(p, nullptr);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
          << d << " " << hq << "/" << hkv << ": " << s;
    }
  }
}

TEST(AttentionLaunchTest, MalformedParamsAreInvalidArgument) {
  FakeMemory m;
  auto expect_invalid = [](const AttentionParams& p, const char* what) {
    EXPECT_EQ(LaunchPagedPrefillAttention(p, nullptr).code(), absl::StatusCode::kInvalidArgument)
        << what;
  };
  AttentionParams p = ValidAttention(m, 256, 16, 8);
  p.kv.block_size = 0;
  expect_invalid(p, "block_size 0");
  p = ValidAttention(m, 256, 16, 8);
  p.kv.block_size = 512;
  expect_invalid(p, "block_size 512");
  p = ValidAttention(m, 256, 16, 8);
  p.kv.layer = 2;
  expect_invalid(p, "layer past the group");
  p = ValidAttention(m, 256, 16, 8);
  p.num_splits = 4;
  expect_invalid(p, "splits without workspace");
  p = ValidAttention(m, 256, 16, 8);
  p.num_splits = 0;
  expect_invalid(p, "zero splits");
  p = ValidAttention(m, 256, 16, 8);
  p.q = nullptr;
  expect_invalid(p, "null q");
  p = ValidAttention(m, 256, 16, 8);
  p.bidi_begin = m.i32.data();
  expect_invalid(p, "bidi_begin without bidi_end");
  p = ValidAttention(m, 256, 16, 8);
  p.q_row_stride = 100;
  expect_invalid(p, "short q stride");
  p = ValidAttention(m, 256, 16, 8);
  p.q = m.bf16.data() + 1;  // 2-byte aligned only.
  expect_invalid(p, "misaligned q");
  p = ValidAttention(m, 256, 16, 8);
  p.max_rows_per_seq = 2;
  EXPECT_EQ(LaunchPagedDecodeAttention(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST(AttentionLaunchTest, ValidLaunchWithoutGpuIsUnavailable) {
  if (HaveGpu()) GTEST_SKIP() << "a GPU is present; see kernels_gpu_test";
  FakeMemory m;
  const AttentionParams p = ValidAttention(m, 256, 16, 8);
  EXPECT_EQ(LaunchPagedDecodeAttention(p, nullptr).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(LaunchPagedPrefillAttention(p, nullptr).code(), absl::StatusCode::kUnavailable);
}

TEST(AttentionLaunchTest, EmptyBatchIsANoOp) {
  FakeMemory m;
  AttentionParams p = ValidAttention(m, 512, 16, 1);
  p.num_seqs = 0;
  p.total_rows = 0;
  EXPECT_TRUE(LaunchPagedDecodeAttention(p, nullptr).ok());
}

TEST(AttentionPlanTest, WorkspaceAndSplits) {
  EXPECT_EQ(AttentionWorkspaceFloats(10, 16, 256, 1), 0);
  EXPECT_EQ(AttentionWorkspaceFloats(10, 16, 256, 4), 4LL * 10 * 16 * 258);
  // One sequence, one KV head, 32k keys, 132 SMs: enough splits for two waves, capped by length.
  EXPECT_EQ(ChooseDecodeSplits(1, 1, 32768, 132), 128);
  EXPECT_EQ(ChooseDecodeSplits(1, 1, 1000, 132), 3);
  // A full batch already fills the GPU: no split.
  EXPECT_EQ(ChooseDecodeSplits(128, 8, 4096, 132), 1);
  EXPECT_GE(ChooseDecodeSplits(1, 1, 10, 132), 1);
}

RopeKvParams ValidRope(FakeMemory& m, int head_dim) {
  RopeKvParams p;
  p.qkv = m.bf16.data();
  p.q_out = m.bf16.data();
  p.q_norm_weight = p.k_norm_weight = m.bf16.data();
  p.inv_freq = m.f32.data();
  p.positions = m.i32.data();
  p.slot_mapping = m.i64.data();
  p.kv.pool = m.bf16.data();
  p.kv.num_blocks = 2;
  p.kv.num_layers = 1;
  p.kv.num_kv_heads = 1;
  p.kv.block_size = 16;
  p.kv.head_dim = head_dim;
  p.num_rows = 1;
  p.num_q_heads = 2;
  return p;
}

TEST(RopeKvLaunchTest, ShapesAndPointers) {
  FakeMemory m;
  for (int d : {16, 32, 64, 128, 256, 512}) EXPECT_TRUE(ValidateRopeKv(ValidRope(m, d)).ok()) << d;
  for (int d : {0, 8, 48, 96, 1024}) {
    EXPECT_EQ(LaunchRopeKvWrite(ValidRope(m, d), nullptr).code(),
              absl::StatusCode::kInvalidArgument)
        << d;
  }
  RopeKvParams p = ValidRope(m, 256);
  p.slot_mapping = nullptr;
  EXPECT_EQ(LaunchRopeKvWrite(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  if (!HaveGpu()) {
    EXPECT_EQ(LaunchRopeKvWrite(ValidRope(m, 256), nullptr).code(), absl::StatusCode::kUnavailable);
  }
}

TEST(RopeKvLaunchTest, InvFreqFullAndProportional) {
  const std::vector<float> full = RopeInvFreq(256, 10000.0f, 128);
  ASSERT_EQ(full.size(), 128u);
  EXPECT_EQ(full[0], 1.0f);
  EXPECT_NEAR(full[1], std::pow(10000.0, -2.0 / 256), 1e-7);
  EXPECT_GT(full[127], 0.0f);
  // Gemma 4 global layers: 64 of 256 pairs rotate, with the exponent's denominator the full 512.
  const std::vector<float> part = RopeInvFreq(512, 1e6f, 64);
  ASSERT_EQ(part.size(), 256u);
  EXPECT_NEAR(part[63], std::pow(1e6, -126.0 / 512), 1e-9);
  for (int i = 64; i < 256; ++i) EXPECT_EQ(part[i], 0.0f) << i;
}

TEST(NormLaunchTest, BadShapesAndUnavailable) {
  FakeMemory m;
  RmsNormParams n;
  n.in = m.bf16.data();
  n.weight = m.bf16.data();
  n.out = m.bf16.data();
  n.rows = 2;
  n.dim = 64;
  n.in_row_stride = n.out_row_stride = 64;
  RmsNormParams bad = n;
  bad.dim = 0;
  EXPECT_EQ(LaunchRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = n;
  bad.in_row_stride = 32;
  EXPECT_EQ(LaunchRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);

  ResidualRmsNormParams r;
  r.y = r.y_weight = m.bf16.data();
  r.residual = m.bf16.data();
  r.rows = 2;
  r.dim = 64;
  r.y_row_stride = r.residual_row_stride = 64;
  ResidualRmsNormParams rb = r;
  rb.out = m.bf16.data();  // out without out_weight.
  rb.out_row_stride = 64;
  EXPECT_EQ(LaunchResidualRmsNorm(rb, nullptr).code(), absl::StatusCode::kInvalidArgument);
  if (!HaveGpu()) {
    EXPECT_EQ(LaunchRmsNorm(n, nullptr).code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(LaunchResidualRmsNorm(r, nullptr).code(), absl::StatusCode::kUnavailable);
  }
}

TEST(PointwiseLaunchTest, BadShapesAndUnavailable) {
  FakeMemory m;
  SoftcapParams s;
  s.logits = m.f32.data();
  s.rows = 1;
  s.cols = 512;
  s.row_stride = 512;
  SoftcapParams sb = s;
  sb.cap = 0.0f;
  EXPECT_EQ(LaunchSoftcap(sb, nullptr).code(), absl::StatusCode::kInvalidArgument);

  GegluParams g;
  g.in = m.bf16.data();
  g.out = m.bf16.data();
  g.rows = 1;
  g.dim = 128;
  g.up_offset = 128;
  g.in_row_stride = 256;
  g.out_row_stride = 128;
  GegluParams gb = g;
  gb.up_offset = 64;  // gate and up would overlap.
  EXPECT_EQ(LaunchGeglu(gb, nullptr).code(), absl::StatusCode::kInvalidArgument);

  EmbedParams e;
  e.ids = m.i32.data();
  e.table = m.bf16.data();
  e.vocab = 512;
  e.hidden = 64;
  e.out = m.bf16.data();
  e.out_row_stride = 64;
  e.rows = 1;
  EmbedParams eb = e;
  eb.vocab = 0;
  EXPECT_EQ(LaunchEmbedTokens(eb, nullptr).code(), absl::StatusCode::kInvalidArgument);
  if (!HaveGpu()) {
    EXPECT_EQ(LaunchSoftcap(s, nullptr).code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(LaunchGeglu(g, nullptr).code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(LaunchEmbedTokens(e, nullptr).code(), absl::StatusCode::kUnavailable);
  }
}

TEST(SamplingLaunchTest, BadShapesAndUnavailable) {
  FakeMemory m;
  ArgmaxParams a;
  a.logits = m.f32.data();
  a.row_stride = 512;
  a.rows = 2;
  a.vocab = 512;
  a.out_token = m.i32.data();
  ArgmaxParams bad = a;
  bad.row_stride = 100;
  EXPECT_EQ(LaunchArgmax(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = a;
  bad.out_token = nullptr;
  EXPECT_EQ(LaunchArgmax(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  if (!HaveGpu()) EXPECT_EQ(LaunchArgmax(a, nullptr).code(), absl::StatusCode::kUnavailable);
}

TEST(DeviceMemoryTest, WithoutGpuAllocationIsUnavailable) {
  if (HaveGpu()) GTEST_SKIP() << "a GPU is present";
  auto b = DeviceBuffer::Allocate(1024);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
  EXPECT_EQ(Synchronize().code(), absl::StatusCode::kUnavailable);
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(62.0f)), 62.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(RoundBf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
  EXPECT_EQ(RoundBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(-INFINITY)), -INFINITY);
}

}  // namespace
}  // namespace tessera::runtime::cuda
