// Early return on an error status, for functions that return absl::Status or absl::StatusOr<T>:
//   TESSERA_RETURN_IF_ERROR(ReadHeader(file));
#pragma once

#include "absl/status/status.h"

#define TESSERA_RETURN_IF_ERROR(expr)                                   \
  do {                                                                  \
    if (absl::Status tessera_status_ = (expr); !tessera_status_.ok()) { \
      return tessera_status_;                                           \
    }                                                                   \
  } while (0)
