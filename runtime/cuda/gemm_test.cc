// GemmRunner (gemm.h) against a naive fp64 CPU reference on seeded random bf16 inputs over many
// shapes, strides wider than the rows, pointers offset by one element (2-byte aligned bf16, 4-byte
// aligned fp32), bf16 and fp32 outputs, alpha != 1 and accumulation. The same source runs on a GPU
// (gemm_gpu_test, cuBLASLt) and on the CPU emulation (gemm_emu_test, the host loop), with small
// shapes there.
//
// Tolerance. Inputs are exact bf16 values, so each product x*w is exact in fp32 and the only fp32
// errors are the k - 1 additions (in whatever order cuBLASLt's algorithm, split-K included, picks):
// |fp32 sum - exact| <= k * 2^-24 * sum_i |x_i w_i| (the classic gamma_k bound, unit roundoff
// 2^-24). alpha is a power of two in these tests, so it adds no rounding; accumulate adds one fp32
// rounding of the result (2^-24 |ref|). A bf16 output then rounds once to nearest: at most half an
// ulp, i.e. 2^-8 |value| (bf16 keeps 8 significant bits). With |x|, |w| <= 1 and k = 6912 the fp32
// term is ~0.7 while a wrong element (a transposed or shifted operand) is off by ~|ref| ~ 30.
//
// Padding elements of x and w (between rows, before an offset) are NaN: reading them poisons the
// result. Output padding holds a sentinel that must survive: writing past a row is caught too.
#include "runtime/cuda/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/stream.h"
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

constexpr uint16_t kBf16NaN = 0x7fc0;
constexpr float kSentinel = -1536.0f;  // Exact in bf16 and fp32.

bool UnderEmulation() {
  auto devices = QueryDevices();
  return devices.ok() && !devices->empty() &&
         (*devices)[0].name.find("emulation") != std::string::npos;
}

struct Case {
  int64_t m, n, k;
  int64_t x_pad = 0, w_pad = 0, out_pad = 0;  // Stride minus row width.
  int64_t x_off = 0, w_off = 0, out_off = 0;  // Elements before the first row.
  bool out_fp32 = false;
  bool accumulate = false;
  float alpha = 1.0f;

  std::string Name() const {
    return absl::StrCat("m=", m, " n=", n, " k=", k, " pads=", x_pad, "/", w_pad, "/", out_pad,
                        " offs=", x_off, "/", w_off, "/", out_off, out_fp32 ? " fp32" : " bf16",
                        accumulate ? " acc" : "", " alpha=", alpha);
  }
};

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = QueryDevices();
    if (!devices.ok()) GTEST_SKIP() << "no GPU: " << devices.status();
    auto runner = CreateGemmRunner();
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
  }

  // Runs `c` on the runner and checks every output element (and the untouched padding).
  void Check(const Case& c, uint64_t seed) {
    SCOPED_TRACE(c.Name());
    Rng rng(seed);
    const int64_t ldx = c.k + c.x_pad, ldw = c.k + c.w_pad, ldo = c.n + c.out_pad;
    std::vector<Bf16> x(c.x_off + c.m * ldx, Bf16{kBf16NaN});
    std::vector<Bf16> w(c.w_off + c.n * ldw, Bf16{kBf16NaN});
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.k; ++j) x[c.x_off + i * ldx + j] = FloatToBf16(rng.Uniform(-1, 1));
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.k; ++j) w[c.w_off + i * ldw + j] = FloatToBf16(rng.Uniform(-1, 1));
    const size_t out_elems = c.out_off + c.m * ldo;
    // Initial output: the sentinel everywhere, random values in the product's cells when
    // accumulating (the reference adds them).
    std::vector<float> out0(out_elems, kSentinel);
    if (c.accumulate) {
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.n; ++j) out0[c.out_off + i * ldo + j] = rng.Uniform(-4, 4);
    }
    ASSERT_OK_AND_ASSIGN(dx, Upload(x));
    ASSERT_OK_AND_ASSIGN(dw, Upload(w));
    ASSERT_OK_AND_ASSIGN(dout, DeviceBuffer::Allocate((c.out_fp32 ? 4 : 2) * out_elems));
    if (c.out_fp32) {
      ASSERT_OK(dout.CopyFromHost(out0.data(), 4 * out_elems));
    } else {
      std::vector<Bf16> o(out_elems);
      for (size_t i = 0; i < out_elems; ++i) o[i] = FloatToBf16(out0[i]);
      ASSERT_OK(dout.CopyFromHost(o.data(), 2 * out_elems));
    }

    GemmParams p;
    p.x = dx.as<Bf16>() + c.x_off;
    p.ldx = ldx;
    p.w = dw.as<Bf16>() + c.w_off;
    p.ldw = ldw;
    p.out = c.out_fp32 ? static_cast<void*>(dout.as<float>() + c.out_off)
                       : static_cast<void*>(dout.as<Bf16>() + c.out_off);
    p.ldo = ldo;
    p.out_fp32 = c.out_fp32;
    p.accumulate = c.accumulate;
    p.m = c.m;
    p.n = c.n;
    p.k = c.k;
    p.alpha = c.alpha;
    ASSERT_OK(runner_->Run(p, nullptr));
    ASSERT_OK(Synchronize());

    std::vector<float> got(out_elems);
    if (c.out_fp32) {
      ASSERT_OK(dout.CopyToHost(got.data(), 4 * out_elems));
    } else {
      std::vector<Bf16> o(out_elems);
      ASSERT_OK(dout.CopyToHost(o.data(), 2 * out_elems));
      for (size_t i = 0; i < out_elems; ++i) got[i] = Bf16ToFloat(o[i]);
    }

    // The widened operands, for the reference.
    std::vector<double> xf(c.m * c.k), wf(c.n * c.k);
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.k; ++j) xf[i * c.k + j] = Bf16ToFloat(x[c.x_off + i * ldx + j]);
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.k; ++j) wf[i * c.k + j] = Bf16ToFloat(w[c.w_off + i * ldw + j]);
    int bad = 0;
    for (size_t e = 0; e < out_elems; ++e) {
      const int64_t rel = static_cast<int64_t>(e) - c.out_off;
      const int64_t i = rel / ldo, j = rel % ldo;
      if (rel < 0 || j >= c.n) {  // Padding: untouched.
        if (got[e] != kSentinel && ++bad <= 5) {
          ADD_FAILURE() << "padding element " << e << " was overwritten with " << got[e];
        }
        continue;
      }
      double dot = 0.0, abs_dot = 0.0;
      const double* xr = &xf[i * c.k];
      const double* wr = &wf[j * c.k];
      for (int64_t t = 0; t < c.k; ++t) {
        dot += xr[t] * wr[t];
        abs_dot += std::fabs(xr[t] * wr[t]);
      }
      const double alpha = c.alpha;
      double ref = alpha * dot;
      double tol = std::fabs(alpha) * c.k * 0x1.0p-24 * abs_dot;
      if (c.accumulate) {
        ref += out0[e];
        tol += 0x1.0p-24 * (std::fabs(ref) + std::fabs(out0[e]));
      }
      if (!c.out_fp32) tol = tol * (1 + 0x1.0p-8) + 0x1.0p-8 * std::fabs(ref);
      if (!(std::fabs(got[e] - ref) <= tol) && ++bad <= 5) {
        ADD_FAILURE() << "out[" << i << "][" << j << "] = " << got[e] << ", want " << ref << " +- "
                      << tol;
      }
    }
    EXPECT_EQ(bad, 0) << bad << " bad elements";
  }

  std::unique_ptr<GemmRunner> runner_;
};

// Every (m, n, k) of the grid, each with one layout variant (cycling through the strided, offset,
// fp32, accumulating and scaled forms).
TEST_F(GemmTest, ShapesAgainstReference) {
  const bool emu = UnderEmulation();
  const std::vector<int64_t> ms = {1, 3, 17, 128};
  const std::vector<int64_t> ns =
      emu ? std::vector<int64_t>{8, 64, 300} : std::vector<int64_t>{8, 64, 1000};
  const std::vector<int64_t> ks =
      emu ? std::vector<int64_t>{16, 64, 640} : std::vector<int64_t>{16, 64, 640, 6912};
  uint64_t seed = 1;
  int variant = 0;
  for (int64_t m : ms)
    for (int64_t n : ns)
      for (int64_t k : ks) {
        Case c{m, n, k};
        switch (variant++ % 6) {
          case 0:  // Plain contiguous bf16 out.
            break;
          case 1:  // Logits-style fp32 out, strides wider than the rows.
            c.out_fp32 = true;
            c.x_pad = 8;
            c.w_pad = 3;
            c.out_pad = 5;
            break;
          case 2:  // Every pointer one element off its alignment, odd strides.
            c.x_off = 1;
            c.w_off = 1;
            c.out_off = 1;
            c.x_pad = 1;
            c.w_pad = 1;
            c.out_pad = 1;
            break;
          case 3:  // Accumulate into fp32 with alpha 0.5.
            c.out_fp32 = true;
            c.accumulate = true;
            c.alpha = 0.5f;
            break;
          case 4:  // A slice of a wider bf16 buffer (aligned offsets, 16-byte strides).
            c.x_off = 8;
            c.x_pad = 64;
            c.out_off = 16;
            c.out_pad = 8;
            c.alpha = 2.0f;
            break;
          case 5:  // Unaligned fp32 accumulate.
            c.out_fp32 = true;
            c.accumulate = true;
            c.out_off = 1;
            c.out_pad = 3;
            c.x_off = 1;
            break;
        }
        Check(c, seed++);
        if (HasFatalFailure()) return;
      }
}

// Every combination of output type, accumulation, strides and offsets on one mid-size shape.
TEST_F(GemmTest, EveryLayoutVariant) {
  const int64_t m = 17, n = 72, k = UnderEmulation() ? 200 : 640;
  uint64_t seed = 100;
  for (int bits = 0; bits < 16; ++bits) {
    Case c{m, n, k};
    c.out_fp32 = bits & 1;
    c.accumulate = c.out_fp32 && (bits & 2);
    if (bits & 4) {
      c.x_pad = 7;
      c.w_pad = 9;
      c.out_pad = 11;
    }
    if (bits & 8) {
      c.x_off = 3;
      c.w_off = 1;
      c.out_off = 1;
    }
    Check(c, seed++);
    if (HasFatalFailure()) return;
  }
}

// The plan cache must key on alignment: the same shape, aligned, then offset, then aligned again.
TEST_F(GemmTest, SameShapeDifferentAlignment) {
  const int64_t k = UnderEmulation() ? 256 : 2048;
  for (int round = 0; round < 2; ++round) {
    Case aligned{64, 256, k};
    Check(aligned, 7);
    Case offset = aligned;
    offset.x_off = 1;
    offset.w_off = 1;
    offset.out_off = 1;
    Check(offset, 8);
    if (HasFatalFailure()) return;
  }
}

// 12B projection shapes on a GPU: decode rows through q/gate (hidden 3840 in) and down (15360 in),
// and a logits-style fp32 slice of the vocabulary.
TEST_F(GemmTest, ModelShapes) {
  if (UnderEmulation()) GTEST_SKIP() << "12B shapes run on the GPU only";
  Check(Case{8, 4096, 3840}, 11);
  Check(Case{2, 3840, 15360}, 12);
  Case logits{1, 32768, 3840};
  logits.out_fp32 = true;
  Check(logits, 13);
}

// A cached shape enqueues no allocation or heuristic query, so it can be captured into a CUDA
// graph; the replay must produce the eager result bit for bit (same algorithm), also after the
// input changes (the graph reads the buffers anew).
TEST_F(GemmTest, CapturedInAGraphAfterAnEagerRun) {
  if (!GraphsSupported()) GTEST_SKIP() << "no CUDA graphs in this build (emulation)";
  const int64_t m = 5, n = 96, k = 320;
  Rng rng(21);
  std::vector<Bf16> x(m * k), x2(m * k), w(n * k);
  for (auto& v : x) v = FloatToBf16(rng.Uniform(-1, 1));
  for (auto& v : x2) v = FloatToBf16(rng.Uniform(-1, 1));
  for (auto& v : w) v = FloatToBf16(rng.Uniform(-1, 1));
  ASSERT_OK_AND_ASSIGN(dx, Upload(x));
  ASSERT_OK_AND_ASSIGN(dw, Upload(w));
  ASSERT_OK_AND_ASSIGN(eager, DeviceBuffer::Allocate(2 * m * n));
  ASSERT_OK_AND_ASSIGN(graphed, DeviceBuffer::Allocate(2 * m * n));
  ASSERT_OK_AND_ASSIGN(stream, Stream::Create());
  GemmParams p;
  p.x = dx.as<Bf16>();
  p.ldx = k;
  p.w = dw.as<Bf16>();
  p.ldw = k;
  p.ldo = n;
  p.m = m;
  p.n = n;
  p.k = k;
  p.out = graphed.data();
  ASSERT_OK(runner_->Run(p, stream->get()));  // Eager: caches the plan.
  ASSERT_OK(stream->Synchronize());
  ASSERT_OK(Graph::BeginCapture(stream->get()));
  const absl::Status run = runner_->Run(p, stream->get());
  auto graph = Graph::EndCapture(stream->get());
  ASSERT_OK(run);
  ASSERT_TRUE(graph.ok()) << graph.status();
  for (const std::vector<Bf16>* input : {&x, &x2}) {
    ASSERT_OK(dx.CopyFromHost(input->data(), 2 * input->size()));
    ASSERT_OK(graphed.Memset(0));
    ASSERT_OK(Synchronize());  // The stream is non-blocking: it does not wait for these.
    ASSERT_OK((*graph)->Launch(stream->get()));
    ASSERT_OK(stream->Synchronize());
    p.out = eager.data();
    ASSERT_OK(runner_->Run(p, stream->get()));
    ASSERT_OK(stream->Synchronize());
    p.out = graphed.data();
    ASSERT_OK_AND_ASSIGN(want, Download<Bf16>(eager, m * n));
    ASSERT_OK_AND_ASSIGN(got, Download<Bf16>(graphed, m * n));
    int nonzero = 0;
    for (int64_t i = 0; i < m * n; ++i) {
      ASSERT_EQ(got[i].bits, want[i].bits) << "element " << i;
      nonzero += want[i].bits != 0;
    }
    EXPECT_GT(nonzero, m * n / 2) << "the product should not be all zero";
  }
}

TEST_F(GemmTest, ZeroRowsIsANoOpWithoutPointers) {
  GemmParams p;
  p.m = 0;
  p.n = 8;
  p.k = 16;
  p.ldx = 16;
  p.ldw = 16;
  p.ldo = 8;
  ASSERT_OK(runner_->Run(p, nullptr));
}

TEST_F(GemmTest, RunRejectsWhatValidateRejects) {
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(4096));
  GemmParams p;
  p.x = buf.as<Bf16>();
  p.w = buf.as<Bf16>();
  p.out = buf.data();
  p.m = 2;
  p.n = 8;
  p.k = 16;
  p.ldx = 15;  // < k.
  p.ldw = 16;
  p.ldo = 8;
  const absl::Status s = runner_->Run(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("ldx"), absl::string_view::npos) << s;
}

// Without a GPU (no driver, no device) creation is a plain Unavailable, never a crash.
TEST(CreateGemmRunnerTest, UnavailableWithoutAGpu) {
  if (QueryDevices().ok()) GTEST_SKIP() << "a GPU (or the emulation) is present";
  const auto runner = CreateGemmRunner();
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kUnavailable) << runner.status();
}

// ValidateGemm needs no GPU: these run everywhere (no fixture).
GemmParams ValidParams() {
  static Bf16 dummy[4];
  static float out[4];
  GemmParams p;
  p.x = dummy;
  p.w = dummy;
  p.out = out;
  p.m = 4;
  p.n = 8;
  p.k = 16;
  p.ldx = 16;
  p.ldw = 20;
  p.ldo = 8;
  return p;
}

TEST(ValidateGemmTest, AcceptsValidShapes) {
  EXPECT_TRUE(ValidateGemm(ValidParams()).ok());
  GemmParams p = ValidParams();
  p.out_fp32 = true;
  p.accumulate = true;
  EXPECT_TRUE(ValidateGemm(p).ok());
  p = ValidParams();
  p.m = 0;
  p.x = nullptr;
  p.w = nullptr;
  p.out = nullptr;
  EXPECT_TRUE(ValidateGemm(p).ok()) << "m = 0 is a no-op and needs no pointers";
}

TEST(ValidateGemmTest, RejectsBadFieldsNamingThem) {
  struct Bad {
    const char* field;
    void (*mutate)(GemmParams&);
  };
  const Bad cases[] = {
      {"m=", [](GemmParams& p) { p.m = -1; }},
      {"n=", [](GemmParams& p) { p.n = 0; }},
      {"k=", [](GemmParams& p) { p.k = 0; }},
      {"n=", [](GemmParams& p) { p.n = -3; }},
      {"ldx", [](GemmParams& p) { p.ldx = 15; }},
      {"ldw", [](GemmParams& p) { p.ldw = 8; }},
      {"ldo", [](GemmParams& p) { p.ldo = 7; }},
      {"x is null", [](GemmParams& p) { p.x = nullptr; }},
      {"w is null", [](GemmParams& p) { p.w = nullptr; }},
      {"out is null", [](GemmParams& p) { p.out = nullptr; }},
      {"accumulate", [](GemmParams& p) { p.accumulate = true; }},  // bf16 out.
  };
  for (const Bad& b : cases) {
    GemmParams p = ValidParams();
    b.mutate(p);
    const absl::Status s = ValidateGemm(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.field << ": " << s;
    EXPECT_NE(s.message().find(b.field), absl::string_view::npos)
        << "message should name " << b.field << ": " << s;
  }
}

}  // namespace
}  // namespace tessera::runtime::cuda
