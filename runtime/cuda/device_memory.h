// Device memory and timing for tests, benchmarks and (later) the CUDA runner, without CUDA headers:
// an owning DeviceBuffer, a device-wide synchronise, event timing and the copy-bandwidth yardstick.
// Without a GPU every call returns Unavailable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera::runtime::cuda {

// One cudaMalloc'd allocation, freed on destruction. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return size_; }

  absl::Status CopyFromHost(const void* src, size_t bytes, size_t offset = 0);
  absl::Status CopyToHost(void* dst, size_t bytes, size_t offset = 0) const;
  absl::Status Memset(int byte_value);

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Allocates and uploads a host vector.
template <typename T>
absl::StatusOr<DeviceBuffer> Upload(const std::vector<T>& host) {
  auto buf = DeviceBuffer::Allocate(sizeof(T) * (host.empty() ? 1 : host.size()));
  if (!buf.ok()) return buf.status();
  if (!host.empty()) {
    if (absl::Status s = buf->CopyFromHost(host.data(), sizeof(T) * host.size()); !s.ok()) return s;
  }
  return buf;
}

// Downloads `n` elements.
template <typename T>
absl::StatusOr<std::vector<T>> Download(const DeviceBuffer& buf, size_t n) {
  std::vector<T> host(n);
  if (absl::Status s = buf.CopyToHost(host.data(), sizeof(T) * n); !s.ok()) return s;
  return host;
}

// cudaDeviceSynchronize, reporting any asynchronous kernel error.
absl::Status Synchronize();

// Runs `launch` once to warm up, then `iters` times between two events on the default stream;
// returns the mean milliseconds per call.
absl::StatusOr<double> TimeMs(const std::function<absl::Status()>& launch, int iters);

// Device-to-device cudaMemcpy bandwidth over a `bytes` buffer, counting read + write bytes
// (2 * bytes per copy), in GB/s (1e9). The yardstick for memory-bound kernels.
absl::StatusOr<double> MeasureCopyGBps(size_t bytes, int iters);

}  // namespace tessera::runtime::cuda
