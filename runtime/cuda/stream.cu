// Streams, async copies, pinned memory and graphs (stream.h). Under the CPU emulation the stream is
// a token, copies are synchronous memcpy/memset on host memory, and graphs are Unimplemented.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/stream.h"

namespace tessera::runtime::cuda {

#if defined(TESSERA_CUDA_EMULATION)

absl::Status SetDevice(int device) {
  if (device != 0) return absl::InvalidArgumentError("the CUDA emulation has one device, 0");
  return absl::OkStatus();
}

absl::Status MemoryInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = size_t{8} << 30;
  *free_bytes = *total_bytes;
  return absl::OkStatus();
}

absl::StatusOr<int> MultiprocessorCount(int device) { return 132; }

absl::StatusOr<std::unique_ptr<Stream>> Stream::Create() {
  return std::unique_ptr<Stream>(new Stream());
}
Stream::~Stream() = default;
absl::Status Stream::Synchronize() { return LaunchStatus("stream"); }

absl::Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes, cudaStream_t) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}
absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes, cudaStream_t) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}
absl::Status CopyDeviceAsync(void* dst, const void* src, size_t bytes, cudaStream_t) {
  if (bytes > 0) std::memmove(dst, src, bytes);
  return absl::OkStatus();
}
absl::Status MemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (bytes > 0) std::memset(dst, value, bytes);
  return absl::OkStatus();
}

absl::StatusOr<PinnedBuffer> PinnedBuffer::Allocate(size_t bytes) {
  PinnedBuffer b;
  b.data_ = std::calloc(1, bytes == 0 ? 1 : bytes);
  if (b.data_ == nullptr) return absl::ResourceExhaustedError("pinned host allocation failed");
  b.size_ = bytes;
  return b;
}
PinnedBuffer::~PinnedBuffer() { std::free(data_); }
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

absl::Status Graph::BeginCapture(cudaStream_t) {
  return absl::UnimplementedError("CUDA graphs are not available under the CPU emulation");
}
absl::StatusOr<std::unique_ptr<Graph>> Graph::EndCapture(cudaStream_t) {
  return absl::UnimplementedError("CUDA graphs are not available under the CPU emulation");
}
Graph::~Graph() = default;
absl::Status Graph::Launch(cudaStream_t) {
  return absl::UnimplementedError("CUDA graphs are not available under the CPU emulation");
}
bool GraphsSupported() { return false; }

#else  // A real GPU.

absl::Status SetDevice(int device) { return CudaStatus(cudaSetDevice(device), "cudaSetDevice"); }

absl::Status MemoryInfo(size_t* free_bytes, size_t* total_bytes) {
  return CudaStatus(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

absl::StatusOr<int> MultiprocessorCount(int device) {
  int n = 0;
  if (absl::Status s = CudaStatus(
          cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
      !s.ok()) {
    return s;
  }
  return n;
}

absl::StatusOr<std::unique_ptr<Stream>> Stream::Create() {
  std::unique_ptr<Stream> s(new Stream());
  if (absl::Status st = CudaStatus(cudaStreamCreateWithFlags(&s->stream_, cudaStreamNonBlocking),
                                   "cudaStreamCreateWithFlags");
      !st.ok()) {
    s->stream_ = nullptr;
    return st;
  }
  return s;
}

Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status Stream::Synchronize() {
  return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

absl::Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream),
                    "cudaMemcpyAsync to device");
}
absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpyAsync to host");
}
absl::Status CopyDeviceAsync(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream),
                    "cudaMemcpyAsync device to device");
}
absl::Status MemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemsetAsync(dst, value, bytes, stream), "cudaMemsetAsync");
}

absl::StatusOr<PinnedBuffer> PinnedBuffer::Allocate(size_t bytes) {
  PinnedBuffer b;
  if (absl::Status s = CudaStatus(cudaMallocHost(&b.data_, bytes == 0 ? 1 : bytes), "cudaMallocHost");
      !s.ok()) {
    b.data_ = nullptr;
    return s;
  }
  b.size_ = bytes;
  return b;
}
PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

absl::Status Graph::BeginCapture(cudaStream_t stream) {
  return CudaStatus(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                    "cudaStreamBeginCapture");
}

absl::StatusOr<std::unique_ptr<Graph>> Graph::EndCapture(cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  if (absl::Status s = CudaStatus(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
      !s.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return s;
  }
  cudaGraphExec_t exec = nullptr;
  if (absl::Status s = CudaStatus(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
      !s.ok()) {
    cudaGraphDestroy(graph);
    return s;
  }
  std::unique_ptr<Graph> g(new Graph());
  g->graph_ = graph;
  g->exec_ = exec;
  return g;
}

Graph::~Graph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_ != nullptr) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
}

absl::Status Graph::Launch(cudaStream_t stream) {
  return CudaStatus(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream), "cudaGraphLaunch");
}

bool GraphsSupported() { return true; }

#endif

void ClearLastError() { (void)cudaGetLastError(); }

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

}  // namespace tessera::runtime::cuda
