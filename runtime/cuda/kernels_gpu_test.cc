// Every CUDA kernel against a naive CPU reference (plain fp32/fp64 loops written here, sharing no
// code with the kernels) on seeded random inputs over many shapes. GPU only (tags = ["gpu"]).
//
// Tolerances (bf16 has 8 significant bits: one ulp is 2^-8 .. 2^-7 of the value):
//  - Attention: inputs are exact bf16 values; the kernel accumulates in fp32 (and __expf, ~2 ulp of
//    fp32) and rounds the output once to bf16 (<= 2^-9 relative). fp32 summation over up to 32k
//    keys adds ~1e-5 relative. So |gpu - ref| <= 2^-8 |ref| + 2e-3 (the absolute term covers
//    outputs near zero, where the averaged V cancels: the fp32 error is relative to max|V| = 1, not
//    to the output).
//  - RoPE/KV write and the norms round intermediates to bf16 exactly where the reference
//    implementation does; a different last fp32 bit (rsqrtf, sincosf, tanhf vs the host's double)
//    can flip one intermediate rounding by one bf16 ulp, which then propagates: allow 2 ulps of the
//    largest intermediate (2^-6 relative) plus 2^-8 absolute. Flips must be rare: we also require
//    at least 97% of values to match the reference bit for bit.
//  - Embedding gather: a bf16 x bf16 product is exact in fp32, then rounded once on both sides:
//  exact.
//  - Softcap: fp32 tanhf vs double tanh: 1e-5 relative to the cap.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/norm.h"
#include "runtime/cuda/pointwise.h"
#include "runtime/cuda/rope_kv.h"
#include "runtime/cuda/sampling.h"
#include "runtime/cuda/test_util.h"

namespace tessera::runtime::cuda {
namespace {

// Test values drawn from SplitMix64 (test_util.h).
class Rng : public test_util::SplitMix64 {
 public:
  using SplitMix64::SplitMix64;
  float Uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>((Next() >> 40) * 0x1.0p-24);
  }
};

std::vector<Bf16> RandomBf16(Rng& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::vector<Bf16> v(n);
  for (auto& x : v) x = FloatToBf16(rng.Uniform(lo, hi));
  return v;
}

float F(Bf16 b) { return Bf16ToFloat(b); }

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = QueryDevices();
    ASSERT_TRUE(devices.ok()) << "kernels_gpu_test needs a GPU: " << devices.status();
  }
};

// Compares bf16 results with a reference; returns the fraction that matched exactly.
double ExpectClose(const std::vector<Bf16>& got, const std::vector<float>& want, double rtol,
                   double atol, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  size_t exact = 0, bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double g = F(got[i]), w = want[i];
    const double err = std::fabs(g - w);
    if (g == static_cast<double>(RoundBf16(static_cast<float>(w)))) ++exact;
    if (!(err <= rtol * std::fabs(w) + atol)) {
      if (++bad <= 5) ADD_FAILURE() << what << ": element " << i << " is " << g << ", want " << w;
    }
    worst = std::max(worst, err);
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " out of tolerance; worst "
                     << worst;
  return got.empty() ? 1.0 : static_cast<double>(exact) / got.size();
}

// ---------------------------------------------------------------------------------------------
// Paged attention.

struct SeqSpec {
  int start = 0;  // Tokens already in KV.
  int rows = 1;   // New rows (their K/V are in the cache too, as after the KV-write kernel).
  std::vector<std::pair<int, int>> spans;  // Bidirectional spans, relative to start.
};

struct AttnCase {
  std::string name;
  int head_dim = 256, q_heads = 16, kv_heads = 8;
  int block_size = 16, num_layers = 2, layer = 1;
  int window = 0;
  float scale = 1.0f;
  bool decode = false;
  int num_splits = 1;  // 0: ChooseDecodeSplits with 132 SMs.
  int q_row_pad = 0;   // Extra elements per q row (q as a slice of a fused QKV buffer).
  std::vector<SeqSpec> seqs;
};

void RunAttentionCase(const AttnCase& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  Rng rng(seed);
  const int D = c.head_dim, hq = c.q_heads, hkv = c.kv_heads, bs = c.block_size, group = hq / hkv;
  const int nseq = static_cast<int>(c.seqs.size());

  // Block tables: distinct random block ids; blocks no query can see are released (-1).
  int max_blocks = 0, total_blocks = 0, total_rows = 0, max_rows = 0, max_kv = 0;
  for (const SeqSpec& s : c.seqs) {
    const int n = (s.start + s.rows + bs - 1) / bs;
    max_blocks = std::max(max_blocks, n);
    total_blocks += n;
    total_rows += s.rows;
    max_rows = std::max(max_rows, s.rows);
    max_kv = std::max(max_kv, s.start + s.rows);
  }
  const int num_blocks = total_blocks + 3;
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  for (int i = num_blocks - 1; i > 0; --i) std::swap(ids[i], ids[rng.Int(0, i)]);
  std::vector<int32_t> tables(static_cast<size_t>(nseq) * max_blocks,
                              12345678);  // Padding: never read.
  int next = 0;
  for (int s = 0; s < nseq; ++s) {
    const SeqSpec& sp = c.seqs[s];
    const int n = (sp.start + sp.rows + bs - 1) / bs;
    for (int j = 0; j < n; ++j) {
      const bool released = c.window > 0 && (j + 1) * bs <= sp.start - c.window + 1;
      tables[s * max_blocks + j] = released ? -1 : ids[next];
      ++next;
    }
  }

  const int64_t block_stride = static_cast<int64_t>(c.num_layers) * 2 * hkv * bs * D;
  const std::vector<Bf16> pool = RandomBf16(rng, static_cast<size_t>(num_blocks) * block_stride);
  auto kv_at = [&](int block, int kv, int head, int slot, int d) -> float {
    // Written out independently of PagedKvView::Offset:
    // [num_blocks][num_layers][2][kv_heads][block_size][head_dim].
    const int64_t i =
        ((((static_cast<int64_t>(block) * c.num_layers + c.layer) * 2 + kv) * hkv + head) * bs +
         slot) *
            D +
        d;
    return F(pool[i]);
  };

  const int64_t q_stride = static_cast<int64_t>(hq) * D + c.q_row_pad;
  const std::vector<Bf16> q = RandomBf16(rng, static_cast<size_t>(total_rows) * q_stride);
  std::vector<int32_t> row_start(nseq + 1, 0), start_pos(nseq);
  std::vector<int32_t> bidi_begin(total_rows, 0), bidi_end(total_rows, 0);
  bool any_span = false;
  for (int s = 0; s < nseq; ++s) {
    row_start[s + 1] = row_start[s] + c.seqs[s].rows;
    start_pos[s] = c.seqs[s].start;
    for (auto [b, e] : c.seqs[s].spans) {
      any_span = true;
      for (int r = b; r < e; ++r) {
        bidi_begin[row_start[s] + r] = c.seqs[s].start + b;
        bidi_end[row_start[s] + r] = c.seqs[s].start + e;
      }
    }
  }

  // Reference: softmax over the visible keys in double.
  std::vector<float> want(static_cast<size_t>(total_rows) * hq * D, 0.0f);
  std::vector<double> score, acc(D);
  for (int s = 0; s < nseq; ++s) {
    const SeqSpec& sp = c.seqs[s];
    const int kv_len = sp.start + sp.rows;
    for (int i = 0; i < sp.rows; ++i) {
      const int row = row_start[s] + i, qp = sp.start + i;
      for (int h = 0; h < hq; ++h) {
        const int kh = h / group;
        score.assign(kv_len, -INFINITY);
        double mx = -INFINITY;
        for (int k = 0; k < kv_len; ++k) {
          const bool in_window = c.window == 0 || qp - k < c.window;
          const bool causal_or_span = k <= qp || (k >= bidi_begin[row] && k < bidi_end[row]);
          if (!in_window || !causal_or_span) continue;
          const int block = tables[s * max_blocks + k / bs];
          if (block < 0) {
            ADD_FAILURE() << "test bug: visible key " << k << " in a released block";
            return;
          }
          double dot = 0.0;
          for (int d = 0; d < D; ++d)
            dot += F(q[row * q_stride + h * D + d]) * kv_at(block, 0, kh, k % bs, d);
          score[k] = dot * c.scale;
          mx = std::max(mx, score[k]);
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        double denom = 0.0;
        for (int k = 0; k < kv_len; ++k) {
          if (score[k] == -INFINITY) continue;
          const double p = std::exp(score[k] - mx);
          denom += p;
          const int block = tables[s * max_blocks + k / bs];
          for (int d = 0; d < D; ++d) acc[d] += p * kv_at(block, 1, kh, k % bs, d);
        }
        for (int d = 0; d < D; ++d)
          want[(static_cast<size_t>(row) * hq + h) * D + d] = denom > 0 ? acc[d] / denom : 0.0;
      }
    }
  }

  ASSERT_OK_AND_ASSIGN(d_pool, Upload(pool));
  ASSERT_OK_AND_ASSIGN(d_q, Upload(q));
  ASSERT_OK_AND_ASSIGN(d_out, DeviceBuffer::Allocate(sizeof(Bf16) * total_rows * hq * D));
  ASSERT_OK(d_out.Memset(0xff));  // NaN everywhere: a row the kernel forgets shows up.
  ASSERT_OK_AND_ASSIGN(d_row_start, Upload(row_start));
  ASSERT_OK_AND_ASSIGN(d_start_pos, Upload(start_pos));
  ASSERT_OK_AND_ASSIGN(d_tables, Upload(tables));
  ASSERT_OK_AND_ASSIGN(d_bb, Upload(bidi_begin));
  ASSERT_OK_AND_ASSIGN(d_be, Upload(bidi_end));

  AttentionParams p;
  p.q = d_q.as<Bf16>();
  p.q_row_stride = q_stride;
  p.out = d_out.as<Bf16>();
  p.out_row_stride = static_cast<int64_t>(hq) * D;
  p.num_seqs = nseq;
  p.total_rows = total_rows;
  p.num_q_heads = hq;
  p.kv.pool = d_pool.as<Bf16>();
  p.kv.num_blocks = num_blocks;
  p.kv.num_layers = c.num_layers;
  p.kv.layer = c.layer;
  p.kv.num_kv_heads = hkv;
  p.kv.block_size = bs;
  p.kv.head_dim = D;
  p.row_start = d_row_start.as<int32_t>();
  p.start_pos = d_start_pos.as<int32_t>();
  p.block_tables = d_tables.as<int32_t>();
  p.block_table_stride = max_blocks;
  if (any_span) {
    p.bidi_begin = d_bb.as<int32_t>();
    p.bidi_end = d_be.as<int32_t>();
  }
  p.window = c.window;
  p.scale = c.scale;
  p.max_rows_per_seq = max_rows;
  p.num_splits = c.num_splits > 0 ? c.num_splits : ChooseDecodeSplits(nseq, hkv, max_kv, 132);
  DeviceBuffer d_ws;
  if (p.num_splits > 1) {
    ASSERT_OK_AND_ASSIGN(
        ws, DeviceBuffer::Allocate(sizeof(float) *
                                   AttentionWorkspaceFloats(total_rows, hq, D, p.num_splits)));
    d_ws = std::move(ws);
    p.workspace = d_ws.as<float>();
  }
  ASSERT_OK(c.decode ? LaunchPagedDecodeAttention(p, nullptr)
                     : LaunchPagedPrefillAttention(p, nullptr));
  ASSERT_OK(Synchronize());
  ASSERT_OK_AND_ASSIGN(got, Download<Bf16>(d_out, want.size()));
  ExpectClose(got, want, 1.0 / 256, 2e-3, absl::StrCat(c.name, " splits=", p.num_splits));
}

std::vector<SeqSpec> DecodeSeqs(std::initializer_list<int> kv_lens) {
  std::vector<SeqSpec> v;
  for (int n : kv_lens) v.push_back(SeqSpec{n - 1, 1, {}});
  return v;
}

// Gemma 4 12B sliding layers, decode: lengths around block and window edges.
TEST_F(GpuTest, DecodeSlidingHeadDim256) {
  const float s = 1.0f / 16;  // 1/sqrt(256): a soft softmax exercises the weighted sum.
  uint64_t seed = 1;
  for (int bs : {16, 32, 7}) {
    for (int splits : {1, 4, 0}) {
      AttnCase c{absl::StrCat("decode d256 bs", bs, " splits", splits),
                 256,
                 16,
                 8,
                 bs,
                 2,
                 1,
                 1024,
                 s,
                 true,
                 splits};
      c.seqs = DecodeSeqs({1, 2, 17, 1000, 1024, 1025, 1031, 3000});
      RunAttentionCase(c, seed++);
    }
  }
  AttnCase gemma{"decode d256 scale 1.0", 256, 16, 8, 16, 1, 0, 1024, 1.0f, true, 0, 768};
  gemma.seqs = DecodeSeqs({5, 1500});
  RunAttentionCase(gemma, seed++);
}

// Gemma 4 12B global layers (MQA 16:1, causal), decode, up to a 32k context.
TEST_F(GpuTest, DecodeGlobalHeadDim512) {
  const float s = 1.0f / std::sqrt(512.0f);
  uint64_t seed = 100;
  for (int splits : {1, 8, 0}) {
    AttnCase c{absl::StrCat("decode d512 splits", splits),
               512,
               16,
               1,
               16,
               2,
               0,
               0,
               s,
               true,
               splits,
               2 * 512};
    c.seqs = DecodeSeqs({1, 5, 16, 33, 777, 4097});
    RunAttentionCase(c, seed++);
  }
  AttnCase lng{"decode d512 32k", 512, 16, 1, 32, 1, 0, 0, s, true, 0};
  lng.seqs = DecodeSeqs({32768, 20000});
  RunAttentionCase(lng, seed++);
  AttnCase one{"decode d512 32k one split", 512, 16, 1, 64, 1, 0, 0, s, true, 1};
  one.seqs = DecodeSeqs({32768});
  RunAttentionCase(one, seed++);
}

// Prefill chunks at any offset, windows, image spans, odd block sizes, mixed batches.
TEST_F(GpuTest, PrefillSlidingHeadDim256) {
  const float s = 1.0f / 16;
  uint64_t seed = 200;
  for (int bs : {16, 5}) {
    for (int splits : {1, 3}) {
      AttnCase c{absl::StrCat("prefill d256 bs", bs, " splits", splits),
                 256,
                 16,
                 8,
                 bs,
                 2,
                 1,
                 1024,
                 s,
                 false,
                 splits,
                 1024};
      c.seqs = {SeqSpec{0, 37, {{3, 20}}},                 // First chunk with an image span.
                SeqSpec{1000, 100, {{10, 40}, {60, 61}}},  // Crosses the window edge; two spans.
                SeqSpec{2047, 1, {}},                      // A decode row in the same batch.
                SeqSpec{3000, 9, {{0, 9}}}};               // A whole chunk that is one image.
      RunAttentionCase(c, seed++);
    }
  }
  AttnCase smallwin{"prefill d256 window 64", 256, 4, 2, 8, 1, 0, 64, s, false, 1};
  smallwin.seqs = {SeqSpec{200, 70, {{5, 50}}}, SeqSpec{0, 130, {}}};
  RunAttentionCase(smallwin, seed++);
}

TEST_F(GpuTest, PrefillGlobalHeadDim512) {
  const float s = 1.0f / std::sqrt(512.0f);
  uint64_t seed = 300;
  for (int splits : {1, 3}) {
    AttnCase c{absl::StrCat("prefill d512 splits", splits),
               512,
               16,
               1,
               16,
               2,
               1,
               0,
               s,
               false,
               splits,
               2 * 512};
    c.seqs = {SeqSpec{0, 64, {}}, SeqSpec{500, 33, {}}, SeqSpec{4000, 16, {}}, SeqSpec{9, 1, {}}};
    RunAttentionCase(c, seed++);
  }
}

// The gemma4-tiny fixture: head_dim 16 (2:1, window 8) and 32 (4:1, causal).
TEST_F(GpuTest, TinyFixtureShapes) {
  uint64_t seed = 400;
  for (int bs : {1, 3, 4, 16}) {
    AttnCase slide{
        absl::StrCat("tiny d16 prefill bs", bs), 16, 4, 2, bs, 5, 3, 8, 0.25f, false, 1, 32 + 32};
    slide.seqs = {SeqSpec{0, 20, {{2, 12}}}, SeqSpec{13, 7, {{1, 4}}}, SeqSpec{40, 1, {}}};
    RunAttentionCase(slide, seed++);
    AttnCase glob{absl::StrCat("tiny d32 prefill bs", bs),
                  32,
                  4,
                  1,
                  bs,
                  1,
                  0,
                  0,
                  1.0f,
                  false,
                  bs == 3 ? 2 : 1,
                  32 + 32};
    glob.seqs = {SeqSpec{0, 20, {}}, SeqSpec{13, 7, {}}, SeqSpec{40, 1, {}}};
    RunAttentionCase(glob, seed++);
    AttnCase dec16{absl::StrCat("tiny d16 decode bs", bs), 16, 4, 2, bs, 5, 4, 8, 1.0f, true, 0};
    dec16.seqs = DecodeSeqs({1, 8, 9, 100});
    RunAttentionCase(dec16, seed++);
    AttnCase dec32{absl::StrCat("tiny d32 decode bs", bs), 32, 4, 1, bs, 1, 0, 0, 0.2f, true, 0};
    dec32.seqs = DecodeSeqs({1, 8, 9, 2000});
    RunAttentionCase(dec32, seed++);
  }
}

// The gemma4-quant-s GGUF fixture (testdata/gguf): head_dim 64 (2:1, window 8) and 128 (4:1,
// causal).
TEST_F(GpuTest, QuantFixtureShapes) {
  uint64_t seed = 450;
  for (int bs : {1, 4, 16}) {
    AttnCase slide{
        absl::StrCat("quant-s d64 prefill bs", bs), 64, 4, 2, bs, 5, 3, 8, 0.125f, false, 1, 32};
    slide.seqs = {SeqSpec{0, 20, {{2, 12}}}, SeqSpec{13, 7, {{1, 4}}}, SeqSpec{40, 1, {}}};
    RunAttentionCase(slide, seed++);
    AttnCase glob{absl::StrCat("quant-s d128 prefill bs", bs),
                  128,
                  4,
                  1,
                  bs,
                  1,
                  0,
                  0,
                  1.0f,
                  false,
                  bs == 4 ? 2 : 1,
                  64};
    glob.seqs = {SeqSpec{0, 20, {}}, SeqSpec{13, 7, {}}, SeqSpec{40, 1, {}}};
    RunAttentionCase(glob, seed++);
    AttnCase dec64{absl::StrCat("quant-s d64 decode bs", bs), 64, 4, 2, bs, 5, 4, 8, 1.0f, true, 0};
    dec64.seqs = DecodeSeqs({1, 8, 9, 100});
    RunAttentionCase(dec64, seed++);
    AttnCase dec128{
        absl::StrCat("quant-s d128 decode bs", bs), 128, 4, 1, bs, 1, 0, 0, 0.2f, true, 0};
    dec128.seqs = DecodeSeqs({1, 8, 9, 1000});
    RunAttentionCase(dec128, seed++);
  }
}

// Random batches: random offsets, lengths, spans and splits, every supported shape.
TEST_F(GpuTest, RandomBatches) {
  Rng rng(500);
  struct Shape {
    int d, hq, hkv, window;
  };
  const Shape shapes[] = {{256, 16, 8, 1024}, {512, 16, 1, 0}, {16, 4, 2, 8}, {32, 4, 1, 0}};
  for (int trial = 0; trial < 12; ++trial) {
    const Shape sh = shapes[trial % 4];
    AttnCase c;
    c.name = absl::StrCat("random trial ", trial);
    c.head_dim = sh.d;
    c.q_heads = sh.hq;
    c.kv_heads = sh.hkv;
    c.window = sh.window;
    c.block_size = std::vector<int>{1, 2, 8, 16, 32, 64}[rng.Int(0, 5)];
    c.num_layers = rng.Int(1, 3);
    c.layer = rng.Int(0, c.num_layers - 1);
    c.scale = 1.0f / std::sqrt(static_cast<float>(sh.d)) * rng.Uniform(0.5f, 4.0f);
    c.decode = trial % 3 == 0;
    c.num_splits = rng.Int(0, 4);
    const int nseq = rng.Int(1, 5);
    for (int s = 0; s < nseq; ++s) {
      SeqSpec sp;
      sp.start = rng.Int(0, 2500);
      sp.rows = c.decode ? 1 : rng.Int(1, 40);
      if (!c.decode && sh.window > 0 && sp.rows >= 4 && rng.Int(0, 1)) {
        const int b = rng.Int(0, sp.rows - 2);
        sp.spans.push_back({b, rng.Int(b + 1, sp.rows)});
      }
      c.seqs.push_back(sp);
    }
    RunAttentionCase(c, 600 + trial);
  }
}

// ---------------------------------------------------------------------------------------------
// Fused QK-norm + RoPE + V-norm + KV write.

struct RopeCase {
  std::string name;
  int head_dim, q_heads, kv_heads, rotated_pairs;
  float theta;
  bool k_eq_v;
  int rows, block_size, num_layers, layer;
  int max_pos;
};

void RunRopeCase(const RopeCase& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  Rng rng(seed);
  const int D = c.head_dim, hq = c.q_heads, hkv = c.kv_heads, half = D / 2;
  const int64_t q_off = 0, k_off = static_cast<int64_t>(hq) * D;
  const int64_t v_off = c.k_eq_v ? k_off : k_off + static_cast<int64_t>(hkv) * D;
  const int64_t stride = v_off + static_cast<int64_t>(hkv) * D + 8;  // Padding between rows.
  const std::vector<Bf16> qkv = RandomBf16(rng, static_cast<size_t>(c.rows) * stride, -3.0f, 3.0f);
  const std::vector<Bf16> qw = RandomBf16(rng, D, 0.5f, 1.5f), kw = RandomBf16(rng, D, 0.5f, 1.5f);
  const std::vector<float> inv_freq = RopeInvFreq(D, c.theta, c.rotated_pairs);
  const int num_blocks = (c.rows + c.block_size - 1) / c.block_size * 2 + 1;
  std::vector<int64_t> slots(static_cast<size_t>(num_blocks) * c.block_size);
  std::iota(slots.begin(), slots.end(), 0);
  for (int i = static_cast<int>(slots.size()) - 1; i > 0; --i)
    std::swap(slots[i], slots[rng.Int(0, i)]);
  slots.resize(c.rows);
  for (int r = 0; r < c.rows; ++r)
    if (rng.Int(0, 9) == 0) slots[r] = -1;  // Rows that write no KV.
  std::vector<int32_t> positions(c.rows);
  for (auto& p : positions) p = rng.Int(0, c.max_pos);
  const int64_t block_stride = static_cast<int64_t>(c.num_layers) * 2 * hkv * c.block_size * D;
  const std::vector<Bf16> pool0 = RandomBf16(rng, static_cast<size_t>(num_blocks) * block_stride);

  // Reference, with the reference implementation's roundings.
  std::vector<float> want_q(static_cast<size_t>(c.rows) * hq * D);
  std::vector<float> want_pool(pool0.size());
  for (size_t i = 0; i < pool0.size(); ++i) want_pool[i] = F(pool0[i]);
  auto norm_rope = [&](const Bf16* x, const Bf16* w, int pos, bool rope, float* out) {
    double ss = 0;
    for (int d = 0; d < D; ++d) ss += static_cast<double>(F(x[d])) * F(x[d]);
    const double inv = 1.0 / std::sqrt(ss / D + 1e-6);
    std::vector<float> y(D);
    for (int d = 0; d < D; ++d)
      y[d] = w ? RoundBf16(static_cast<float>(F(x[d]) * inv * F(w[d])))
               : static_cast<float>(F(x[d]) * inv);
    if (!rope) {
      for (int d = 0; d < D; ++d) out[d] = y[d];
      return;
    }
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[i];
      const double cs = RoundBf16(static_cast<float>(std::cos(static_cast<double>(angle))));
      const double sn = RoundBf16(static_cast<float>(std::sin(static_cast<double>(angle))));
      out[i] = static_cast<float>(y[i] * cs - y[i + half] * sn);
      out[i + half] = static_cast<float>(y[i + half] * cs + y[i] * sn);
    }
  };
  std::vector<float> tmp(D);
  for (int r = 0; r < c.rows; ++r) {
    const Bf16* row = qkv.data() + r * stride;
    for (int h = 0; h < hq; ++h)
      norm_rope(row + q_off + h * D, qw.data(), positions[r], true,
                &want_q[(static_cast<size_t>(r) * hq + h) * D]);
    if (slots[r] < 0) continue;
    const int block = static_cast<int>(slots[r] / c.block_size),
              slot = static_cast<int>(slots[r] % c.block_size);
    for (int h = 0; h < hkv; ++h) {
      for (int kv = 0; kv < 2; ++kv) {
        norm_rope(row + (kv == 0 ? k_off : v_off) + h * D, kv == 0 ? kw.data() : nullptr,
                  positions[r], kv == 0, tmp.data());
        const int64_t base =
            ((((static_cast<int64_t>(block) * c.num_layers + c.layer) * 2 + kv) * hkv + h) *
                 c.block_size +
             slot) *
            D;
        for (int d = 0; d < D; ++d) want_pool[base + d] = tmp[d];
      }
    }
  }

  ASSERT_OK_AND_ASSIGN(d_qkv, Upload(qkv));
  ASSERT_OK_AND_ASSIGN(d_qw, Upload(qw));
  ASSERT_OK_AND_ASSIGN(d_kw, Upload(kw));
  ASSERT_OK_AND_ASSIGN(d_freq, Upload(inv_freq));
  ASSERT_OK_AND_ASSIGN(d_pos, Upload(positions));
  ASSERT_OK_AND_ASSIGN(d_slots, Upload(slots));
  ASSERT_OK_AND_ASSIGN(d_pool, Upload(pool0));
  ASSERT_OK_AND_ASSIGN(d_q, DeviceBuffer::Allocate(sizeof(Bf16) * want_q.size()));
  RopeKvParams p;
  p.qkv = d_qkv.as<Bf16>();
  p.qkv_row_stride = stride;
  p.q_offset = q_off;
  p.k_offset = k_off;
  p.v_offset = v_off;
  p.q_out = d_q.as<Bf16>();
  p.q_out_row_stride = static_cast<int64_t>(hq) * D;
  p.q_norm_weight = d_qw.as<Bf16>();
  p.k_norm_weight = d_kw.as<Bf16>();
  p.inv_freq = d_freq.as<float>();
  p.positions = d_pos.as<int32_t>();
  p.slot_mapping = d_slots.as<int64_t>();
  p.kv.pool = d_pool.as<Bf16>();
  p.kv.num_blocks = num_blocks;
  p.kv.num_layers = c.num_layers;
  p.kv.layer = c.layer;
  p.kv.num_kv_heads = hkv;
  p.kv.block_size = c.block_size;
  p.kv.head_dim = D;
  p.num_rows = c.rows;
  p.num_q_heads = hq;
  ASSERT_OK(LaunchRopeKvWrite(p, nullptr));
  ASSERT_OK(Synchronize());
  ASSERT_OK_AND_ASSIGN(got_q, Download<Bf16>(d_q, want_q.size()));
  ASSERT_OK_AND_ASSIGN(got_pool, Download<Bf16>(d_pool, want_pool.size()));
  EXPECT_GE(ExpectClose(got_q, want_q, 1.0 / 64, 1.0 / 256, "q"), 0.97);
  // The whole pool: written slots match, every other value is untouched.
  EXPECT_GE(ExpectClose(got_pool, want_pool, 1.0 / 64, 1.0 / 256, "pool"), 0.97);
}

TEST_F(GpuTest, RopeKvWrite) {
  uint64_t seed = 700;
  const RopeCase cases[] = {
      {"sliding d256 full rope", 256, 16, 8, 128, 1e4f, false, 37, 16, 2, 1, 262143},
      {"global d512 partial rope K=V", 512, 16, 1, 64, 1e6f, true, 29, 16, 2, 0, 262143},
      {"global d512 separate V", 512, 16, 1, 64, 1e6f, false, 5, 32, 1, 0, 5000},
      {"tiny d16", 16, 4, 2, 8, 1e4f, false, 50, 4, 5, 4, 4095},
      {"tiny d32 partial K=V", 32, 4, 1, 4, 1e6f, true, 50, 3, 1, 0, 4095},
      {"d256 block 1", 256, 16, 8, 128, 1e4f, false, 9, 1, 1, 0, 100},
      {"quant-s d64", 64, 4, 2, 32, 1e4f, false, 20, 16, 5, 2, 4095},
      {"quant-s d128 partial K=V", 128, 4, 1, 16, 1e6f, true, 20, 16, 1, 0, 4095},
  };
  for (const RopeCase& c : cases) RunRopeCase(c, seed++);
}

// ---------------------------------------------------------------------------------------------
// RMSNorm family.

double RmsInv(const float* x, int n) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  return 1.0 / std::sqrt(ss / n + 1e-6);
}

TEST_F(GpuTest, RmsNorm) {
  Rng rng(800);
  for (int dim : {7, 64, 100, 3840, 5000}) {
    for (int rows : {1, 5, 33}) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE(absl::StrCat("dim ", dim, " rows ", rows, in_place ? " in place" : ""));
        const int64_t stride = dim + 3;
        const std::vector<Bf16> x = RandomBf16(rng, rows * stride, -4.0f, 4.0f),
                                w = RandomBf16(rng, dim, -2.0f, 2.0f);
        std::vector<float> want(rows * dim);
        std::vector<float> xr(dim);
        for (int r = 0; r < rows; ++r) {
          for (int i = 0; i < dim; ++i) xr[i] = F(x[r * stride + i]);
          const double inv = RmsInv(xr.data(), dim);
          for (int i = 0; i < dim; ++i)
            want[r * dim + i] = static_cast<float>(xr[i] * inv * F(w[i]));
        }
        ASSERT_OK_AND_ASSIGN(d_x, Upload(x));
        ASSERT_OK_AND_ASSIGN(d_w, Upload(w));
        ASSERT_OK_AND_ASSIGN(d_o, DeviceBuffer::Allocate(sizeof(Bf16) * rows * stride));
        RmsNormParams p;
        p.in = d_x.as<Bf16>();
        p.in_row_stride = stride;
        p.weight = d_w.as<Bf16>();
        p.out = in_place ? d_x.as<Bf16>() : d_o.as<Bf16>();
        p.out_row_stride = stride;
        p.rows = rows;
        p.dim = dim;
        ASSERT_OK(LaunchRmsNorm(p, nullptr));
        ASSERT_OK(Synchronize());
        ASSERT_OK_AND_ASSIGN(raw, Download<Bf16>(in_place ? d_x : d_o, rows * stride));
        std::vector<Bf16> got(rows * dim);
        for (int r = 0; r < rows; ++r)
          for (int i = 0; i < dim; ++i) got[r * dim + i] = raw[r * stride + i];
        EXPECT_GE(ExpectClose(got, want, 1.0 / 128, 1.0 / 256, "rms"), 0.97);
      }
    }
  }
}

TEST_F(GpuTest, ResidualRmsNorm) {
  Rng rng(900);
  for (int dim : {64, 3840, 77}) {
    for (int variant = 0; variant < 3; ++variant) {
      // 0: post-attention + fused pre-FFW norm; 1: post-FFW with layer scalar + next input norm;
      // 2: post-FFW with layer scalar, no output (last layer before the final norm).
      const bool scalar = variant >= 1, out = variant <= 1;
      const int rows = 9;
      SCOPED_TRACE(absl::StrCat("dim ", dim, " variant ", variant));
      const std::vector<Bf16> y = RandomBf16(rng, rows * dim, -8.0f, 8.0f),
                              h = RandomBf16(rng, rows * dim, -4.0f, 4.0f);
      const std::vector<Bf16> wy = RandomBf16(rng, dim, 0.0f, 2.0f),
                              wo = RandomBf16(rng, dim, 0.0f, 2.0f);
      const std::vector<Bf16> ls = {FloatToBf16(rng.Uniform(0.1f, 2.0f))};
      std::vector<float> want_h(rows * dim), want_o(rows * dim);
      std::vector<float> yr(dim);
      for (int r = 0; r < rows; ++r) {
        for (int i = 0; i < dim; ++i) yr[i] = F(y[r * dim + i]);
        const double inv = RmsInv(yr.data(), dim);
        for (int i = 0; i < dim; ++i) {
          float nh =
              RoundBf16(F(h[r * dim + i]) + RoundBf16(static_cast<float>(yr[i] * inv * F(wy[i]))));
          if (scalar) nh = RoundBf16(nh * F(ls[0]));
          want_h[r * dim + i] = nh;
        }
        const double inv_h = RmsInv(&want_h[r * dim], dim);
        for (int i = 0; i < dim; ++i)
          want_o[r * dim + i] = static_cast<float>(want_h[r * dim + i] * inv_h * F(wo[i]));
      }
      ASSERT_OK_AND_ASSIGN(d_y, Upload(y));
      ASSERT_OK_AND_ASSIGN(d_h, Upload(h));
      ASSERT_OK_AND_ASSIGN(d_wy, Upload(wy));
      ASSERT_OK_AND_ASSIGN(d_wo, Upload(wo));
      ASSERT_OK_AND_ASSIGN(d_ls, Upload(ls));
      ASSERT_OK_AND_ASSIGN(d_o, DeviceBuffer::Allocate(sizeof(Bf16) * rows * dim));
      ResidualRmsNormParams p;
      p.y = d_y.as<Bf16>();
      p.y_row_stride = dim;
      p.y_weight = d_wy.as<Bf16>();
      p.residual = d_h.as<Bf16>();
      p.residual_row_stride = dim;
      if (scalar) p.layer_scalar = d_ls.as<Bf16>();
      if (out) {
        p.out_weight = d_wo.as<Bf16>();
        p.out = d_o.as<Bf16>();
        p.out_row_stride = dim;
      }
      p.rows = rows;
      p.dim = dim;
      ASSERT_OK(LaunchResidualRmsNorm(p, nullptr));
      ASSERT_OK(Synchronize());
      ASSERT_OK_AND_ASSIGN(got_h, Download<Bf16>(d_h, rows * dim));
      EXPECT_GE(ExpectClose(got_h, want_h, 1.0 / 64, 1.0 / 256, "residual"), 0.97);
      if (out) {
        ASSERT_OK_AND_ASSIGN(got_o, Download<Bf16>(d_o, rows * dim));
        EXPECT_GE(ExpectClose(got_o, want_o, 1.0 / 64, 1.0 / 256, "next norm"), 0.97);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels.

TEST_F(GpuTest, Geglu) {
  Rng rng(1000);
  for (int dim : {128, 15360, 33}) {
    for (int rows : {1, 7}) {
      SCOPED_TRACE(absl::StrCat("dim ", dim, " rows ", rows));
      const int64_t stride = 2 * dim + 16;
      const std::vector<Bf16> in = RandomBf16(rng, rows * stride, -6.0f, 6.0f);
      std::vector<float> want(rows * dim);
      for (int r = 0; r < rows; ++r) {
        for (int i = 0; i < dim; ++i) {
          const double x = F(in[r * stride + i]);
          const double g =
              0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
          want[r * dim + i] = static_cast<float>(RoundBf16(static_cast<float>(g)) *
                                                 F(in[r * stride + dim + 8 + i]));
        }
      }
      ASSERT_OK_AND_ASSIGN(d_in, Upload(in));
      ASSERT_OK_AND_ASSIGN(d_out, DeviceBuffer::Allocate(sizeof(Bf16) * rows * dim));
      GegluParams p;
      p.in = d_in.as<Bf16>();
      p.in_row_stride = stride;
      p.up_offset = dim + 8;
      p.out = d_out.as<Bf16>();
      p.out_row_stride = dim;
      p.rows = rows;
      p.dim = dim;
      ASSERT_OK(LaunchGeglu(p, nullptr));
      ASSERT_OK(Synchronize());
      ASSERT_OK_AND_ASSIGN(got, Download<Bf16>(d_out, rows * dim));
      // No bit-exactness floor here: for x < -3, 1 + tanh(.) cancels in fp32 (as in the reference
      // implementation, which also computes in fp32), so tiny outputs (|gelu| < 1e-6) differ from
      // the fp64 reference in relative terms while the absolute error stays below 1e-7.
      ExpectClose(got, want, 1.0 / 64, 1.0 / 256, "geglu");
    }
  }
}

TEST_F(GpuTest, SoftcapInPlace) {
  Rng rng(1100);
  for (int cols : {512, 262144, 1000}) {
    const int rows = 3;
    const int64_t stride = cols + 5;
    std::vector<float> x(rows * stride);
    for (auto& v : x) v = rng.Uniform(-200.0f, 200.0f);
    ASSERT_OK_AND_ASSIGN(d_x, Upload(x));
    SoftcapParams p;
    p.logits = d_x.as<float>();
    p.row_stride = stride;
    p.rows = rows;
    p.cols = cols;
    p.cap = 30.0f;
    ASSERT_OK(LaunchSoftcap(p, nullptr));
    ASSERT_OK(Synchronize());
    ASSERT_OK_AND_ASSIGN(got, Download<float>(d_x, x.size()));
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < stride; ++i) {
        const size_t k = r * stride + i;
        const double want = i < cols ? 30.0 * std::tanh(x[k] / 30.0) : x[k];  // Padding untouched.
        ASSERT_NEAR(got[k], want, 30.0 * 1e-5) << "row " << r << " col " << i;
      }
    }
  }
}

TEST_F(GpuTest, EmbedTokens) {
  Rng rng(1200);
  for (auto [vocab, hidden] :
       std::vector<std::pair<int, int>>{{512, 64}, {262144, 64}, {4096, 3840}}) {
    SCOPED_TRACE(absl::StrCat("vocab ", vocab, " hidden ", hidden));
    const std::vector<Bf16> table =
        RandomBf16(rng, static_cast<size_t>(vocab) * hidden, -0.1f, 0.1f);
    std::vector<int32_t> ids = {0, vocab - 1, 5, -1, vocab, 7, 7};
    for (int i = 0; i < 20; ++i) ids.push_back(rng.Int(0, vocab - 1));
    const int rows = static_cast<int>(ids.size());
    const float scale = RoundBf16(std::sqrt(static_cast<float>(hidden)));
    std::vector<Bf16> init(rows * hidden, FloatToBf16(-7.0f));
    ASSERT_OK_AND_ASSIGN(d_table, Upload(table));
    ASSERT_OK_AND_ASSIGN(d_ids, Upload(ids));
    ASSERT_OK_AND_ASSIGN(d_out, Upload(init));
    EmbedParams p;
    p.ids = d_ids.as<int32_t>();
    p.table = d_table.as<Bf16>();
    p.vocab = vocab;
    p.hidden = hidden;
    p.out = d_out.as<Bf16>();
    p.out_row_stride = hidden;
    p.rows = rows;
    p.scale = scale;
    ASSERT_OK(LaunchEmbedTokens(p, nullptr));
    ASSERT_OK(Synchronize());
    ASSERT_OK_AND_ASSIGN(got, Download<Bf16>(d_out, rows * hidden));
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < hidden; ++i) {
        float want;
        if (ids[r] < 0)
          want = -7.0f;  // Media row: untouched.
        else if (ids[r] >= vocab)
          want = 0.0f;  // Out of range: zeros.
        else
          want = RoundBf16(F(table[static_cast<size_t>(ids[r]) * hidden + i]) * scale);
        ASSERT_EQ(F(got[r * hidden + i]), want)
            << "row " << r << " (id " << ids[r] << ") dim " << i;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Greedy sampling.

TEST_F(GpuTest, Argmax) {
  Rng rng(1300);
  for (int vocab : {1, 7, 512, 262144}) {
    const int rows = 6;
    const int64_t stride = vocab + 3;
    std::vector<float> x(rows * stride);
    for (auto& v : x) v = rng.Uniform(-30.0f, 30.0f);
    // Row 1: a tie at the maximum (lowest id wins); row 2: NaNs, never chosen; row 3: all NaN;
    // row 4: the maximum in the last column; row 5: -inf everywhere but one entry.
    if (vocab >= 7) {
      x[1 * stride + 5] = 100.0f;
      x[1 * stride + 2] = 100.0f;
      x[2 * stride + 0] = NAN;
      x[2 * stride + 4] = NAN;
      x[4 * stride + vocab - 1] = 1000.0f;
      for (int i = 0; i < vocab; ++i) x[5 * stride + i] = -INFINITY;
      x[5 * stride + 6] = -1.0f;
    }
    for (int i = 0; i < vocab; ++i) x[3 * stride + i] = NAN;
    std::vector<int32_t> want(rows, -1);
    std::vector<float> want_v(rows, 0.0f);
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < vocab; ++i) {
        const float v = x[r * stride + i];
        if (std::isnan(v)) continue;
        if (want[r] < 0 || v > want_v[r]) {
          want[r] = i;
          want_v[r] = v;
        }
      }
    }
    ASSERT_OK_AND_ASSIGN(d_x, Upload(x));
    ASSERT_OK_AND_ASSIGN(d_tok, DeviceBuffer::Allocate(sizeof(int32_t) * rows));
    ASSERT_OK_AND_ASSIGN(d_val, DeviceBuffer::Allocate(sizeof(float) * rows));
    ArgmaxParams p;
    p.logits = d_x.as<float>();
    p.row_stride = stride;
    p.rows = rows;
    p.vocab = vocab;
    p.out_token = d_tok.as<int32_t>();
    p.out_value = d_val.as<float>();
    ASSERT_OK(LaunchArgmax(p, nullptr));
    ASSERT_OK(Synchronize());
    ASSERT_OK_AND_ASSIGN(tok, Download<int32_t>(d_tok, rows));
    ASSERT_OK_AND_ASSIGN(val, Download<float>(d_val, rows));
    for (int r = 0; r < rows; ++r) {
      EXPECT_EQ(tok[r], want[r]) << "vocab " << vocab << " row " << r;
      if (want[r] >= 0) EXPECT_EQ(val[r], want_v[r]) << "vocab " << vocab << " row " << r;
    }
  }
}

}  // namespace
}  // namespace tessera::runtime::cuda
