// Streams, asynchronous copies, pinned host memory and CUDA graphs for the CUDA runner, without
// CUDA headers (host code that includes this compiles with any C++ compiler). Under the CPU
// emulation streams are synchronous and graph capture reports Unimplemented, so callers keep an
// eager path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

absl::Status SetDevice(int device);
// Free and total bytes of the current device.
absl::Status MemoryInfo(size_t* free_bytes, size_t* total_bytes);
absl::StatusOr<int> MultiprocessorCount(int device);

// A non-blocking stream, destroyed with the object.
class Stream {
 public:
  static absl::StatusOr<std::unique_ptr<Stream>> Create();
  ~Stream();
  cudaStream_t get() const { return stream_; }
  absl::Status Synchronize();

 private:
  Stream() = default;
  cudaStream_t stream_ = nullptr;
};

absl::Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes, cudaStream_t stream);
absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes, cudaStream_t stream);
absl::Status CopyDeviceAsync(void* dst, const void* src, size_t bytes, cudaStream_t stream);
absl::Status MemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream);

// Page-locked host memory (cudaMallocHost), so async copies are truly asynchronous. Move-only.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  static absl::StatusOr<PinnedBuffer> Allocate(size_t bytes);
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer();
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// A captured, instantiated CUDA graph. Capture: BeginCapture(stream), enqueue work on `stream`,
// then EndCapture(stream) returns the executable graph.
class Graph {
 public:
  static absl::Status BeginCapture(cudaStream_t stream);
  // Ends the capture begun on `stream` and instantiates it. On failure the capture is ended and
  // discarded.
  static absl::StatusOr<std::unique_ptr<Graph>> EndCapture(cudaStream_t stream);
  ~Graph();
  absl::Status Launch(cudaStream_t stream);

 private:
  Graph() = default;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
};

// Whether this build can capture graphs (false under the CPU emulation).
bool GraphsSupported();

// Reads and clears this thread's last CUDA error (cudaGetLastError), e.g. after a failed capture,
// so that it does not fail the next launch check.
void ClearLastError();

}  // namespace tessera::runtime::cuda
