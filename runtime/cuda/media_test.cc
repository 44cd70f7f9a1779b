// The media-path norm kernels (media.h) against a naive fp64 reference written here (sharing no
// code with the kernels or runtime/cpu), on seeded random inputs over many shapes: odd dims (scalar
// path), dims that are multiples of 4 (16-byte vector path), misaligned pointers, row strides
// larger than dim, and rows longer than the kernels' register cache (7168 values). The same source
// runs on a GPU (media_gpu_test, tag gpu) and on the CPU emulation (media_emu_test, in CI), where
// the shapes are kept small; the GPU run adds the real ones (280 and 1120 patches of 6912 values,
// 750 audio frames of 640).
//
// Tolerance. Each kernel rounds its fp32 result to bf16 once: at most half a bf16 ulp, which is at
// most 2^-8 of the value (8 significant bits, 7 stored), so we allow 2^-8 |ref|. Before that
// rounding the fp32 value differs from the fp64 reference by the fp32 error of the statistics (sums
// of <= 7.3k terms: ~1e-6 relative, accumulated through at most three norms) times the magnitude of
// the terms that make up the value. Where terms cancel (a LayerNorm output (x - mean) * inv * w + b
// near zero) that error is relative to |(x - mean) * inv * w| + |b|, not to the output: we allow
// 2^-14 (6e-5) of that magnitude, which is still 64x finer than one bf16 step at that magnitude, so
// a wrong eps, mean, weight, bias, position row or stride fails. The rms outputs have unit mean
// square, so their magnitude is 1. One more term for a LayerNorm: the mean is an fp32 value (as in
// runtime/cpu/kernels.cc), off by up to half an fp32 ulp, 2^-24 |mean|, and x - mean carries that
// error times inv * w; in a nearly flat patch (mean 0.6, inv 300) that is 1e-5 absolute, more than
// the rest. We allow 4 such ulps: 2^-22 |mean| inv |w|. We also require >= 99% of outputs to equal
// the bf16 rounding of the reference bit for bit (an fp32 difference of ~1e-6 flips a rounding with
// probability ~1e-6 / 2^-8).
#include "runtime/cuda/media.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/test_util.h"

namespace tessera::runtime::cuda {
namespace {

constexpr double kRtol = 1.0 / 256;     // 2^-8: one bf16 rounding, at most half an ulp.
constexpr double kAtol = 1.0 / 16384;   // 2^-14 of the terms' magnitude: fp32 statistics.
constexpr double kMeanUlp = 0x1.0p-22;  // 4 fp32 ulps of the mean (relative).
constexpr double kMinExact = 0.99;
constexpr uint16_t kSentinel = 0xDEAD;  // Output padding must keep this.

// Test values drawn from SplitMix64 (test_util.h).
class Rng : public test_util::SplitMix64 {
 public:
  using SplitMix64::SplitMix64;
  double Uniform(double lo, double hi) { return lo + (hi - lo) * ((Next() >> 11) * 0x1.0p-53); }
  double Normal() {  // Box-Muller.
    const double u = ((Next() >> 11) + 1) * 0x1.0p-53, v = (Next() >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v);
  }
};

// Norm weights near 1, biases ~0.1 N(0, 1), all exact in bf16 as the checkpoint's are.
std::vector<float> Weights(Rng& rng, int n) {
  std::vector<float> w(n);
  for (float& x : w) x = RoundBf16(static_cast<float>(1.0 + 0.2 * rng.Normal()));
  return w;
}
std::vector<float> Biases(Rng& rng, int n) {
  std::vector<float> b(n);
  for (float& x : b) x = RoundBf16(static_cast<float>(0.1 * rng.Normal()));
  return b;
}

// Host values placed `offset` elements into a device buffer (offset 1 misaligns the data).
template <typename T>
struct DeviceArray {
  DeviceBuffer buf;
  int offset = 0;
  T* ptr() const { return buf.as<T>() + offset; }
};
template <typename T>
absl::StatusOr<DeviceArray<T>> UploadAt(const std::vector<T>& host, int offset) {
  std::vector<T> padded(offset, T{});
  padded.insert(padded.end(), host.begin(), host.end());
  auto buf = Upload(padded);
  if (!buf.ok()) return buf.status();
  return DeviceArray<T>{std::move(*buf), offset};
}

// A [rows, stride] bf16 output full of the sentinel.
std::vector<Bf16> SentinelRows(int rows, int64_t stride) {
  return std::vector<Bf16>(static_cast<size_t>(rows) * stride, Bf16{kSentinel});
}

// Checks got ([rows, stride], bf16) against want ([rows, dim]) with |err| <= kRtol |want| +
// slack (the fp32 error allowed before the rounding), and that the padding past dim kept the
// sentinel.
void ExpectRowsClose(const std::vector<Bf16>& got, int64_t stride, const std::vector<double>& want,
                     const std::vector<double>& slack, int rows, int dim, const std::string& what) {
  ASSERT_EQ(got.size(), static_cast<size_t>(rows) * stride) << what;
  size_t exact = 0, bad = 0, pad_bad = 0;
  double worst = 0.0;
  for (int r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < stride; ++j) {
      const Bf16 g = got[r * stride + j];
      if (j >= dim) {
        pad_bad += g.bits != kSentinel;
        continue;
      }
      const size_t i = static_cast<size_t>(r) * dim + j;
      const double gv = Bf16ToFloat(g), w = want[i];
      const double err = std::fabs(gv - w), tol = kRtol * std::fabs(w) + slack[i];
      if (g.bits == FloatToBf16(static_cast<float>(w)).bits) ++exact;
      if (!(err <= tol)) {
        if (++bad <= 5) {
          ADD_FAILURE() << what << ": row " << r << " element " << j << " is " << gv << ", want "
                        << w << " (tolerance " << tol << ")";
        }
      }
      worst = std::max(worst, tol > 0 ? err / tol : err);
    }
  }
  const size_t n = static_cast<size_t>(rows) * dim;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << n << " out of tolerance";
  EXPECT_EQ(pad_bad, 0u) << what << ": " << pad_bad << " padding elements written";
  EXPECT_GE(static_cast<double>(exact), kMinExact * n)
      << what << ": only " << exact << " of " << n << " match the rounded reference exactly";
  std::printf("%s: worst error %.3f of tolerance, %.4f exact\n", what.c_str(), worst,
              n ? static_cast<double>(exact) / n : 1.0);
}

// ---- fp64 references, written from media.h and runtime/cpu/media_embedder.cc.

// LayerNorm of x[0, n) into out, and the fp32 error its value may carry into slack (see the top).
void RefLayerNorm(const double* x, int n, const float* w, const float* b, double eps, double* out,
                  double* slack) {
  double mean = 0;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  double var = 0;
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const double inv = 1.0 / std::sqrt(var / n + eps);
  for (int i = 0; i < n; ++i) {
    const double t = (x[i] - mean) * inv * w[i];
    out[i] = t + b[i];
    if (slack != nullptr) {
      slack[i] = kAtol * (std::fabs(t) + std::fabs(b[i])) +
                 kMeanUlp * std::fabs(mean) * inv * std::fabs(w[i]);
    }
  }
}

void RefRms(const double* x, int n, double eps, double* out) {
  double ms = 0;
  for (int i = 0; i < n; ++i) ms += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ms / n + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * inv;
}

class MediaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = QueryDevices();
    if (!devices.ok()) GTEST_SKIP() << "no GPU: " << devices.status();
    ASSERT_FALSE(devices->empty());
    emulated_ = (*devices)[0].name.find("emulation") != std::string::npos;
  }
  bool emulated_ = false;
};

// ---- Patch input norm.

struct InputCase {
  int rows, dim;
  int64_t in_stride, out_stride;
  int offset = 0;         // Elements: 1 misaligns the input, forcing the scalar path.
  bool constant = false;  // Row 0 is a constant (padding) patch, row 1 nearly flat.
  bool time = false;      // Print the time per call (GPU only).
};

std::string Name(const char* kernel, int rows, int dim, int64_t in_stride, int64_t out_stride,
                 int offset) {
  return absl::StrCat(kernel, " rows=", rows, " dim=", dim, " strides=", in_stride, "/", out_stride,
                      " offset=", offset);
}

void MaybeTime(bool time, const std::string& what, const std::function<absl::Status()>& launch) {
  if (!time) return;
  auto ms = TimeMs(launch, 20);
  ASSERT_TRUE(ms.ok()) << ms.status();
  std::printf("%s: %.1f us per call\n", what.c_str(), *ms * 1e3);
}

void RunPatchInputCase(const InputCase& c, uint64_t seed) {
  const std::string what =
      Name("patch input norm", c.rows, c.dim, c.in_stride, c.out_stride, c.offset);
  SCOPED_TRACE(what);
  Rng rng(seed);
  std::vector<float> patches(static_cast<size_t>(c.rows) * c.in_stride);
  for (float& x : patches) x = static_cast<float>(rng.Uniform(0.0, 1.0));
  if (c.constant) {
    std::fill(patches.begin(), patches.begin() + c.dim, 37.0f / 255.0f);
    // A nearly flat patch (a clear sky): variance ~3e-7, so eps = 1e-5 sets the scale.
    for (int j = 0; j < c.dim; ++j) {
      patches[c.in_stride + j] = static_cast<float>(0.6 + 1e-3 * rng.Uniform(-1.0, 1.0));
    }
  }
  const std::vector<float> w = Weights(rng, c.dim), b = Biases(rng, c.dim);

  std::vector<double> want(static_cast<size_t>(c.rows) * c.dim), slack(want.size()), x(c.dim);
  for (int r = 0; r < c.rows; ++r) {
    for (int j = 0; j < c.dim; ++j) x[j] = patches[r * c.in_stride + j];
    RefLayerNorm(x.data(), c.dim, w.data(), b.data(), 1e-5, &want[r * c.dim], &slack[r * c.dim]);
  }

  ASSERT_OK_AND_ASSIGN(d_in, UploadAt(patches, c.offset));
  ASSERT_OK_AND_ASSIGN(d_w, UploadAt(w, c.offset));
  ASSERT_OK_AND_ASSIGN(d_b, UploadAt(b, c.offset));
  ASSERT_OK_AND_ASSIGN(d_out, UploadAt(SentinelRows(c.rows, c.out_stride), c.offset));
  PatchInputNormParams p;
  p.patches = d_in.ptr();
  p.in_row_stride = c.in_stride;
  p.weight = d_w.ptr();
  p.bias = d_b.ptr();
  p.out = d_out.ptr();
  p.out_row_stride = c.out_stride;
  p.rows = c.rows;
  p.dim = c.dim;
  ASSERT_OK(LaunchPatchInputNorm(p, nullptr));
  ASSERT_OK(Synchronize());
  std::vector<Bf16> got(static_cast<size_t>(c.rows) * c.out_stride);
  ASSERT_OK(d_out.buf.CopyToHost(got.data(), got.size() * sizeof(Bf16), c.offset * sizeof(Bf16)));
  ExpectRowsClose(got, c.out_stride, want, slack, c.rows, c.dim, what);
  if (c.constant) {
    // A constant patch centres to exactly zero: the output is the bias, rounded.
    for (int j = 0; j < c.dim; ++j) {
      ASSERT_EQ(got[j].bits, FloatToBf16(b[j]).bits) << "constant patch, element " << j;
    }
  }
  MaybeTime(c.time, what, [&] { return LaunchPatchInputNorm(p, nullptr); });
}

TEST_F(MediaTest, PatchInputNorm) {
  std::vector<InputCase> cases = {
      {3, 6912, 6912, 6912, 0, true},  // Vector path; row 0 a padding patch.
      {2, 6912, 6916, 6920},           // Row strides larger than dim, still vectorised.
      {2, 6912, 6913, 6912},           // Odd input stride: scalar path.
      {2, 6912, 6912, 6912, 1},        // Misaligned pointers: scalar path.
      {1, 1, 1, 1},
      {3, 33, 40, 35},
      {3, 640, 640, 641},
      {70, 1000, 1000, 1000},
      {2, 7300, 7300, 7304},  // Past the register cache (7168): the tail is recomputed.
      {2, 7301, 7301, 7301, 1},
  };
  if (!emulated_) {
    cases.push_back({280, 6912, 6912, 6912, 0, true, true});
    cases.push_back({1120, 6912, 6912, 6912, 0, false, true});
    cases.push_back({70, 20000, 20001, 20003});
  }
  uint64_t seed = 1;
  for (const InputCase& c : cases) RunPatchInputCase(c, seed++);
}

// ---- Patch output norm.

struct OutputCase {
  int rows, dim;
  int64_t in_stride, out_stride;
  int pos_size;
  int offset = 0;
  bool time = false;
};

void RunPatchOutputCase(const OutputCase& c, uint64_t seed, bool out_of_range = false) {
  std::string what = Name("patch output norm", c.rows, c.dim, c.in_stride, c.out_stride, c.offset);
  if (out_of_range) what += " positions out of range";
  SCOPED_TRACE(what);
  Rng rng(seed);
  const int D = c.dim;
  // The dense GEMM's bf16 output: values of a few units.
  std::vector<Bf16> dense(static_cast<size_t>(c.rows) * c.in_stride);
  for (Bf16& x : dense) x = FloatToBf16(static_cast<float>(2.0 * rng.Normal()));
  const std::vector<float> dense_bias = Biases(rng, D), ln2_w = Weights(rng, D),
                           ln2_b = Biases(rng, D), pn_w = Weights(rng, D), pn_b = Biases(rng, D);
  std::vector<float> pos_table(static_cast<size_t>(c.pos_size) * 2 * D);
  for (float& x : pos_table) x = RoundBf16(static_cast<float>(rng.Normal()));
  std::vector<int32_t> positions(2 * c.rows);
  for (int r = 0; r < c.rows; ++r) {
    positions[2 * r] = rng.Int(0, c.pos_size - 1);
    positions[2 * r + 1] = rng.Int(0, c.pos_size - 1);
    if (out_of_range) {  // The kernel clamps these (memory safety only; the host rejects them).
      positions[2 * r] = r % 2 ? -5 - r : c.pos_size + r;
      positions[2 * r + 1] = r % 2 ? c.pos_size : -1;
    }
  }

  // rms outputs have unit mean square: the magnitude behind the fp32 error is 1.
  std::vector<double> want(static_cast<size_t>(c.rows) * D), slack(want.size(), kAtol);
  std::vector<double> x(D), y(D);
  for (int r = 0; r < c.rows; ++r) {
    for (int j = 0; j < D; ++j)
      x[j] = static_cast<double>(Bf16ToFloat(dense[r * c.in_stride + j])) + dense_bias[j];
    RefLayerNorm(x.data(), D, ln2_w.data(), ln2_b.data(), 1e-5, y.data(), nullptr);
    const int px = std::clamp(positions[2 * r], 0, c.pos_size - 1);
    const int py = std::clamp(positions[2 * r + 1], 0, c.pos_size - 1);
    for (int j = 0; j < D; ++j) {
      y[j] += static_cast<double>(pos_table[(static_cast<size_t>(px) * 2 + 0) * D + j]) +
              pos_table[(static_cast<size_t>(py) * 2 + 1) * D + j];
    }
    RefLayerNorm(y.data(), D, pn_w.data(), pn_b.data(), 1e-5, x.data(), nullptr);
    RefRms(x.data(), D, 1e-6, &want[r * D]);
  }

  ASSERT_OK_AND_ASSIGN(d_dense, UploadAt(dense, c.offset));
  ASSERT_OK_AND_ASSIGN(d_db, UploadAt(dense_bias, c.offset));
  ASSERT_OK_AND_ASSIGN(d_l2w, UploadAt(ln2_w, c.offset));
  ASSERT_OK_AND_ASSIGN(d_l2b, UploadAt(ln2_b, c.offset));
  ASSERT_OK_AND_ASSIGN(d_pos, UploadAt(pos_table, c.offset));
  ASSERT_OK_AND_ASSIGN(d_positions, UploadAt(positions, 0));
  ASSERT_OK_AND_ASSIGN(d_pnw, UploadAt(pn_w, c.offset));
  ASSERT_OK_AND_ASSIGN(d_pnb, UploadAt(pn_b, c.offset));
  ASSERT_OK_AND_ASSIGN(d_out, UploadAt(SentinelRows(c.rows, c.out_stride), c.offset));
  PatchOutputNormParams p;
  p.dense = d_dense.ptr();
  p.dense_row_stride = c.in_stride;
  p.dense_bias = d_db.ptr();
  p.ln2_weight = d_l2w.ptr();
  p.ln2_bias = d_l2b.ptr();
  p.pos_table = d_pos.ptr();
  p.pos_size = c.pos_size;
  p.positions = d_positions.ptr();
  p.pos_norm_weight = d_pnw.ptr();
  p.pos_norm_bias = d_pnb.ptr();
  p.out = d_out.ptr();
  p.out_row_stride = c.out_stride;
  p.rows = c.rows;
  p.dim = D;
  ASSERT_OK(LaunchPatchOutputNorm(p, nullptr));
  ASSERT_OK(Synchronize());
  std::vector<Bf16> got(static_cast<size_t>(c.rows) * c.out_stride);
  ASSERT_OK(d_out.buf.CopyToHost(got.data(), got.size() * sizeof(Bf16), c.offset * sizeof(Bf16)));
  ExpectRowsClose(got, c.out_stride, want, slack, c.rows, D, what);
  MaybeTime(c.time, what, [&] { return LaunchPatchOutputNorm(p, nullptr); });
}

TEST_F(MediaTest, PatchOutputNorm) {
  std::vector<OutputCase> cases = {
      {1, 1, 1, 1, 1},
      {3, 33, 33, 40, 5},
      {3, 64, 64, 64, 32},  // The tiny fixture's mm_embed_dim and position table.
      {70, 640, 648, 640, 10},
      {3, 1000, 1000, 1004, 64, 1},  // Misaligned: scalar path.
      {2, 3840, 3840, 3840, 64},
      {2, 7300, 7304, 7300, 3},  // Past the register cache: the tail is recomputed.
      {2, 7301, 7301, 7302, 3},
  };
  if (!emulated_) {
    cases.push_back({280, 1152, 1152, 1152, 64, 0, true});
    cases.push_back({1120, 3840, 3840, 3840, 64, 0, true});
    cases.push_back({70, 20000, 20000, 20000, 8});
  }
  uint64_t seed = 100;
  for (const OutputCase& c : cases) RunPatchOutputCase(c, seed++);
}

TEST_F(MediaTest, PatchOutputNormClampsPositions) {
  RunPatchOutputCase({4, 40, 40, 40, 6}, 200, /*out_of_range=*/true);
  RunPatchOutputCase({4, 33, 33, 33, 6}, 201, /*out_of_range=*/true);
}

// ---- Audio frame norm.

struct AudioCase {
  int rows, dim;
  int64_t in_stride, out_stride;
  int offset = 0;
  bool time = false;
};

void RunAudioCase(const AudioCase& c, uint64_t seed) {
  const std::string what =
      Name("audio frame norm", c.rows, c.dim, c.in_stride, c.out_stride, c.offset);
  SCOPED_TRACE(what);
  Rng rng(seed);
  std::vector<float> frames(static_cast<size_t>(c.rows) * c.in_stride);
  for (int r = 0; r < c.rows; ++r) {
    // Loud, quiet (mean square ~3e-7, where eps = 1e-6 matters) and silent (padding) frames.
    const double amp = r % 3 == 0 ? 1.0 : r % 3 == 1 ? 1e-3 : 0.0;
    for (int64_t j = 0; j < c.in_stride; ++j) {
      frames[r * c.in_stride + j] = static_cast<float>(amp * rng.Uniform(-1.0, 1.0));
    }
  }
  std::vector<double> want(static_cast<size_t>(c.rows) * c.dim), slack(want.size()), x(c.dim);
  for (int r = 0; r < c.rows; ++r) {
    for (int j = 0; j < c.dim; ++j) x[j] = frames[r * c.in_stride + j];
    RefRms(x.data(), c.dim, 1e-6, &want[r * c.dim]);
  }
  // x * inv is one product: its fp32 error is relative to the output itself.
  for (size_t i = 0; i < want.size(); ++i) slack[i] = kAtol * std::fabs(want[i]);

  ASSERT_OK_AND_ASSIGN(d_in, UploadAt(frames, c.offset));
  ASSERT_OK_AND_ASSIGN(d_out, UploadAt(SentinelRows(c.rows, c.out_stride), c.offset));
  AudioFrameNormParams p;
  p.frames = d_in.ptr();
  p.in_row_stride = c.in_stride;
  p.out = d_out.ptr();
  p.out_row_stride = c.out_stride;
  p.rows = c.rows;
  p.dim = c.dim;
  ASSERT_OK(LaunchAudioFrameNorm(p, nullptr));
  ASSERT_OK(Synchronize());
  std::vector<Bf16> got(static_cast<size_t>(c.rows) * c.out_stride);
  ASSERT_OK(d_out.buf.CopyToHost(got.data(), got.size() * sizeof(Bf16), c.offset * sizeof(Bf16)));
  ExpectRowsClose(got, c.out_stride, want, slack, c.rows, c.dim, what);
  MaybeTime(c.time, what, [&] { return LaunchAudioFrameNorm(p, nullptr); });
}

TEST_F(MediaTest, AudioFrameNorm) {
  std::vector<AudioCase> cases = {
      {3, 640, 640, 640}, {70, 640, 640, 644},   {5, 640, 640, 640, 1}, {1, 1, 1, 1},
      {6, 33, 35, 34},    {3, 1000, 1001, 1000}, {2, 7300, 7300, 7300}, {2, 7301, 7303, 7301},
  };
  if (!emulated_) {
    cases.push_back({750, 640, 640, 640, 0, true});
    cases.push_back({30, 20000, 20000, 20000});
  }
  uint64_t seed = 300;
  for (const AudioCase& c : cases) RunAudioCase(c, seed++);
}

// ---- Parameter validation.

void ExpectInvalid(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field << ": " << s;
  // Every message reads "<kernel>: <field> ...".
  EXPECT_NE(s.message().find(absl::StrCat(": ", field, " ")), absl::string_view::npos)
      << "the message should name " << field << ": " << s;
}

TEST_F(MediaTest, PatchInputNormRejectsBadParams) {
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(1 << 16));
  PatchInputNormParams ok;
  ok.patches = buf.as<float>();
  ok.weight = buf.as<float>();
  ok.bias = buf.as<float>();
  ok.out = buf.as<Bf16>() + 4096;
  ok.in_row_stride = ok.out_row_stride = ok.dim = 16;
  ok.rows = 2;
  ASSERT_OK(LaunchPatchInputNorm(ok, nullptr));
  ASSERT_OK(Synchronize());
  PatchInputNormParams p = ok;
  p.patches = nullptr;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "patches");
  p = ok;
  p.weight = nullptr;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "weight");
  p = ok;
  p.bias = nullptr;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "bias");
  p = ok;
  p.out = nullptr;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "out");
  p = ok;
  p.dim = 0;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "dim");
  p = ok;
  p.rows = -1;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "rows");
  p = ok;
  p.in_row_stride = 15;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "in_row_stride");
  p = ok;
  p.out_row_stride = 15;
  ExpectInvalid(LaunchPatchInputNorm(p, nullptr), "out_row_stride");
  // rows == 0 is a no-op, null pointers included.
  PatchInputNormParams empty;
  empty.dim = 6912;
  empty.in_row_stride = empty.out_row_stride = 6912;
  ASSERT_OK(LaunchPatchInputNorm(empty, nullptr));
}

TEST_F(MediaTest, PatchOutputNormRejectsBadParams) {
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(1 << 16));
  ASSERT_OK_AND_ASSIGN(pos, Upload(std::vector<int32_t>{0, 0, 1, 1}));
  PatchOutputNormParams ok;
  ok.dense = buf.as<Bf16>();
  ok.dense_bias = ok.ln2_weight = ok.ln2_bias = ok.pos_table = buf.as<float>();
  ok.pos_norm_weight = ok.pos_norm_bias = buf.as<float>();
  ok.positions = pos.as<int32_t>();
  ok.pos_size = 2;
  ok.out = buf.as<Bf16>() + 1024;
  ok.dense_row_stride = ok.out_row_stride = ok.dim = 16;
  ok.rows = 2;
  ASSERT_OK(LaunchPatchOutputNorm(ok, nullptr));
  ASSERT_OK(Synchronize());
  const std::vector<std::pair<const char*, void (*)(PatchOutputNormParams&)>> nulls = {
      {"dense", [](PatchOutputNormParams& p) { p.dense = nullptr; }},
      {"dense_bias", [](PatchOutputNormParams& p) { p.dense_bias = nullptr; }},
      {"ln2_weight", [](PatchOutputNormParams& p) { p.ln2_weight = nullptr; }},
      {"ln2_bias", [](PatchOutputNormParams& p) { p.ln2_bias = nullptr; }},
      {"pos_table", [](PatchOutputNormParams& p) { p.pos_table = nullptr; }},
      {"positions", [](PatchOutputNormParams& p) { p.positions = nullptr; }},
      {"pos_norm_weight", [](PatchOutputNormParams& p) { p.pos_norm_weight = nullptr; }},
      {"pos_norm_bias", [](PatchOutputNormParams& p) { p.pos_norm_bias = nullptr; }},
      {"out", [](PatchOutputNormParams& p) { p.out = nullptr; }},
      {"dim", [](PatchOutputNormParams& p) { p.dim = -3; }},
      {"rows", [](PatchOutputNormParams& p) { p.rows = -1; }},
      {"dense_row_stride", [](PatchOutputNormParams& p) { p.dense_row_stride = 8; }},
      {"out_row_stride", [](PatchOutputNormParams& p) { p.out_row_stride = 0; }},
      {"pos_size", [](PatchOutputNormParams& p) { p.pos_size = 0; }},
  };
  for (const auto& [field, spoil] : nulls) {
    PatchOutputNormParams p = ok;
    spoil(p);
    ExpectInvalid(LaunchPatchOutputNorm(p, nullptr), field);
  }
  PatchOutputNormParams empty;
  empty.dim = 64;
  empty.dense_row_stride = empty.out_row_stride = 64;
  empty.pos_size = 16;
  ASSERT_OK(LaunchPatchOutputNorm(empty, nullptr));
}

TEST_F(MediaTest, AudioFrameNormRejectsBadParams) {
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(1 << 16));
  AudioFrameNormParams ok;
  ok.frames = buf.as<float>();
  ok.out = buf.as<Bf16>() + 4096;
  ok.in_row_stride = ok.out_row_stride = ok.dim = 640;
  ok.rows = 3;
  ASSERT_OK(LaunchAudioFrameNorm(ok, nullptr));
  ASSERT_OK(Synchronize());
  AudioFrameNormParams p = ok;
  p.frames = nullptr;
  ExpectInvalid(LaunchAudioFrameNorm(p, nullptr), "frames");
  p = ok;
  p.out = nullptr;
  ExpectInvalid(LaunchAudioFrameNorm(p, nullptr), "out");
  p = ok;
  p.dim = 0;
  ExpectInvalid(LaunchAudioFrameNorm(p, nullptr), "dim");
  p = ok;
  p.rows = -2;
  ExpectInvalid(LaunchAudioFrameNorm(p, nullptr), "rows");
  p = ok;
  p.in_row_stride = 639;
  ExpectInvalid(LaunchAudioFrameNorm(p, nullptr), "in_row_stride");
  p = ok;
  p.out_row_stride = 1;
  ExpectInvalid(LaunchAudioFrameNorm(p, nullptr), "out_row_stride");
  AudioFrameNormParams empty;
  empty.dim = 640;
  empty.in_row_stride = empty.out_row_stride = 640;
  ASSERT_OK(LaunchAudioFrameNorm(empty, nullptr));
}

}  // namespace
}  // namespace tessera::runtime::cuda
