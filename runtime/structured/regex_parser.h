// Regular expressions (the ECMAScript / Python common subset) to the grammar IR, over Unicode code
// points. Used for the `regex` structured-output option (whole-text match, as vLLM's
// structured_outputs.regex) and for JSON Schema `pattern` (where characters are JSON-escaped by the
// caller's encoder).
//
// Supported: literals, `.`, classes `[...]` / `[^...]` with ranges and escapes, \d \D \w \W \s \S,
// \n \r \t \f \v \0 \xHH \uHHHH \u{H..}, escaped punctuation, groups `(...)` `(?:...)`
// `(?<name>...)` `(?P<name>...)`, alternation, `* + ? {n} {n,} {n,m}` (lazy `?` suffixes accepted:
// they do not change the language), and `^` / `$` at the very start / end.
// Refused with InvalidArgument naming the construct: backreferences, lookaround, word boundaries,
// possessive quantifiers, inline flags, Unicode property classes, anchors anywhere else.
#pragma once

#include <functional>
#include <string_view>

#include "absl/status/statusor.h"
#include "runtime/structured/grammar.h"

namespace tessera::runtime::structured {

struct RegexOptions {
  // `.` matches any code point but \n (Python's re), or, when true, any but ECMAScript's line
  // terminators \n \r U+2028 U+2029 (JSON Schema patterns are ECMAScript).
  bool ecmascript_dot = false;
  int max_nesting = 256;
};

struct ParsedRegex {
  ExprPtr expr;
  bool anchored_start = false;  // the pattern began with ^
  bool anchored_end = false;    // the pattern ended with $
};

// Turns a set of code points (one character position) into an expression over symbols.
using CharEncoder = std::function<ExprPtr(const CodepointRanges&)>;

absl::StatusOr<ParsedRegex> ParseRegex(std::string_view pattern, const CharEncoder& encode,
                                       const RegexOptions& options = {});

// The grammar whose texts are exactly the UTF-8 strings the whole pattern matches (anchors
// optional).
absl::StatusOr<Grammar> RegexToGrammar(std::string_view pattern, const RegexOptions& options = {});

// Decodes UTF-8; false on invalid input.
bool DecodeUtf8(std::string_view text, std::vector<uint32_t>* out);

}  // namespace tessera::runtime::structured
