// Regular expressions (regex_parser.h syntax) for the JSON Schema parts that are regular: string
// formats and bounded numbers. Each matches a subset of what the corresponding JSON Schema
// validation accepts (a generated value must validate; not every valid value need be generable).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace tessera::runtime::structured {

// The pattern of a supported `format`: date, time, date-time, duration, email, hostname, ipv4,
// ipv6, uuid. InvalidArgument naming the format (and listing these) otherwise.
absl::StatusOr<std::string> FormatPattern(const std::string& format);

// Integers in [lo, hi] (either side may be open) in JSON syntax, without leading zeros or "-0";
// an open side stops at `max_digits` digits.
std::string IntegerRangePattern(std::optional<int64_t> lo, std::optional<int64_t> hi,
                                int max_digits);

// A bound of a JSON number: the integer value and whether it is exclusive.
struct NumberBound {
  int64_t value = 0;
  bool exclusive = false;
};

// JSON numbers x with lo <= x <= hi (< / > when exclusive), bounds integer-valued, no exponent;
// `max_digits` digits at most in the integer part of an open side and in fractions.
std::string NumberRangePattern(std::optional<NumberBound> lo, std::optional<NumberBound> hi,
                               int max_digits);

}  // namespace tessera::runtime::structured
