#include "runtime/quant/ggml_type.h"

#include <array>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tessera::runtime::quant {
namespace {

// ggml's type_traits table (ggml.c): block elements and bytes of every type it still defines.
constexpr TypeTraits kTraits[] = {
    {GgmlType::kF32, "f32", 1, 4, true},
    {GgmlType::kF16, "f16", 1, 2, true},
    {GgmlType::kQ4_0, "q4_0", kQK, sizeof(BlockQ4_0), true},
    {GgmlType::kQ4_1, "q4_1", kQK, sizeof(BlockQ4_1), true},
    {GgmlType::kQ5_0, "q5_0", kQK, sizeof(BlockQ5_0), true},
    {GgmlType::kQ5_1, "q5_1", kQK, sizeof(BlockQ5_1), true},
    {GgmlType::kQ8_0, "q8_0", kQK, sizeof(BlockQ8_0), true},
    {GgmlType::kQ8_1, "q8_1", kQK, sizeof(BlockQ8_1), false},
    {GgmlType::kQ2_K, "q2_K", kQKK, sizeof(BlockQ2_K), false},
    {GgmlType::kQ3_K, "q3_K", kQKK, sizeof(BlockQ3_K), false},
    {GgmlType::kQ4_K, "q4_K", kQKK, sizeof(BlockQ4_K), true},
    {GgmlType::kQ5_K, "q5_K", kQKK, sizeof(BlockQ5_K), true},
    {GgmlType::kQ6_K, "q6_K", kQKK, sizeof(BlockQ6_K), true},
    {GgmlType::kQ8_K, "q8_K", kQKK, sizeof(BlockQ8_K), true},
    {GgmlType::kIQ2_XXS, "iq2_xxs", kQKK, 66, false},
    {GgmlType::kIQ2_XS, "iq2_xs", kQKK, 74, false},
    {GgmlType::kIQ3_XXS, "iq3_xxs", kQKK, 98, false},
    {GgmlType::kIQ1_S, "iq1_s", kQKK, 50, false},
    {GgmlType::kIQ4_NL, "iq4_nl", kQK, 18, false},
    {GgmlType::kIQ3_S, "iq3_s", kQKK, 110, false},
    {GgmlType::kIQ2_S, "iq2_s", kQKK, 82, false},
    {GgmlType::kIQ4_XS, "iq4_xs", kQKK, 136, false},
    {GgmlType::kI8, "i8", 1, 1, false},
    {GgmlType::kI16, "i16", 1, 2, false},
    {GgmlType::kI32, "i32", 1, 4, false},
    {GgmlType::kI64, "i64", 1, 8, false},
    {GgmlType::kF64, "f64", 1, 8, false},
    {GgmlType::kIQ1_M, "iq1_m", kQKK, 56, false},
    {GgmlType::kBF16, "bf16", 1, 2, true},
    {GgmlType::kTQ1_0, "tq1_0", kQKK, 54, false},
    {GgmlType::kTQ2_0, "tq2_0", kQKK, 66, false},
    {GgmlType::kMXFP4, "mxfp4", kQK, 17, false},
    {GgmlType::kNVFP4, "nvfp4", 64, 36, false},
    {GgmlType::kQ1_0, "q1_0", 128, 18, false},
    {GgmlType::kQ2_0, "q2_0", 64, 18, false},
};

constexpr uint32_t kMaxId = 42;

}  // namespace

const TypeTraits* FindTypeTraits(uint32_t id) {
  // Indexed by id (the kernels ask once per matrix multiply).
  static const auto* const kById = [] {
    auto* table = new std::array<const TypeTraits*, kMaxId + 1>();
    for (const TypeTraits& t : kTraits) (*table)[static_cast<uint32_t>(t.type)] = &t;
    return table;
  }();
  return id <= kMaxId ? (*kById)[id] : nullptr;
}

const TypeTraits& Traits(GgmlType type) {
  const TypeTraits* t = FindTypeTraits(static_cast<uint32_t>(type));
  return t != nullptr ? *t : kTraits[0];  // Unreachable for an enumerator.
}

std::string TypeName(uint32_t id) {
  const TypeTraits* t = FindTypeTraits(id);
  return t != nullptr ? t->name : absl::StrCat("type ", id);
}

absl::StatusOr<int64_t> RowBytes(GgmlType type, int64_t cols) {
  const TypeTraits* t = FindTypeTraits(static_cast<uint32_t>(type));
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown ggml type id ", static_cast<uint32_t>(type)));
  }
  if (cols < 0 || cols % t->block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat("a row of ", cols,
                                                   " values is not a whole number of ", t->name,
                                                   " blocks (", t->block_elems, " values each)"));
  }
  const int64_t blocks = cols / t->block_elems;
  if (blocks > std::numeric_limits<int64_t>::max() / t->block_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", t->name, " row of ", cols, " values overflows 64-bit sizes"));
  }
  return blocks * t->block_bytes;
}

absl::StatusOr<int64_t> MatrixBytes(GgmlType type, int64_t rows, int64_t cols) {
  absl::StatusOr<int64_t> row = RowBytes(type, cols);
  if (!row.ok()) return row.status();
  if (rows < 0 || (*row > 0 && rows > std::numeric_limits<int64_t>::max() / *row)) {
    return absl::InvalidArgumentError(absl::StrCat("a ", TypeName(type), " matrix of ", rows, " x ",
                                                   cols, " values has an invalid size"));
  }
  return rows * *row;
}

}  // namespace tessera::runtime::quant
