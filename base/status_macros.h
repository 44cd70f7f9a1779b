// Early returns on error, for functions that return absl::Status or absl::StatusOr<T>:
//   TESSERA_RETURN_IF_ERROR(ReadHeader(file));
//   TESSERA_ASSIGN_OR_RETURN(auto model, LoadModel(dir));
//   TESSERA_ASSIGN_OR_RETURN(config_, ParseConfig(text));
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TESSERA_RETURN_IF_ERROR(expr)                                   \
  do {                                                                  \
    if (absl::Status tessera_status_ = (expr); !tessera_status_.ok()) { \
      return tessera_status_;                                           \
    }                                                                   \
  } while (0)

#define TESSERA_STATUS_CONCAT_INNER_(a, b) a##b
#define TESSERA_STATUS_CONCAT_(a, b) TESSERA_STATUS_CONCAT_INNER_(a, b)

// `lhs` may be a declaration (`auto x`, `std::string s`) or an existing lvalue. Evaluates `expr`
// once.
#define TESSERA_ASSIGN_OR_RETURN(lhs, expr) \
  TESSERA_ASSIGN_OR_RETURN_IMPL_(TESSERA_STATUS_CONCAT_(tessera_statusor_, __LINE__), lhs, expr)

#define TESSERA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = *std::move(statusor)
