// A safetensors reader over memory-mapped files: one file, or a sharded checkpoint described by
// `model.safetensors.index.json`.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the header), an
// optional "__metadata__" object, then the raw little-endian data. The header is validated strictly
// (size bound, known dtypes, byte size = shape x dtype, offsets contiguous, in the file and
// covering the data exactly, no duplicate names) so a corrupt or lying file fails at open with a
// message naming the tensor, never later with a crash.
//
// The data is never copied: TensorView points into the mapping, which lives as long as the
// SafetensorsFile (or Checkpoint) that owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/bf16.h"

namespace tessera::runtime {

enum class DType { kBF16, kF16, kF32, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

// "BF16", "F32", ... as written in safetensors headers.
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // Into the mapping; little-endian; not necessarily aligned.
  size_t num_bytes = 0;

  int64_t num_elements() const;
  // "[64, 640]".
  std::string ShapeString() const;
};

// Converts a floating-point tensor (BF16, F16, F32, F64) to fp32; `out` holds num_elements().
absl::Status ToFloat(const TensorView& t, float* out);
absl::StatusOr<std::vector<float>> ToFloatVector(const TensorView& t);
// Converts an integer tensor (I64, I32, I16, I8, U8, BOOL) to int64.
absl::StatusOr<std::vector<int64_t>> ToInt64Vector(const TensorView& t);

float F16ToFloat(uint16_t v);

// Headers larger than this are rejected (the 12B checkpoint's largest shard header is ~100 KiB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates its header.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;
  // Sorted by name.
  const std::map<std::string, TensorView, std::less<>>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a header against a file of `file_size` bytes whose data section starts at
// `data` (nullptr allowed: views then carry offsets only). Exposed for tests.
absl::StatusOr<std::map<std::string, TensorView, std::less<>>> ParseSafetensorsHeader(
    std::string_view header_json, const uint8_t* data, uint64_t data_size, const std::string& path,
    std::map<std::string, std::string>* metadata);

// Every tensor of a checkpoint directory: `model.safetensors`, or the shards named by
// `model.safetensors.index.json` ("weight_map": name -> shard file). A name listed in the index
// must be in the shard it names; a name in two shards is an error.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);
  // A single file (no index).
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenFile(const std::string& path);

  const TensorView* Find(std::string_view name) const;
  const std::map<std::string, const TensorView*, std::less<>>& tensors() const { return index_; }
  int num_files() const { return static_cast<int>(files_.size()); }
  // Bytes of tensor data across all files.
  uint64_t total_bytes() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
};

}  // namespace tessera::runtime
