#include "runtime/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {
namespace {

using json = nlohmann::json;

struct DTypeInfo {
  const char* name;
  DType dtype;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"BF16", DType::kBF16, 2}, {"F16", DType::kF16, 2}, {"F32", DType::kF32, 4},
    {"F64", DType::kF64, 8},   {"I64", DType::kI64, 8}, {"I32", DType::kI32, 4},
    {"I16", DType::kI16, 2},   {"I8", DType::kI8, 1},   {"U8", DType::kU8, 1},
    {"BOOL", DType::kBool, 1},
};

template <typename T>
T LoadUnaligned(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string ErrnoText() { return std::strerror(errno); }

}  // namespace

const char* DTypeName(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

float F16ToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // Subnormal: normalise.
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

absl::Status ToFloat(const TensorView& t, float* out) {
  const int64_t n = t.num_elements();
  const uint8_t* p = t.data;
  if (p == nullptr && n > 0)
    return absl::FailedPreconditionError("tensor " + t.name + " has no data");
  switch (t.dtype) {
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(LoadUnaligned<uint16_t>(p + 2 * i));
      return absl::OkStatus();
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToFloat(LoadUnaligned<uint16_t>(p + 2 * i));
      return absl::OkStatus();
    case DType::kF32:
      std::memcpy(out, p, n * 4);
      return absl::OkStatus();
    case DType::kF64:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadUnaligned<double>(p + 8 * i));
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", t.name, " has dtype ", DTypeName(t.dtype), "; expected a float type"));
  }
}

absl::StatusOr<std::vector<float>> ToFloatVector(const TensorView& t) {
  std::vector<float> v(t.num_elements());
  absl::Status s = ToFloat(t, v.data());
  if (!s.ok()) return s;
  return v;
}

absl::StatusOr<std::vector<int64_t>> ToInt64Vector(const TensorView& t) {
  const int64_t n = t.num_elements();
  std::vector<int64_t> v(n);
  const uint8_t* p = t.data;
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::kI64:
        v[i] = LoadUnaligned<int64_t>(p + 8 * i);
        break;
      case DType::kI32:
        v[i] = LoadUnaligned<int32_t>(p + 4 * i);
        break;
      case DType::kI16:
        v[i] = LoadUnaligned<int16_t>(p + 2 * i);
        break;
      case DType::kI8:
        v[i] = static_cast<int8_t>(p[i]);
        break;
      case DType::kU8:
      case DType::kBool:
        v[i] = p[i];
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor ", t.name, " has dtype ", DTypeName(t.dtype), "; expected an integer type"));
    }
  }
  return v;
}

absl::StatusOr<std::map<std::string, TensorView, std::less<>>> ParseSafetensorsHeader(
    std::string_view header_json, const uint8_t* data, uint64_t data_size, const std::string& path,
    std::map<std::string, std::string>* metadata) {
  // nlohmann keeps the last of duplicate keys silently; the callback sees every key.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header = json::parse(header_json.begin(), header_json.end(), on_event,
                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::InvalidArgumentError(path + ": safetensors header is not a JSON object");
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(path + ": tensor '" + duplicate +
                                      "' appears twice in the safetensors header");
  }
  std::map<std::string, TensorView, std::less<>> tensors;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object())
        return absl::InvalidArgumentError(path + ": __metadata__ is not an object");
      if (metadata != nullptr) {
        for (auto m = e.begin(); m != e.end(); ++m) {
          if (m.value().is_string()) (*metadata)[m.key()] = m.value().get<std::string>();
        }
      }
      continue;
    }
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(path + ": tensor '" + name + "': " + what);
    };
    if (!e.is_object()) return bad("entry is not an object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return bad("missing string field 'dtype'");
    if (sh == e.end() || !sh->is_array()) return bad("missing array field 'shape'");
    if (off == e.end() || !off->is_array() || off->size() != 2) {
      return bad("missing field 'data_offsets' [begin, end]");
    }
    TensorView t;
    t.name = name;
    const std::string dname = dt->get<std::string>();
    size_t elem = 0;
    for (const auto& d : kDTypes) {
      if (dname == d.name) {
        t.dtype = d.dtype;
        elem = d.size;
      }
    }
    if (elem == 0) return bad("unsupported dtype '" + dname + "'");
    // Overflow-safe element count: every dim bounded, product bounded by the data size.
    uint64_t count = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) return bad("shape entries must be non-negative integers");
      uint64_t v = d.get<uint64_t>();
      if (v > data_size && v > 0) return bad("shape " + sh->dump() + " exceeds the file size");
      t.shape.push_back(static_cast<int64_t>(v));
      if (v != 0 && count > data_size / v) {
        count = data_size + 1;  // Remember the overflow; checked below.
      } else {
        count *= v;
      }
    }
    for (const json& o : *off) {
      if (!o.is_number_unsigned()) return bad("data_offsets must be non-negative integers");
    }
    uint64_t begin = (*off)[0].get<uint64_t>();
    uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end) return bad("data_offsets begin > end");
    if (end > data_size) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                              ") run past the end of the data (", data_size,
                              " bytes; is the file truncated?)"));
    }
    if (count > data_size || count * elem != end - begin) {
      return bad(absl::StrCat(
          "shape ", sh->dump(), " x ", dname, " needs ",
          count > data_size ? std::string("more than the file") : absl::StrCat(count * elem),
          " bytes but data_offsets span ", end - begin));
    }
    t.num_bytes = end - begin;
    t.data = data == nullptr ? nullptr : data + begin;
    auto inserted = tensors.emplace(name, std::move(t));
    spans.push_back({begin, end, &inserted.first->first});
  }
  // The tensors must tile the data section exactly: no gaps, no overlaps, nothing after.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    if (s.begin < cursor) {
      return absl::InvalidArgumentError(path + ": tensor '" + *s.name +
                                        "' overlaps the previous tensor's data");
    }
    if (s.begin > cursor) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": gap in the data before tensor '",
                                                     *s.name, "' (bytes ", cursor, "..", s.begin,
                                                     " belong to no tensor)"));
    }
    cursor = s.end;
  }
  if (cursor != data_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensors cover ", cursor, " of ",
                                                   data_size,
                                                   " data bytes; the rest is unaccounted"));
  }
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError("cannot open " + path + ": " + ErrnoText());
  struct stat st;
  if (fstat(fd, &st) != 0) {
    std::string err = ErrnoText();
    ::close(fd);
    return absl::InternalError("cannot stat " + path + ": " + err);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", size, " bytes is too short for a safetensors file (truncated?)"));
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError("cannot mmap " + path + ": " + ErrnoText());
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_size_ = size;
  const uint8_t* bytes = static_cast<const uint8_t*>(map);
  const uint64_t header_size = LoadUnaligned<uint64_t>(bytes);
  if (header_size > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_size,
                                                   " exceeds the limit of ",
                                                   kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_size > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_size,
                                                   " runs past the end of the ", size,
                                                   "-byte file (truncated?)"));
  }
  std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_size);
  auto tensors = ParseSafetensorsHeader(header, bytes + 8 + header_size, size - 8 - header_size,
                                        path, &file->metadata_);
  if (!tensors.ok()) return tensors.status();
  file->tensors_ = std::move(*tensors);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  auto ckpt = std::make_unique<Checkpoint>();
  for (const auto& [name, view] : (*file)->tensors()) ckpt->index_[name] = &view;
  ckpt->files_.push_back(std::move(*file));
  return ckpt;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::ifstream in(index_path);
  if (!in) {
    struct stat st;
    const std::string single = dir + "/model.safetensors";
    if (stat(single.c_str(), &st) != 0) {
      return absl::NotFoundError("no model.safetensors or model.safetensors.index.json in " + dir);
    }
    return OpenFile(single);
  }
  std::stringstream text;
  text << in.rdbuf();
  json index = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(index_path + " is not a JSON object");
  }
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return absl::InvalidArgumentError(index_path + ": missing object field 'weight_map'");
  }
  auto ckpt = std::make_unique<Checkpoint>();
  std::map<std::string, SafetensorsFile*> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(index_path + ": weight_map['" + it.key() +
                                        "'] is not a file name");
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return absl::InvalidArgumentError(index_path + ": bad shard file name '" + shard + "'");
    }
    if (shards.count(shard) == 0) {
      auto file = SafetensorsFile::Open(dir + "/" + shard);
      if (!file.ok()) return file.status();
      shards[shard] = file->get();
      ckpt->files_.push_back(std::move(*file));
    }
    const TensorView* view = shards[shard]->Find(it.key());
    if (view == nullptr) {
      return absl::InvalidArgumentError(index_path + ": tensor '" + it.key() +
                                        "' is listed in shard " + shard + " but is not in it");
    }
    ckpt->index_[it.key()] = view;
  }
  // Tensors present in a shard but not in the index are still reachable; a name in two shards is
  // ambiguous.
  for (const auto& file : ckpt->files_) {
    for (const auto& [name, view] : file->tensors()) {
      auto it = ckpt->index_.find(name);
      if (it == ckpt->index_.end()) {
        ckpt->index_[name] = &view;
      } else if (it->second != &view) {
        return absl::InvalidArgumentError("tensor '" + name + "' appears in more than one shard (" +
                                          file->path() + " and another)");
      }
    }
  }
  return ckpt;
}

const TensorView* Checkpoint::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, view] : index_) n += view->num_bytes;
  return n;
}

}  // namespace tessera::runtime
