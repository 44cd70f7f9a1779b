// The execution model behind the CUDA emulation (cuda_runtime.h here): a grid runs CTA by CTA; the
// threads of a CTA are fibers (ucontext) on the calling thread, switched only at barriers, so code
// between barriers runs as one uninterrupted thread. A barrier that some threads of the CTA never
// reach (a divergent __syncthreads) is reported as a deadlock and aborts the test: that is a bug on
// a GPU too.
#pragma once

#include <cstdint>
#include <functional>

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

namespace tessera::emu {

const dim3& ThreadIdx();
const dim3& BlockIdx();
const dim3& BlockDim();
const dim3& GridDim();

void SyncThreads();
void SyncWarp();
float ShuffleXor(float v, int lane_mask);

// Runs `kernel` for every thread of every CTA of the grid. Records an error (returned by the next
// cudaGetLastError) for an empty or oversized launch instead of running it.
void Launch(dim3 grid, dim3 block, const std::function<void()>& kernel);

}  // namespace tessera::emu

// The emulated form of kernel<<<grid, block, smem, stream>>>(args...) (cuda_common.cuh's
// TESSERA_LAUNCH).
#define TESSERA_EMU_LAUNCH(kernel, grid, block, stream, ...) \
  ::tessera::emu::Launch(dim3(grid), dim3(block), [&]() { kernel(__VA_ARGS__); })
