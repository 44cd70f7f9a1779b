// A GGUF reader (the file format of llama.cpp / ggml) over a memory mapping.
//
// Format (ggml/docs/gguf.md; little-endian): magic "GGUF", u32 version (3; 2 has the same layout),
// u64 tensor count, u64 metadata count; then the metadata, each a string key, a u32 value type and
// the value (strings are a u64 length and bytes; arrays a u32 element type, a u64 count and the
// elements); then one record per tensor: name, u32 dimension count, that many u64 dimensions (ggml
// order: ne[0] is the contiguous row length), u32 ggml type and u64 offset into the data section.
// The data section starts at the next multiple of `general.alignment` (32 by default).
//
// Every count, length, offset and size is checked against the bytes that are actually there before
// it is used (no allocation is sized by a number the file claims until the file is known to hold
// that many records), with the rules ggml's own reader applies (gguf.cpp): unique keys and tensor
// names, names under 64 bytes, at most 4 dimensions, row lengths a multiple of the type's block,
// tensor offsets aligned and laid out one after the other, data inside the file. A bad file is an
// InvalidArgument naming the file and the problem, never a crash (tests/fuzz/gguf_fuzz.cc).
//
// Nothing is copied: strings and tensor data point into the mapping, which lives as long as the
// GgufFile.
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
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime {

// ggml's tensor types, as GGUF stores them, and their block sizes: runtime/quant/ggml_type.h.
using GgmlType = quant::GgmlType;

// llama.cpp's name of a type as GGUF tools print it ("Q4_K", "BF16"), or "type 77" for an id ggml
// does not define.
std::string GgmlTypeName(uint32_t id);
inline std::string GgmlTypeName(GgmlType t) { return GgmlTypeName(static_cast<uint32_t>(t)); }

// Metadata value types.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "string", "array", ...
const char* GgufTypeName(GgufType type);
// Bytes of one scalar of `type` (0 for string and array).
size_t GgufScalarSize(GgufType type);

struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType element_type = GgufType::kUint8;  // Arrays only.
  uint64_t count = 1;                        // Arrays: the element count.
  // Scalars and numeric arrays: the little-endian payload in the mapping (not aligned).
  const uint8_t* data = nullptr;
  // A string value (one entry) or every element of a string array.
  std::vector<std::string_view> strings;

  bool is_array() const { return type == GgufType::kArray; }
  // "uint32", "array of string", ...
  std::string TypeString() const;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order, 1 to 4 entries: ne[0] is the row length.
  uint32_t type = 0;        // A GgmlType that quant::FindTypeTraits knows.
  uint64_t offset = 0;      // From the start of the data section.
  uint64_t num_bytes = 0;
  const uint8_t* data = nullptr;  // Into the mapping (aligned to the file's alignment).

  GgmlType ggml_type() const { return static_cast<GgmlType>(type); }
  int64_t num_elements() const;
  // ne[1] * ne[2] * ne[3]: rows of ne[0] elements.
  int64_t num_rows() const;
  // "[64, 512]" (ggml order, as llama.cpp prints shapes).
  std::string ShapeString() const;
};

// The default data alignment (GGUF_DEFAULT_ALIGNMENT).
inline constexpr uint64_t kGgufDefaultAlignment = 32;
// Tensor names are shorter than GGML_MAX_NAME (64) bytes.
inline constexpr size_t kGgufMaxTensorName = 63;
inline constexpr int kGgufMaxDims = 4;

class GgufFile {
 public:
  // Maps `path` read-only and parses it.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes the caller keeps alive for the GgufFile's lifetime (tests, fuzzing). `name` is
  // what messages call the file.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::string_view bytes,
                                                         const std::string& name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_size() const { return size_; }
  // Where the data section starts (0 when there are no tensors).
  uint64_t data_offset() const { return data_offset_; }

  // Keys in file order.
  const std::vector<std::string_view>& keys() const { return keys_; }
  // nullptr when absent.
  const GgufValue* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Tensors in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  // nullptr when absent.
  const GgufTensor* FindTensor(std::string_view name) const;
  // Bytes of all tensor data.
  uint64_t tensor_bytes() const;

  // Typed reads. A missing key or a value of another type is InvalidArgument naming the file, the
  // key, and the type found and wanted.
  // Any integer type; a uint64 above INT64_MAX is an error.
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  // float32 or float64.
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;
  absl::StatusOr<std::vector<bool>> GetBoolArray(std::string_view key) const;
  absl::StatusOr<const std::vector<std::string_view>*> GetStringArray(std::string_view key) const;

  // "<path>: <what>" as an InvalidArgument.
  absl::Status Error(std::string_view what) const;

 private:
  GgufFile() = default;
  absl::Status ParseAll(const uint8_t* begin, uint64_t size);
  absl::StatusOr<const GgufValue*> Get(std::string_view key) const;

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::string_view> keys_;
  std::map<std::string_view, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace tessera::runtime
