#include "runtime/structured/schema_patterns.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tessera::runtime::structured {
namespace {

// Calendar dates, with the day checked against the month and February 29 only in leap years
// (divisible by 4, and by 400 for centuries).
constexpr char kDate[] =
    "(?:\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|"
    "02-(?:0[1-9]|1\\d|2[0-8]))|(?:\\d{2}(?:0[48]|[2468][048]|[13579][26])|"
    "(?:[02468][048]|[13579][26])00)-02-29)";
// RFC 3339 full-time: a time zone is always written (validators differ on whether it may be
// omitted; all accept it present).
constexpr char kTime[] =
    "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)";
// ISO 8601 durations with at least one component, and a T only before a time component.
constexpr char kDuration[] =
    "P(?:(?:\\d{1,4}Y(?:\\d{1,4}M)?(?:\\d{1,4}D)?|\\d{1,4}M(?:\\d{1,4}D)?|\\d{1,4}D)"
    "(?:T(?:\\d{1,4}H(?:\\d{1,4}M)?(?:\\d{1,4}S)?|\\d{1,4}M(?:\\d{1,4}S)?|\\d{1,4}S))?|"
    "T(?:\\d{1,4}H(?:\\d{1,4}M)?(?:\\d{1,4}S)?|\\d{1,4}M(?:\\d{1,4}S)?|\\d{1,4}S)|\\d{1,4}W)";
// Dot-atoms of RFC 5322's common characters @ labels, the last alphabetic (the shape of
// ajv-formats' email pattern, whose parts are unbounded too).
constexpr char kEmail[] =
    "[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@"
    "(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z]{2,}";
// Up to 3 labels of 1..63 characters (at most 191 characters, under the 253 limit).
constexpr char kHostname[] =
    "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    "[A-Za-z0-9])?){0,2}";
constexpr char kIpv4Octet[] = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
constexpr char kUuid[] =
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
// The full eight-group form (no :: compression).
constexpr char kIpv6[] = "[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){7}";

std::string Nines(int n) { return std::string(n, '9'); }
std::string Zeros(int n) { return std::string(n, '0'); }

// Decimal strings of equal length n, x <= y.
std::string SameLength(const std::string& x, const std::string& y) {
  const size_t n = x.size();
  if (n == 0) return "";
  if (x == y) return x;
  if (n == 1) return absl::StrCat("[", x, "-", y, "]");
  if (x[0] == y[0]) return absl::StrCat(x.substr(0, 1), SameLength(x.substr(1), y.substr(1)));
  const std::string xr = x.substr(1), yr = y.substr(1);
  if (xr == Zeros(n - 1) && yr == Nines(n - 1)) {
    return absl::StrCat("[", x.substr(0, 1), "-", y.substr(0, 1), "]\\d{", n - 1, "}");
  }
  std::vector<std::string> parts;
  parts.push_back(absl::StrCat(x.substr(0, 1), "(?:", SameLength(xr, Nines(n - 1)), ")"));
  if (y[0] - x[0] > 1) {
    const char a = x[0] + 1, b = y[0] - 1;
    parts.push_back(
        absl::StrCat("[", std::string(1, a), "-", std::string(1, b), "]\\d{", n - 1, "}"));
  }
  parts.push_back(absl::StrCat(y.substr(0, 1), "(?:", SameLength(Zeros(n - 1), yr), ")"));
  return absl::StrCat("(?:", absl::StrJoin(parts, "|"), ")");
}

// Non-negative integers in [a, b] written without leading zeros.
std::string NonNegativeRange(uint64_t a, uint64_t b) {
  if (a > b) return "";
  const std::string as = std::to_string(a), bs = std::to_string(b);
  std::vector<std::string> parts;
  for (size_t len = as.size(); len <= bs.size(); ++len) {
    const std::string lo = len == as.size() ? as : absl::StrCat("1", Zeros(len - 1));
    const std::string hi = len == bs.size() ? bs : Nines(len);
    parts.push_back(SameLength(lo, hi));
  }
  return absl::StrCat("(?:", absl::StrJoin(parts, "|"), ")");
}

uint64_t MaxWithDigits(int digits) {
  uint64_t v = 0;
  for (int i = 0; i < digits && i < 19; ++i) v = v * 10 + 9;
  return v;
}

// y >= 0 with lo <= y <= hi (strictness per side), lo and hi integers (hi open if nullopt).
std::string NonNegativeNumber(uint64_t lo, bool lo_strict, std::optional<uint64_t> hi,
                              bool hi_strict, int max_digits) {
  const std::string any_frac = absl::StrCat("(?:\\.\\d{1,", max_digits, "})?");
  const std::string zero_frac = absl::StrCat("(?:\\.0{1,", max_digits, "})?");
  // Zeros, then the first non-zero digit: deterministic (`\\d*[1-9]\\d*` is not, and its DFA
  // construction is exponential in the bound).
  const std::string nonzero_frac =
      absl::StrCat("\\.0{0,", max_digits - 1, "}[1-9]\\d{0,", max_digits - 1, "}");
  const uint64_t top = hi ? *hi : MaxWithDigits(max_digits);
  if (hi && lo == *hi) {
    if (lo_strict || hi_strict) return "";
    return absl::StrCat(lo, zero_frac);
  }
  if (hi && lo > *hi) return "";
  std::vector<std::string> parts;
  parts.push_back(absl::StrCat(lo, lo_strict ? nonzero_frac : any_frac));
  const uint64_t mid_hi = hi ? top - 1 : top;
  if (lo + 1 <= mid_hi && (!hi || *hi >= 1)) {
    parts.push_back(absl::StrCat(NonNegativeRange(lo + 1, mid_hi), any_frac));
  }
  if (hi && !hi_strict) parts.push_back(absl::StrCat(*hi, zero_frac));
  return absl::StrCat("(?:", absl::StrJoin(parts, "|"), ")");
}

}  // namespace

absl::StatusOr<std::string> FormatPattern(const std::string& format) {
  if (format == "date") return std::string(kDate);
  if (format == "time") return std::string(kTime);
  if (format == "date-time") return absl::StrCat(kDate, "T", kTime);
  if (format == "duration") return std::string(kDuration);
  if (format == "email") return std::string(kEmail);
  if (format == "hostname") return std::string(kHostname);
  if (format == "ipv4") return absl::StrCat(kIpv4Octet, "(?:\\.", kIpv4Octet, "){3}");
  if (format == "ipv6") return std::string(kIpv6);
  if (format == "uuid") return std::string(kUuid);
  return absl::InvalidArgumentError(absl::StrCat(
      "string format '", format,
      "' is not supported (supported: date, time, date-time, duration, email, hostname, ipv4, "
      "ipv6, uuid)"));
}

std::string IntegerRangePattern(std::optional<int64_t> lo, std::optional<int64_t> hi,
                                int max_digits) {
  const uint64_t cap = MaxWithDigits(max_digits);
  std::vector<std::string> parts;
  // Negative values -v, v in [v_lo, v_hi].
  if (!lo || *lo < 0) {
    const uint64_t v_hi = lo ? std::min<uint64_t>(cap, static_cast<uint64_t>(-(*lo + 1)) + 1) : cap;
    const uint64_t v_lo = (hi && *hi < 0) ? static_cast<uint64_t>(-(*hi + 1)) + 1 : 1;
    if (v_lo <= v_hi) parts.push_back(absl::StrCat("-", NonNegativeRange(v_lo, v_hi)));
  }
  if (!hi || *hi >= 0) {
    const uint64_t a = (lo && *lo > 0) ? static_cast<uint64_t>(*lo) : 0;
    const uint64_t b = hi ? static_cast<uint64_t>(*hi) : std::max(cap, a);
    if (a <= b) parts.push_back(NonNegativeRange(a, b));
  }
  if (parts.empty()) return "[]";  // an empty class: matches nothing
  return absl::StrCat("(?:", absl::StrJoin(parts, "|"), ")");
}

std::string NumberRangePattern(std::optional<NumberBound> lo, std::optional<NumberBound> hi,
                               int max_digits) {
  std::vector<std::string> parts;
  // x >= 0.
  if (!hi || hi->value > 0 || (hi->value == 0 && !hi->exclusive)) {
    uint64_t y_lo = 0;
    bool y_lo_strict = false;
    if (lo && lo->value >= 0) {
      y_lo = static_cast<uint64_t>(lo->value);
      y_lo_strict = lo->exclusive;
    }
    std::optional<uint64_t> y_hi;
    if (hi) y_hi = static_cast<uint64_t>(hi->value);
    const std::string p =
        NonNegativeNumber(y_lo, y_lo_strict, y_hi, hi && hi->exclusive, max_digits);
    if (!p.empty()) parts.push_back(p);
  }
  // x < 0, x = -y with y > 0.
  if (!lo || lo->value < 0) {
    uint64_t y_lo = 0;
    bool y_lo_strict = true;
    if (hi && hi->value < 0) {
      y_lo = static_cast<uint64_t>(-(hi->value + 1)) + 1;
      y_lo_strict = hi->exclusive;
    }
    std::optional<uint64_t> y_hi;
    if (lo) y_hi = static_cast<uint64_t>(-(lo->value + 1)) + 1;
    const std::string p =
        NonNegativeNumber(y_lo, y_lo_strict, y_hi, lo && lo->exclusive, max_digits);
    if (!p.empty()) parts.push_back(absl::StrCat("-", p));
  }
  if (parts.empty()) return "[]";
  return absl::StrCat("(?:", absl::StrJoin(parts, "|"), ")");
}

}  // namespace tessera::runtime::structured
