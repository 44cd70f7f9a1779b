#include "runtime/model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tessera::runtime {
namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

std::string ErrnoText() { return std::strerror(errno); }

// Reads little-endian values from [pos, end), refusing to step past end. Every read names what it
// was reading, so the error says where the file ran out.
class Cursor {
 public:
  Cursor(const uint8_t* begin, uint64_t size) : begin_(begin), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return begin_ + pos_; }

  bool Skip(uint64_t n) {
    if (n > remaining()) return false;
    pos_ += n;
    return true;
  }
  template <typename T>
  bool Read(T* out) {
    if (sizeof(T) > remaining()) return false;
    std::memcpy(out, here(), sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  // A u64 length and that many bytes.
  bool ReadString(std::string_view* out) {
    uint64_t n = 0;
    if (!Read(&n) || n > remaining()) return false;
    *out = std::string_view(reinterpret_cast<const char*>(here()), n);
    pos_ += n;
    return true;
  }

 private:
  const uint8_t* begin_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

bool ValidValueType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

bool IsIntegerType(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

// Element `i` of integer payload `p` of `type` (the caller checked IsIntegerType). Sets *overflow
// for a uint64 above INT64_MAX.
int64_t IntAt(GgufType type, const uint8_t* p, uint64_t i, bool* overflow) {
  auto load = [&](auto v) {
    std::memcpy(&v, p + i * sizeof(v), sizeof(v));
    return v;
  };
  switch (type) {
    case GgufType::kUint8:
      return load(uint8_t{});
    case GgufType::kInt8:
      return load(int8_t{});
    case GgufType::kUint16:
      return load(uint16_t{});
    case GgufType::kInt16:
      return load(int16_t{});
    case GgufType::kUint32:
      return load(uint32_t{});
    case GgufType::kInt32:
      return load(int32_t{});
    case GgufType::kUint64: {
      const uint64_t v = load(uint64_t{});
      if (v > kInt64Max) *overflow = true;
      return static_cast<int64_t>(v);
    }
    default:
      return load(int64_t{});
  }
}

double FloatAt(GgufType type, const uint8_t* p, uint64_t i) {
  if (type == GgufType::kFloat32) {
    float v;
    std::memcpy(&v, p + i * 4, 4);
    return v;
  }
  double v;
  std::memcpy(&v, p + i * 8, 8);
  return v;
}

std::string Quoted(std::string_view s) {
  // Names in messages: printable ASCII kept, anything else escaped, long names cut.
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  if (s.size() > 80) out += "...";
  return out + "'";
}

}  // namespace

std::string GgmlTypeName(uint32_t id) {
  const quant::TypeTraits* t = quant::FindTypeTraits(id);
  if (t == nullptr) return absl::StrCat("type ", id);
  std::string name = t->name;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

const char* GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
  }
  return "unknown";
}

size_t GgufScalarSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

std::string GgufValue::TypeString() const {
  if (!is_array()) return GgufTypeName(type);
  return absl::StrCat("array of ", GgufTypeName(element_type));
}

int64_t GgufTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

int64_t GgufTensor::num_rows() const {
  int64_t n = 1;
  for (size_t i = 1; i < ne.size(); ++i) n *= ne[i];
  return n;
}

std::string GgufTensor::ShapeString() const { return "[" + absl::StrJoin(ne, ", ") + "]"; }

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const absl::Status s = absl::NotFoundError("cannot open " + path + ": " + ErrnoText());
    return s;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const std::string why = ErrnoText();
    ::close(fd);
    return absl::InternalError("cannot stat " + path + ": " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(path + " is not a regular file");
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return f->Error("the file is empty; a GGUF file starts with the magic 'GGUF'");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string why = ErrnoText();
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError("cannot mmap " + path + ": " + why);
  f->map_ = map;
  f->map_size_ = size;
  absl::Status s = f->ParseAll(static_cast<const uint8_t*>(map), size);
  if (!s.ok()) return s;
  return f;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::string_view bytes,
                                                          const std::string& name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = name;
  absl::Status s = f->ParseAll(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!s.ok()) return s;
  return f;
}

GgufFile::~GgufFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

absl::Status GgufFile::Error(std::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat(path_, ": ", std::string(what)));
}

absl::Status GgufFile::ParseAll(const uint8_t* begin, uint64_t size) {
  size_ = size;
  Cursor c(begin, size);
  char magic[4];
  if (!c.Read(&magic)) return Error("too short for a GGUF header (magic 'GGUF', version, counts)");
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    return Error(absl::StrCat("not a GGUF file: the magic is ", Quoted(std::string_view(magic, 4)),
                              ", expected 'GGUF'"));
  }
  if (!c.Read(&version_)) return Error("the file ends inside the header (version)");
  if (version_ == 1) return Error("GGUF version 1 is not supported (versions 2 and 3 are)");
  if ((version_ & 0xFFFF) == 0 && version_ != 0) {
    return Error(absl::StrCat("GGUF version ", version_,
                              " looks byte-swapped: big-endian GGUF files are not supported"));
  }
  if (version_ != 2 && version_ != 3) {
    return Error(
        absl::StrCat("GGUF version ", version_, " is not supported (versions 2 and 3 are)"));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  if (!c.Read(&n_tensors) || !c.Read(&n_kv)) return Error("the file ends inside the header");
  // Each metadata entry takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes and
  // each tensor record at least 8 + 4 + 8 + 4 + 8: the counts cannot exceed what the bytes hold.
  if (n_kv > c.remaining() / 14) {
    return Error(absl::StrCat("the header claims ", n_kv, " metadata entries; ", c.remaining(),
                              " bytes cannot hold them"));
  }
  if (n_tensors > c.remaining() / 32) {
    return Error(absl::StrCat("the header claims ", n_tensors, " tensors; ", c.remaining(),
                              " bytes cannot hold them"));
  }

  keys_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string_view key;
    if (!c.ReadString(&key)) {
      return Error(absl::StrCat("the file ends inside the key of metadata entry ", i));
    }
    if (key.empty()) return Error(absl::StrCat("metadata entry ", i, " has an empty key"));
    if (metadata_.count(key) != 0) return Error("duplicate metadata key " + Quoted(key));
    const std::string where = "metadata " + Quoted(key);
    uint32_t type = 0;
    if (!c.Read(&type)) return Error("the file ends inside " + where);
    if (!ValidValueType(type)) {
      return Error(absl::StrCat(where, " has an invalid value type ", type));
    }
    GgufValue v;
    v.type = static_cast<GgufType>(type);
    if (v.type == GgufType::kString) {
      std::string_view s;
      if (!c.ReadString(&s)) return Error("the file ends inside the string " + where);
      v.strings.push_back(s);
    } else if (v.type == GgufType::kArray) {
      uint32_t et = 0;
      if (!c.Read(&et) || !c.Read(&v.count))
        return Error("the file ends inside the array " + where);
      if (!ValidValueType(et)) {
        return Error(absl::StrCat(where, " is an array of an invalid value type ", et));
      }
      v.element_type = static_cast<GgufType>(et);
      if (v.element_type == GgufType::kArray) {
        return Error(where + " is an array of arrays, which GGUF readers do not support");
      }
      if (v.element_type == GgufType::kString) {
        if (v.count > c.remaining() / 8) {
          return Error(absl::StrCat(where, " claims ", v.count, " strings; only ", c.remaining(),
                                    " bytes are left"));
        }
        v.strings.reserve(v.count);
        for (uint64_t k = 0; k < v.count; ++k) {
          std::string_view s;
          if (!c.ReadString(&s)) {
            return Error(absl::StrCat("the file ends inside string ", k, " of ", where));
          }
          v.strings.push_back(s);
        }
      } else {
        const size_t es = GgufScalarSize(v.element_type);
        if (v.count > c.remaining() / es) {
          return Error(absl::StrCat(where, " claims ", v.count, " elements of ", es,
                                    " bytes; only ", c.remaining(), " bytes are left"));
        }
        v.data = c.here();
        c.Skip(v.count * es);
        if (v.element_type == GgufType::kBool) {
          for (uint64_t k = 0; k < v.count; ++k) {
            if (v.data[k] > 1) {
              return Error(absl::StrCat(where, " element ", k, " is not a bool (byte ",
                                        static_cast<int>(v.data[k]), ")"));
            }
          }
        }
      }
    } else {
      v.data = c.here();
      if (!c.Skip(GgufScalarSize(v.type))) return Error("the file ends inside " + where);
      if (v.type == GgufType::kBool && v.data[0] > 1) {
        return Error(
            absl::StrCat(where, " is not a bool (byte ", static_cast<int>(v.data[0]), ")"));
      }
    }
    keys_.push_back(key);
    metadata_.emplace(key, std::move(v));
  }

  if (const GgufValue* a = Find("general.alignment"); a != nullptr) {
    if (a->type != GgufType::kUint32) {
      return Error("general.alignment has type " + a->TypeString() + "; expected uint32");
    }
    uint32_t align = 0;
    std::memcpy(&align, a->data, 4);
    if (align == 0 || (align & (align - 1)) != 0) {
      return Error(absl::StrCat("general.alignment ", align, " is not a power of 2"));
    }
    alignment_ = align;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    std::string_view name;
    if (!c.ReadString(&name)) {
      return Error(absl::StrCat("the file ends inside the name of tensor ", i));
    }
    if (name.size() > kGgufMaxTensorName) {
      return Error(absl::StrCat("tensor ", i, " name ", Quoted(name), " is ", name.size(),
                                " bytes; the limit is ", kGgufMaxTensorName));
    }
    t.name = std::string(name);
    if (tensor_index_.count(t.name) != 0) return Error("duplicate tensor name " + Quoted(name));
    const std::string where = "tensor " + Quoted(name);
    uint32_t n_dims = 0;
    if (!c.Read(&n_dims)) return Error("the file ends inside " + where);
    if (n_dims < 1 || n_dims > kGgufMaxDims) {
      return Error(
          absl::StrCat(where, " has ", n_dims, " dimensions; 1 to ", kGgufMaxDims, " are allowed"));
    }
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      if (!c.Read(&ne)) return Error("the file ends inside the shape of " + where);
      if (ne > kInt64Max) {
        return Error(absl::StrCat(where, " dimension ", d, " is ", ne, ", above INT64_MAX"));
      }
      if (ne != 0 && elements > kInt64Max / ne) {
        return Error(where + " has more than INT64_MAX elements");
      }
      elements *= ne;
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    if (!c.Read(&t.type) || !c.Read(&t.offset)) return Error("the file ends inside " + where);
    const quant::TypeTraits* traits = quant::FindTypeTraits(t.type);
    if (traits == nullptr) {
      return Error(absl::StrCat(where, " has an unknown ggml type ", t.type));
    }
    if (t.ne[0] % traits->block_elems != 0) {
      return Error(absl::StrCat(where, " of type ", GgmlTypeName(t.type), " has rows of ", t.ne[0],
                                " elements, not a multiple of its block of ", traits->block_elems));
    }
    const uint64_t blocks = elements / static_cast<uint64_t>(traits->block_elems);
    if (blocks > kInt64Max / static_cast<uint64_t>(traits->block_bytes)) {
      return Error(where + " is larger than INT64_MAX bytes");
    }
    t.num_bytes = blocks * static_cast<uint64_t>(traits->block_bytes);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  if (tensors_.empty()) return absl::OkStatus();
  // The data section starts at the next multiple of the alignment; tensors follow one another,
  // each at an aligned offset right after the previous one's padded data (as ggml requires).
  const uint64_t pad = (alignment_ - c.pos() % alignment_) % alignment_;
  if (pad > c.remaining()) {
    return Error(absl::StrCat("the file ends before its data section (", c.pos(), " + ", pad,
                              " padding bytes > ", size, ")"));
  }
  data_offset_ = c.pos() + pad;
  const uint64_t data_size = size - data_offset_;
  uint64_t expected = 0;
  for (GgufTensor& t : tensors_) {
    if (t.offset != expected) {
      return Error(absl::StrCat("tensor ", Quoted(t.name), " has offset ", t.offset, ", expected ",
                                expected, " (tensors are laid out in order, each aligned to ",
                                alignment_, ")"));
    }
    if (t.num_bytes > data_size || t.offset > data_size - t.num_bytes) {
      return Error(absl::StrCat("tensor ", Quoted(t.name), " (", GgmlTypeName(t.type), " ",
                                t.ShapeString(), ", ", t.num_bytes, " bytes at data offset ",
                                t.offset, ") extends past the end of the file (", data_size,
                                " bytes of data)"));
    }
    t.data = begin + data_offset_ + t.offset;
    const uint64_t padded = t.num_bytes + (alignment_ - t.num_bytes % alignment_) % alignment_;
    // Cannot overflow: offset + num_bytes <= data_size, and padding is below the alignment (<
    // 2^32).
    expected = t.offset + padded;
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t GgufFile::tensor_bytes() const {
  uint64_t n = 0;
  for (const GgufTensor& t : tensors_) n += t.num_bytes;
  return n;
}

absl::StatusOr<const GgufValue*> GgufFile::Get(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Error(absl::StrCat("metadata key ", std::string(key), " is missing"));
  return v;
}

namespace {

absl::Status WrongType(const GgufFile& f, std::string_view key, const GgufValue& v,
                       std::string_view want) {
  return f.Error(absl::StrCat("metadata ", std::string(key), " has type ", v.TypeString(),
                              "; expected ", std::string(want)));
}

}  // namespace

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  if (!IsIntegerType((*v)->type)) return WrongType(*this, key, **v, "an integer");
  bool overflow = false;
  const int64_t x = IntAt((*v)->type, (*v)->data, 0, &overflow);
  if (overflow) return Error(absl::StrCat("metadata ", std::string(key), " is above INT64_MAX"));
  return x;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  const GgufType t = (*v)->type;
  if (t != GgufType::kFloat32 && t != GgufType::kFloat64) {
    return WrongType(*this, key, **v, "float32 or float64");
  }
  return FloatAt(t, (*v)->data, 0);
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  if ((*v)->type != GgufType::kBool) return WrongType(*this, key, **v, "bool");
  return (*v)->data[0] != 0;
}

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  if ((*v)->type != GgufType::kString) return WrongType(*this, key, **v, "string");
  return (*v)->strings[0];
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  if (!(*v)->is_array() || !IsIntegerType((*v)->element_type)) {
    return WrongType(*this, key, **v, "an array of integers");
  }
  std::vector<int64_t> out((*v)->count);
  bool overflow = false;
  for (uint64_t i = 0; i < (*v)->count; ++i) {
    out[i] = IntAt((*v)->element_type, (*v)->data, i, &overflow);
  }
  if (overflow)
    return Error(absl::StrCat("metadata ", std::string(key), " has an element above INT64_MAX"));
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  const GgufType et = (*v)->element_type;
  if (!(*v)->is_array() || (et != GgufType::kFloat32 && et != GgufType::kFloat64)) {
    return WrongType(*this, key, **v, "an array of float32 or float64");
  }
  std::vector<double> out((*v)->count);
  for (uint64_t i = 0; i < (*v)->count; ++i) out[i] = FloatAt(et, (*v)->data, i);
  return out;
}

absl::StatusOr<std::vector<bool>> GgufFile::GetBoolArray(std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  if (!(*v)->is_array() || (*v)->element_type != GgufType::kBool) {
    return WrongType(*this, key, **v, "an array of bool");
  }
  std::vector<bool> out((*v)->count);
  for (uint64_t i = 0; i < (*v)->count; ++i) out[i] = (*v)->data[i] != 0;
  return out;
}

absl::StatusOr<const std::vector<std::string_view>*> GgufFile::GetStringArray(
    std::string_view key) const {
  auto v = Get(key);
  if (!v.ok()) return v.status();
  if (!(*v)->is_array() || (*v)->element_type != GgufType::kString) {
    return WrongType(*this, key, **v, "an array of string");
  }
  return &(*v)->strings;
}

}  // namespace tessera::runtime
