// CPU emulation of the small part of the CUDA runtime and device language that Tessera's kernels
// use, so that the very same kernel source (.cuh/.cu) compiles with the host C++ compiler and runs
// on a machine without a GPU (kernels_emu_test). Each CTA runs as blockDim cooperative fibers on
// one OS thread (emulator.h): __syncthreads, __syncwarp and warp shuffles switch fibers, so barrier
// and shuffle semantics hold exactly; timing, memory coalescing and races do not (racecheck on a
// GPU covers those). Device memory is host memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "runtime/cuda/emu/emulator.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One CTA runs at a time, so a function-local static is exactly one CTA's shared memory.
#define __shared__ static

struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorDevicesUnavailable = 46,
  cudaErrorNoDevice = 100,
};

enum cudaMemcpyKind {
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};

struct uint4 {
  unsigned int x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return uint4{x, y, z, w};
}
struct float2 {
  float x, y;
};

using std::max;
using std::min;
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline void sincosf(float x, float* s, float* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}

inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  return tessera::emu::ShuffleXor(v, lane_mask);
}
// int, unsigned and double shuffles carry their bits through the float one (copies of a float
// keep every bit on x86-64, NaN payloads included).
inline unsigned __shfl_xor_sync(unsigned mask, unsigned v, int lane_mask) {
  float f;
  std::memcpy(&f, &v, sizeof(f));
  f = tessera::emu::ShuffleXor(f, lane_mask);
  std::memcpy(&v, &f, sizeof(v));
  return v;
}
inline int __shfl_xor_sync(unsigned mask, int v, int lane_mask) {
  return static_cast<int>(__shfl_xor_sync(mask, static_cast<unsigned>(v), lane_mask));
}
inline double __shfl_xor_sync(unsigned mask, double v, int lane_mask) {
  unsigned half[2];
  std::memcpy(half, &v, sizeof(v));
  half[0] = __shfl_xor_sync(mask, half[0], lane_mask);
  half[1] = __shfl_xor_sync(mask, half[1], lane_mask);
  std::memcpy(&v, half, sizeof(v));
  return v;
}

// Atomics: fibers switch only at barriers and one CTA runs at a time, so a plain read-modify-write
// is atomic here.
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  const double old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicOr(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old | v;
  return old;
}
inline int atomicMin(int* p, int v) {
  const int old = *p;
  *p = std::min(old, v);
  return old;
}
inline int atomicMax(int* p, int v) {
  const int old = *p;
  *p = std::max(old, v);
  return old;
}

inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}
// Integer SIMD and rounding-explicit float intrinsics (the quantized-weight kernels).
// __dp4a: a + the dot product of the four signed bytes of x and y.
inline int __dp4a(int x, int y, int acc) {
  for (int b = 0; b < 4; ++b) {
    acc += static_cast<int>(static_cast<int8_t>(static_cast<uint32_t>(x) >> (8 * b))) *
           static_cast<int>(static_cast<int8_t>(static_cast<uint32_t>(y) >> (8 * b)));
  }
  return acc;
}
// __vsub4: per-byte a - b, each byte wrapping on its own (no borrow between bytes).
inline unsigned __vsub4(unsigned a, unsigned b) {
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) {
    r |= ((((a >> (8 * i)) & 0xFFu) - ((b >> (8 * i)) & 0xFFu)) & 0xFFu) << (8 * i);
  }
  return r;
}
// One IEEE operation each, never contracted into a fused multiply-add (as on the GPU): the build
// targets x86-64-v3, which has FMA, so the product is forced through memory.
inline float __fmul_rn(float a, float b) {
  volatile float p = a * b;
  return p;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline void __syncwarp(unsigned mask = 0xffffffffu) { tessera::emu::SyncWarp(); }
inline void __syncthreads() { tessera::emu::SyncThreads(); }

#define threadIdx (tessera::emu::ThreadIdx())
#define blockIdx (tessera::emu::BlockIdx())
#define blockDim (tessera::emu::BlockDim())
#define gridDim (tessera::emu::GridDim())

cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);
