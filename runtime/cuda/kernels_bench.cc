// Kernel benchmark for a GPU host: decode attention in GB/s at 4k and 32k contexts next to the
// device-to-device copy bandwidth measured in the same run, plus prefill attention and the
// per-layer small kernels at Gemma 4 12B shapes, in microseconds. Prints a markdown table (and
// writes it to
// --out=FILE). Inputs are constant bf16 values in GPU memory: timing does not depend on them.
//
//   kernels_bench [--out=FILE] [--quick]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/norm.h"
#include "runtime/cuda/pointwise.h"
#include "runtime/cuda/rope_kv.h"

namespace tessera::runtime::cuda {
namespace {

struct Table {
  std::vector<std::string> rows;
  void Add(const std::string& r) {
    std::printf("%s\n", r.c_str());
    std::fflush(stdout);
    rows.push_back(r);
  }
};

#define BENCH_CHECK(expr)                                                                \
  do {                                                                                   \
    const absl::Status _s = (expr);                                                      \
    if (!_s.ok()) {                                                                      \
      std::fprintf(stderr, "%s failed: %s\n", #expr, std::string(_s.message()).c_str()); \
      return _s;                                                                         \
    }                                                                                    \
  } while (0)

struct LayerShape {
  const char* name;
  int head_dim, q_heads, kv_heads, window;
};

// Decode attention for `batch` sequences of `ctx` tokens each. Bytes are the K and V rows the
// kernel must read (visible keys only: the sliding window caps them at 1024) plus q and out.
absl::Status BenchDecode(const LayerShape& s, int batch, int ctx, int sms, double copy_gbps,
                         Table& t) {
  const int bs = 16;
  const int blocks_per_seq = (ctx + bs - 1) / bs;
  const int visible = s.window > 0 ? std::min(ctx, s.window) : ctx;
  // Only blocks a query can see are allocated; earlier ones are released (kReleasedBlock).
  const int first_live = s.window > 0 ? std::max(0, (ctx - s.window)) / bs : 0;
  const int live_per_seq = blocks_per_seq - first_live;
  const int num_blocks = batch * live_per_seq;
  const int64_t block_elems = 2LL * s.kv_heads * bs * s.head_dim;
  auto pool = DeviceBuffer::Allocate(sizeof(Bf16) * num_blocks * block_elems);
  if (!pool.ok()) return pool.status();
  BENCH_CHECK(pool->Memset(0x3c));
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(42));
  std::vector<int32_t> tables(static_cast<size_t>(batch) * blocks_per_seq, -1);
  for (int b = 0, next = 0; b < batch; ++b)
    for (int j = first_live; j < blocks_per_seq; ++j) tables[b * blocks_per_seq + j] = ids[next++];
  std::vector<int32_t> row_start(batch + 1), start_pos(batch, ctx - 1);
  std::iota(row_start.begin(), row_start.end(), 0);
  const int64_t qdim = static_cast<int64_t>(s.q_heads) * s.head_dim;
  auto q = DeviceBuffer::Allocate(sizeof(Bf16) * batch * qdim);
  auto out = DeviceBuffer::Allocate(sizeof(Bf16) * batch * qdim);
  auto d_tables = Upload(tables);
  auto d_rs = Upload(row_start);
  auto d_sp = Upload(start_pos);
  if (!q.ok() || !out.ok() || !d_tables.ok() || !d_rs.ok() || !d_sp.ok()) {
    return absl::UnavailableError("decode bench: allocation failed");
  }
  BENCH_CHECK(q->Memset(0x3c));
  AttentionParams p;
  p.q = q->as<Bf16>();
  p.q_row_stride = qdim;
  p.out = out->as<Bf16>();
  p.out_row_stride = qdim;
  p.num_seqs = batch;
  p.total_rows = batch;
  p.num_q_heads = s.q_heads;
  p.kv = PagedKvView{pool->as<Bf16>(), num_blocks, 1, 0, s.kv_heads, bs, s.head_dim};
  p.row_start = d_rs->as<int32_t>();
  p.start_pos = d_sp->as<int32_t>();
  p.block_tables = d_tables->as<int32_t>();
  p.block_table_stride = blocks_per_seq;
  p.window = s.window;
  p.scale = 1.0f;
  p.num_splits = ChooseDecodeSplits(batch, s.kv_heads, visible, sms);
  DeviceBuffer ws;
  if (p.num_splits > 1) {
    auto w = DeviceBuffer::Allocate(
        sizeof(float) * AttentionWorkspaceFloats(batch, s.q_heads, s.head_dim, p.num_splits));
    if (!w.ok()) return w.status();
    ws = std::move(*w);
    p.workspace = ws.as<float>();
  }
  auto ms = TimeMs([&]() { return LaunchPagedDecodeAttention(p, nullptr); }, 50);
  if (!ms.ok()) return ms.status();
  const double bytes =
      2.0 * batch * (static_cast<double>(visible) * 2 * s.kv_heads * s.head_dim + 2 * qdim);
  const double gbps = bytes / (*ms * 1e-3) / 1e9;
  t.Add(
      absl::StrFormat("| decode attention %s | batch %d, ctx %d, splits %d | %.1f us | %.0f GB/s | "
                      "%.0f%% of copy |",
                      s.name, batch, ctx, p.num_splits, *ms * 1e3, gbps, 100.0 * gbps / copy_gbps));
  return absl::OkStatus();
}

// One prefill chunk of `rows` new rows at offset `start` (K/V of the chunk already in the cache).
absl::Status BenchPrefill(const LayerShape& s, int rows, int start, Table& t) {
  const int bs = 16, ctx = start + rows;
  const int blocks = (ctx + bs - 1) / bs;
  const int64_t block_elems = 2LL * s.kv_heads * bs * s.head_dim;
  auto pool = DeviceBuffer::Allocate(sizeof(Bf16) * blocks * block_elems);
  if (!pool.ok()) return pool.status();
  BENCH_CHECK(pool->Memset(0x3c));
  std::vector<int32_t> tables(blocks);
  std::iota(tables.begin(), tables.end(), 0);
  const std::vector<int32_t> row_start = {0, rows}, start_pos = {start};
  const int64_t qdim = static_cast<int64_t>(s.q_heads) * s.head_dim;
  auto q = DeviceBuffer::Allocate(sizeof(Bf16) * rows * qdim);
  auto out = DeviceBuffer::Allocate(sizeof(Bf16) * rows * qdim);
  auto d_tables = Upload(tables);
  auto d_rs = Upload(row_start);
  auto d_sp = Upload(start_pos);
  if (!q.ok() || !out.ok() || !d_tables.ok() || !d_rs.ok() || !d_sp.ok()) {
    return absl::UnavailableError("prefill bench: allocation failed");
  }
  BENCH_CHECK(q->Memset(0x3c));
  AttentionParams p;
  p.q = q->as<Bf16>();
  p.q_row_stride = qdim;
  p.out = out->as<Bf16>();
  p.out_row_stride = qdim;
  p.num_seqs = 1;
  p.total_rows = rows;
  p.num_q_heads = s.q_heads;
  p.kv = PagedKvView{pool->as<Bf16>(), blocks, 1, 0, s.kv_heads, bs, s.head_dim};
  p.row_start = d_rs->as<int32_t>();
  p.start_pos = d_sp->as<int32_t>();
  p.block_tables = d_tables->as<int32_t>();
  p.block_table_stride = blocks;
  p.window = s.window;
  p.max_rows_per_seq = rows;
  auto ms = TimeMs([&]() { return LaunchPagedPrefillAttention(p, nullptr); }, 5);
  if (!ms.ok()) return ms.status();
  // Useful FLOPs: QK^T and PV over the visible keys of each row.
  double pairs = 0;
  for (int i = 0; i < rows; ++i) {
    const int qpos = start + i;
    pairs += s.window > 0 ? std::min(qpos + 1, s.window) : qpos + 1;
  }
  const double flops = 4.0 * pairs * s.q_heads * s.head_dim;
  t.Add(absl::StrFormat(
      "| prefill attention %s | %d rows at offset %d | %.1f us | %.1f TFLOP/s | SIMT kernel |",
      s.name, rows, start, *ms * 1e3, flops / (*ms * 1e-3) / 1e12));
  return absl::OkStatus();
}

// Per-layer small kernels at 12B shapes (hidden 3840, intermediate 15360).
absl::Status BenchSmallKernels(int rows, Table& t) {
  const int hidden = 3840, inter = 15360;
  auto a = DeviceBuffer::Allocate(sizeof(Bf16) * rows * 2 * inter);
  auto b = DeviceBuffer::Allocate(sizeof(Bf16) * rows * 2 * inter);
  auto c = DeviceBuffer::Allocate(sizeof(Bf16) * rows * hidden);
  auto w = DeviceBuffer::Allocate(sizeof(Bf16) * 2 * inter);
  if (!a.ok() || !b.ok() || !c.ok() || !w.ok())
    return absl::UnavailableError("small bench: allocation failed");
  BENCH_CHECK(a->Memset(0x3c));
  BENCH_CHECK(b->Memset(0x3c));
  BENCH_CHECK(c->Memset(0x3c));
  BENCH_CHECK(w->Memset(0x3c));
  ResidualRmsNormParams r;
  r.y = a->as<Bf16>();
  r.y_row_stride = hidden;
  r.y_weight = w->as<Bf16>();
  r.residual = c->as<Bf16>();
  r.residual_row_stride = hidden;
  r.layer_scalar = w->as<Bf16>();
  r.out_weight = w->as<Bf16>();
  r.out = b->as<Bf16>();
  r.out_row_stride = hidden;
  r.rows = rows;
  r.dim = hidden;
  auto ms = TimeMs([&]() { return LaunchResidualRmsNorm(r, nullptr); }, 50);
  if (!ms.ok()) return ms.status();
  t.Add(absl::StrFormat("| residual + 2 RMSNorms (3840) | %d rows | %.1f us | %.0f GB/s | |", rows,
                        *ms * 1e3, 4.0 * 2 * rows * hidden / (*ms * 1e-3) / 1e9));
  GegluParams g;
  g.in = a->as<Bf16>();
  g.in_row_stride = 2 * inter;
  g.up_offset = inter;
  g.out = b->as<Bf16>();
  g.out_row_stride = inter;
  g.rows = rows;
  g.dim = inter;
  ms = TimeMs([&]() { return LaunchGeglu(g, nullptr); }, 50);
  if (!ms.ok()) return ms.status();
  t.Add(absl::StrFormat("| GeGLU (15360) | %d rows | %.1f us | %.0f GB/s | |", rows, *ms * 1e3,
                        3.0 * 2 * rows * inter / (*ms * 1e-3) / 1e9));
  return absl::OkStatus();
}

absl::Status Run(const std::string& out_path, bool quick) {
  auto devices = QueryDevices();
  if (!devices.ok()) return devices.status();
  const GpuInfo& gpu = devices->front();
  Table t;
  t.Add(absl::StrFormat("GPU: %s, %d SMs, %.1f GiB", gpu.name, gpu.multiprocessors,
                        gpu.total_memory / 1073741824.0));
  t.Add("");
  t.Add("| what | shape | time | rate | against the limit |");
  t.Add("| --- | --- | --- | --- | --- |");
  auto copy = MeasureCopyGBps(size_t{1} << 30, 20);
  if (!copy.ok()) return copy.status();
  t.Add(absl::StrFormat("| device-to-device copy | 1 GiB | | %.0f GB/s | the yardstick |", *copy));
  const LayerShape sliding{"sliding d256 16/8 w1024", 256, 16, 8, 1024};
  const LayerShape global{"global d512 16/1", 512, 16, 1, 0};
  const std::vector<int> batches = quick ? std::vector<int>{1, 16} : std::vector<int>{1, 8, 32, 64};
  for (const LayerShape* s : {&global, &sliding}) {
    for (int ctx : {4096, 32768}) {
      for (int batch : batches) {
        absl::Status st = BenchDecode(*s, batch, ctx, gpu.multiprocessors, *copy, t);
        if (!st.ok())
          t.Add(absl::StrCat("| decode attention ", s->name, " | batch ", batch, ", ctx ", ctx,
                             " | failed: ", st.message(), " | | |"));
      }
    }
  }
  for (const LayerShape* s : {&global, &sliding}) BENCH_CHECK(BenchPrefill(*s, 2048, 0, t));
  for (int rows : {1, 64, 2048}) BENCH_CHECK(BenchSmallKernels(rows, t));
  if (!out_path.empty()) {
    std::ofstream f(out_path);
    for (const std::string& r : t.rows) f << r << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tessera::runtime::cuda

int main(int argc, char** argv) {
  std::string out;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--out=", 6) == 0) {
      out = argv[i] + 6;
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--out=FILE] [--quick]\n", argv[0]);
      return 2;
    }
  }
  const absl::Status s = tessera::runtime::cuda::Run(out, quick);
  if (!s.ok()) {
    std::fprintf(stderr, "kernels_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
