// DeviceBuffer, synchronisation and timing (device_memory.h).
#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/device_memory.h"

namespace tessera::runtime::cuda {

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  if (absl::Status s = CudaStatus(cudaMalloc(&b.data_, bytes == 0 ? 1 : bytes), "cudaMalloc");
      !s.ok()) {
    b.data_ = nullptr;
    return s;
  }
  b.size_ = bytes;
  return b;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t bytes, size_t offset) {
  if (offset + bytes > size_)
    return absl::OutOfRangeError("DeviceBuffer::CopyFromHost past the end");
  return CudaStatus(
      cudaMemcpy(static_cast<char*>(data_) + offset, src, bytes, cudaMemcpyHostToDevice),
      "cudaMemcpy to device");
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t bytes, size_t offset) const {
  if (offset + bytes > size_) return absl::OutOfRangeError("DeviceBuffer::CopyToHost past the end");
  return CudaStatus(
      cudaMemcpy(dst, static_cast<const char*>(data_) + offset, bytes, cudaMemcpyDeviceToHost),
      "cudaMemcpy to host");
}

absl::Status DeviceBuffer::Memset(int byte_value) {
  return CudaStatus(cudaMemset(data_, byte_value, size_), "cudaMemset");
}

absl::Status Synchronize() { return CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

namespace {
// The two events of a timing, destroyed on every path.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~EventPair() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
};
}  // namespace

absl::StatusOr<double> TimeMs(const std::function<absl::Status()>& launch, int iters) {
  if (iters < 1) return absl::InvalidArgumentError("TimeMs: iters must be >= 1");
  if (absl::Status s = launch(); !s.ok()) return s;
  if (absl::Status s = Synchronize(); !s.ok()) return s;
  EventPair ev;
  if (absl::Status s = CudaStatus(cudaEventCreate(&ev.start), "cudaEventCreate"); !s.ok()) return s;
  if (absl::Status s = CudaStatus(cudaEventCreate(&ev.stop), "cudaEventCreate"); !s.ok()) return s;
  if (absl::Status s = CudaStatus(cudaEventRecord(ev.start), "cudaEventRecord"); !s.ok()) return s;
  for (int i = 0; i < iters; ++i) {
    if (absl::Status s = launch(); !s.ok()) return s;
  }
  if (absl::Status s = CudaStatus(cudaEventRecord(ev.stop), "cudaEventRecord"); !s.ok()) return s;
  if (absl::Status s = CudaStatus(cudaEventSynchronize(ev.stop), "cudaEventSynchronize"); !s.ok()) {
    return s;
  }
  float ms = 0.0f;
  if (absl::Status s =
          CudaStatus(cudaEventElapsedTime(&ms, ev.start, ev.stop), "cudaEventElapsedTime");
      !s.ok()) {
    return s;
  }
  return static_cast<double>(ms) / iters;
}

absl::StatusOr<double> MeasureCopyGBps(size_t bytes, int iters) {
  auto src = DeviceBuffer::Allocate(bytes);
  if (!src.ok()) return src.status();
  auto dst = DeviceBuffer::Allocate(bytes);
  if (!dst.ok()) return dst.status();
  if (absl::Status s = src->Memset(1); !s.ok()) return s;
  auto ms = TimeMs(
      [&]() {
        return CudaStatus(
            cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice),
            "cudaMemcpyAsync");
      },
      iters);
  if (!ms.ok()) return ms.status();
  return 2.0 * static_cast<double>(bytes) / (*ms * 1e-3) / 1e9;
}

}  // namespace tessera::runtime::cuda
