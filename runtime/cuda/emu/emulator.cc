// Fiber scheduler and fake CUDA runtime behind the CPU emulation (emulator.h, cuda_runtime.h here).
#include "runtime/cuda/emu/emulator.h"

#include <setjmp.h>
#include <ucontext.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "runtime/cuda/emu/cuda_runtime.h"

namespace tessera::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;

// A fiber starts once through ucontext (setcontext onto its own stack) and then switches with
// _setjmp/_longjmp, which unlike swapcontext makes no system call: ~50x faster per switch.
struct Fiber {
  ucontext_t ctx;
  jmp_buf jb;
  std::vector<char> stack;
  dim3 tid;
  bool started = false;
  bool done = false;
};

struct State {
  dim3 block_idx, block_dim, grid_dim;
  std::vector<Fiber> fibers;
  int current = -1;
  int threads = 0;
  jmp_buf scheduler;
  const std::function<void()>* kernel = nullptr;
  uint64_t progress = 0;  // Bumped whenever a barrier opens or a fiber ends.
  int cta_arrived = 0;
  uint64_t cta_generation = 0;
  int warp_arrived[kMaxThreads / 32] = {};
  uint64_t warp_generation[kMaxThreads / 32] = {};
  float slots[kMaxThreads / 32][32] = {};
  cudaError_t last_error = cudaSuccess;
};

State& S() {
  static State s;
  return s;
}

void Yield() {
  State& s = S();
  if (_setjmp(s.fibers[s.current].jb) == 0) _longjmp(s.scheduler, 1);
}

// A fiber runs the kernel once per CTA it takes part in and then parks here; the scheduler
// resumes it (with the next CTA's thread index) by jumping back into this loop, so a fiber is
// started through ucontext (two system calls) once per process rather than once per CTA.
void Trampoline() {
  for (;;) {
    State& s = S();
    (*s.kernel)();
    Fiber& f = s.fibers[s.current];
    f.done = true;
    ++s.progress;
    if (_setjmp(f.jb) == 0) _longjmp(s.scheduler, 1);
  }
}

void Wait(int* arrived, uint64_t* generation, int expected) {
  State& s = S();
  const uint64_t gen = *generation;
  if (++*arrived == expected) {
    *arrived = 0;
    ++*generation;
    ++s.progress;
    return;
  }
  while (*generation == gen) Yield();
}

}  // namespace

const dim3& ThreadIdx() { return S().fibers[S().current].tid; }
const dim3& BlockIdx() { return S().block_idx; }
const dim3& BlockDim() { return S().block_dim; }
const dim3& GridDim() { return S().grid_dim; }

void SyncThreads() {
  State& s = S();
  Wait(&s.cta_arrived, &s.cta_generation, s.threads);
}

void SyncWarp() {
  State& s = S();
  const int warp = s.current / 32;
  const int lanes = std::min(32, s.threads - warp * 32);
  Wait(&s.warp_arrived[warp], &s.warp_generation[warp], lanes);
}

float ShuffleXor(float v, int lane_mask) {
  State& s = S();
  const int warp = s.current / 32, lane = s.current % 32;
  s.slots[warp][lane] = v;
  SyncWarp();
  const int src = lane ^ lane_mask;
  const float r = src < std::min(32, s.threads - warp * 32) ? s.slots[warp][src] : v;
  SyncWarp();
  return r;
}

void Launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
  State& s = S();
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads <= 0 || threads > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    s.last_error = cudaErrorInvalidConfiguration;
    return;
  }
  s.grid_dim = grid;
  s.block_dim = block;
  s.kernel = &kernel;
  s.threads = threads;
  // Sized once: parked fibers keep their jmp_buf and stack in place.
  if (s.fibers.empty()) s.fibers.resize(kMaxThreads);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        s.block_idx = dim3(bx, by, bz);
        s.cta_arrived = 0;
        std::memset(s.warp_arrived, 0, sizeof(s.warp_arrived));
        for (int t = 0; t < threads; ++t) {
          Fiber& f = s.fibers[t];
          f.done = false;
          f.tid = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
          if (f.started) continue;  // Parked in Trampoline: resumed below.
          if (f.stack.empty()) f.stack.resize(kStackBytes);
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, Trampoline, 0);
        }
        volatile int remaining = threads;  // volatile: live across _setjmp.
        while (remaining > 0) {
          const uint64_t before = s.progress;
          for (volatile int t = 0; t < threads; ++t) {
            if (s.fibers[t].done) continue;
            s.current = t;
            Fiber& f = s.fibers[t];
            if (_setjmp(s.scheduler) == 0) {
              if (!f.started) {
                f.started = true;
                setcontext(&f.ctx);
              }
              _longjmp(f.jb, 1);
            }
            if (s.fibers[t].done) remaining = remaining - 1;
          }
          if (remaining > 0 && s.progress == before) {
            std::fprintf(stderr,
                         "CUDA emulation: deadlock in CTA (%u,%u,%u): %d threads wait on a barrier "
                         "that the others never reach\n",
                         bx, by, bz, remaining);
            std::abort();
          }
        }
        s.current = -1;
      }
}

}  // namespace tessera::emu

// ---- The fake runtime API: host memory, immediate execution. ----

cudaError_t cudaGetLastError() {
  const cudaError_t e = tessera::emu::S().last_error;
  tessera::emu::S().last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    default:
      return "cudaError (emulated)";
  }
}
const char* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  *ms = std::chrono::duration<float, std::milli>(stop->t - start->t).count();
  return cudaSuccess;
}
