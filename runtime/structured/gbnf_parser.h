// llama.cpp's GBNF grammar syntax (grammars/README.md in llama.cpp; llama-server's `grammar`
// field) to the grammar IR.
//
//   root ::= "yes" | "no" item*      # rules; `root` is the start
//   item ::= [a-z0-9_-]+ ("," [ \t]?)?
//
// Terminals are code points (UTF-8 encoded): "literals" and [classes] with \n \r \t \\ \" \[ \]
// \xHH \uHHHH \UHHHHHHHH escapes, `.` (any code point); grouping, `|`, `* + ? {m} {m,} {m,n}`;
// `#` comments; newlines end a rule except inside parentheses or after `|`. Tokens: `<[ID]>` and
// `<text>` (e.g. `<|turn>`) name one token; a special token is then allowed exactly there, an
// ordinary one stands for its bytes. Refused with InvalidArgument naming the construct: `!<...>`
// (any token but one: not a byte-level language), undefined or twice-defined rules, a missing root.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "runtime/structured/grammar.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime::structured {

// `vocabulary` resolves token references (nullptr: they are refused).
absl::StatusOr<Grammar> ParseGbnf(std::string_view text, const Vocabulary* vocabulary);

}  // namespace tessera::runtime::structured
