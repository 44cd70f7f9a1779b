// Writes GGUF v3 files (the layout gguf.h describes, as gguf-py's GGUFWriter lays it out: header,
// metadata in the order added, tensor records, data section aligned to `general.alignment`, each
// tensor padded to the alignment).
//
// Tensor bytes are produced one tensor at a time while the file is written, so a large checkpoint
// is never held in memory whole.
//
//   GgufWriter w;
//   w.AddString("general.architecture", "gemma4");
//   w.AddUint32("gemma4.block_count", 6);
//   w.AddTensor("token_embd.weight", GgmlType::kQ8_0, {hidden, vocab}, producer);
//   absl::Status s = w.WriteFile("/tmp/model.gguf");
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/model/gguf.h"

namespace tessera::runtime {

class GgufWriter {
 public:
  // Fills `out` with exactly the tensor's bytes (ggml's layout for its type).
  using Producer = std::function<absl::Status(std::string* out)>;

  void AddString(std::string_view key, std::string_view value);
  void AddUint32(std::string_view key, uint32_t value);
  void AddInt32(std::string_view key, int32_t value);
  void AddUint64(std::string_view key, uint64_t value);
  void AddFloat32(std::string_view key, float value);
  void AddBool(std::string_view key, bool value);
  void AddStringArray(std::string_view key, const std::vector<std::string>& values);
  void AddInt32Array(std::string_view key, const std::vector<int32_t>& values);
  void AddUint32Array(std::string_view key, const std::vector<uint32_t>& values);
  void AddFloat32Array(std::string_view key, const std::vector<float>& values);
  void AddBoolArray(std::string_view key, const std::vector<bool>& values);
  // A value read from another file, copied as it is (type, element type, payload).
  void AddValue(std::string_view key, const GgufValue& value);
  // `general.alignment` (written as metadata too); a power of 2. Default 32.
  void SetAlignment(uint32_t alignment);

  // A tensor of ggml type `type` and shape `ne` (ggml order: ne[0] is the row length). The
  // producer runs during WriteFile; it must give exactly the size the type and shape imply.
  void AddTensor(std::string name, GgmlType type, std::vector<int64_t> ne, Producer producer);
  // The same with the bytes at hand.
  void AddTensor(std::string name, GgmlType type, std::vector<int64_t> ne, std::string bytes);

  // The whole file (tests).
  absl::StatusOr<std::string> Serialize() const;
  // Writes `path` (through a temporary file renamed into place, so a failure leaves no torn file).
  absl::Status WriteFile(const std::string& path) const;

  // Bytes a tensor of `type` and shape `ne` takes; an error for an unknown type or a row length
  // that is not a multiple of the block.
  static absl::StatusOr<uint64_t> TensorBytes(GgmlType type, const std::vector<int64_t>& ne);

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    Producer producer;
  };
  void Key(std::string_view key, GgufType type);
  absl::Status Write(const std::function<absl::Status(std::string_view)>& sink) const;

  std::string metadata_;  // Serialized key/value records.
  uint64_t num_kv_ = 0;
  uint32_t alignment_ = 32;
  std::vector<Tensor> tensors_;
};

}  // namespace tessera::runtime
