#include "runtime/model/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tessera::runtime {
namespace {

template <typename T>
void Put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out->append(buf, sizeof(T));
}

void PutString(std::string* out, std::string_view s) {
  Put<uint64_t>(out, s.size());
  out->append(s.data(), s.size());
}

}  // namespace

void GgufWriter::Key(std::string_view key, GgufType type) {
  PutString(&metadata_, key);
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(type));
  ++num_kv_;
}

void GgufWriter::AddString(std::string_view key, std::string_view value) {
  Key(key, GgufType::kString);
  PutString(&metadata_, value);
}

void GgufWriter::AddUint32(std::string_view key, uint32_t value) {
  Key(key, GgufType::kUint32);
  Put(&metadata_, value);
}

void GgufWriter::AddInt32(std::string_view key, int32_t value) {
  Key(key, GgufType::kInt32);
  Put(&metadata_, value);
}

void GgufWriter::AddUint64(std::string_view key, uint64_t value) {
  Key(key, GgufType::kUint64);
  Put(&metadata_, value);
}

void GgufWriter::AddFloat32(std::string_view key, float value) {
  Key(key, GgufType::kFloat32);
  Put(&metadata_, value);
}

void GgufWriter::AddBool(std::string_view key, bool value) {
  Key(key, GgufType::kBool);
  Put<uint8_t>(&metadata_, value ? 1 : 0);
}

void GgufWriter::AddStringArray(std::string_view key, const std::vector<std::string>& values) {
  Key(key, GgufType::kArray);
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(GgufType::kString));
  Put<uint64_t>(&metadata_, values.size());
  for (const std::string& v : values) PutString(&metadata_, v);
}

void GgufWriter::AddInt32Array(std::string_view key, const std::vector<int32_t>& values) {
  Key(key, GgufType::kArray);
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(GgufType::kInt32));
  Put<uint64_t>(&metadata_, values.size());
  for (int32_t v : values) Put(&metadata_, v);
}

void GgufWriter::AddUint32Array(std::string_view key, const std::vector<uint32_t>& values) {
  Key(key, GgufType::kArray);
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(GgufType::kUint32));
  Put<uint64_t>(&metadata_, values.size());
  for (uint32_t v : values) Put(&metadata_, v);
}

void GgufWriter::AddFloat32Array(std::string_view key, const std::vector<float>& values) {
  Key(key, GgufType::kArray);
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(GgufType::kFloat32));
  Put<uint64_t>(&metadata_, values.size());
  for (float v : values) Put(&metadata_, v);
}

void GgufWriter::AddBoolArray(std::string_view key, const std::vector<bool>& values) {
  Key(key, GgufType::kArray);
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(GgufType::kBool));
  Put<uint64_t>(&metadata_, values.size());
  for (bool v : values) Put<uint8_t>(&metadata_, v ? 1 : 0);
}

void GgufWriter::AddValue(std::string_view key, const GgufValue& value) {
  Key(key, value.type);
  if (value.type == GgufType::kString) {
    PutString(&metadata_, value.strings[0]);
    return;
  }
  if (value.type != GgufType::kArray) {
    metadata_.append(reinterpret_cast<const char*>(value.data), GgufScalarSize(value.type));
    return;
  }
  Put<uint32_t>(&metadata_, static_cast<uint32_t>(value.element_type));
  Put<uint64_t>(&metadata_, value.count);
  if (value.element_type == GgufType::kString) {
    for (std::string_view s : value.strings) PutString(&metadata_, s);
  } else {
    metadata_.append(reinterpret_cast<const char*>(value.data),
                     value.count * GgufScalarSize(value.element_type));
  }
}

void GgufWriter::SetAlignment(uint32_t alignment) {
  alignment_ = alignment;
  AddUint32("general.alignment", alignment);
}

void GgufWriter::AddTensor(std::string name, GgmlType type, std::vector<int64_t> ne,
                           Producer producer) {
  tensors_.push_back({std::move(name), type, std::move(ne), std::move(producer)});
}

void GgufWriter::AddTensor(std::string name, GgmlType type, std::vector<int64_t> ne,
                           std::string bytes) {
  auto shared = std::make_shared<std::string>(std::move(bytes));
  AddTensor(std::move(name), type, std::move(ne), [shared](std::string* out) {
    *out = *shared;
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> GgufWriter::TensorBytes(GgmlType type, const std::vector<int64_t>& ne) {
  const quant::TypeTraits* t = quant::FindTypeTraits(static_cast<uint32_t>(type));
  if (t == nullptr) return absl::InvalidArgumentError("unknown ggml type " + GgmlTypeName(type));
  if (ne.empty() || ne.size() > kGgufMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tensor has 1 to 4 dimensions, not ", ne.size()));
  }
  uint64_t n = 1;
  for (int64_t d : ne) {
    if (d < 0) return absl::InvalidArgumentError("negative dimension");
    n *= static_cast<uint64_t>(d);
  }
  if (ne[0] % t->block_elems != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows of ", ne[0], " elements are not a multiple of ", GgmlTypeName(type),
                     "'s block of ", t->block_elems));
  }
  return n / t->block_elems * t->block_bytes;
}

absl::Status GgufWriter::Write(const std::function<absl::Status(std::string_view)>& sink) const {
  std::string head;
  head.append("GGUF", 4);
  Put<uint32_t>(&head, 3);
  Put<uint64_t>(&head, tensors_.size());
  Put<uint64_t>(&head, num_kv_);
  head += metadata_;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  const auto padded = [&](uint64_t n) { return n + (alignment_ - n % alignment_) % alignment_; };
  for (const Tensor& t : tensors_) {
    auto bytes = TensorBytes(t.type, t.ne);
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", t.name, ": ", bytes.status().message()));
    }
    if (t.name.size() > kGgufMaxTensorName) {
      return absl::InvalidArgumentError("tensor name " + t.name + " is longer than 63 bytes");
    }
    PutString(&head, t.name);
    Put<uint32_t>(&head, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) Put<uint64_t>(&head, static_cast<uint64_t>(d));
    Put<uint32_t>(&head, static_cast<uint32_t>(t.type));
    Put<uint64_t>(&head, offset);
    sizes.push_back(*bytes);
    offset += padded(*bytes);
  }
  if (!tensors_.empty()) head.append(padded(head.size()) - head.size(), '\0');
  absl::Status s = sink(head);
  if (!s.ok()) return s;
  std::string data;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    data.clear();
    s = tensors_[i].producer(&data);
    if (!s.ok()) return s;
    if (data.size() != sizes[i]) {
      return absl::InternalError(absl::StrCat("tensor ", tensors_[i].name, ": the producer gave ",
                                              data.size(), " bytes, the shape needs ", sizes[i]));
    }
    data.append(padded(data.size()) - data.size(), '\0');
    s = sink(data);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GgufWriter::Serialize() const {
  std::string out;
  absl::Status s = Write([&](std::string_view b) {
    out.append(b.data(), b.size());
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError("cannot write " + tmp + ": " + std::strerror(errno));
  }
  absl::Status s = Write([&](std::string_view b) {
    if (std::fwrite(b.data(), 1, b.size(), f) != b.size()) {
      return absl::InternalError("write to " + tmp + " failed: " + std::strerror(errno));
    }
    return absl::OkStatus();
  });
  if (std::fclose(f) != 0 && s.ok()) {
    s = absl::InternalError("closing " + tmp + " failed: " + std::strerror(errno));
  }
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = absl::InternalError("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  if (!s.ok()) std::remove(tmp.c_str());
  return s;
}

}  // namespace tessera::runtime
