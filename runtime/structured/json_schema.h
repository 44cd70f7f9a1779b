// JSON Schema (the subset OpenAI's strict structured outputs document, and more) and "any JSON
// object" to the grammar IR. The grammar generates JSON texts that validate against the schema:
//
// - types: object, array, string, number, integer, boolean, null, and lists of them; no `type`:
//   inferred from the keywords present (any JSON value when none);
// - object: `properties` (generated in declaration order), `required` (the others optional),
//   `additionalProperties` false / true / absent (only declared properties are generated) or a
//   schema when there are no `properties` (a map);
// - array: `items`, `prefixItems` (and draft-4 array `items`), `minItems`, `maxItems`;
// - string: `minLength`, `maxLength`, `pattern` (ECMAScript subset, regex_parser.h; unanchored
//   patterns match anywhere, as the spec says), `format` (schema_patterns.h);
// - number / integer: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (integer-valued
//   bounds for `number`);
// - `enum`, `const`, `anyOf`, `oneOf` (when its branches are disjoint by type or by a
//   discriminating const property), `allOf` with one branch, `$ref` to `#`, `#/$defs/...`,
//   `#/definitions/...` or any local JSON pointer, recursion included;
// - annotations (title, description, default, examples, $schema, $id, $comment, deprecated,
//   readOnly, writeOnly) are ignored.
// Anything else is refused with InvalidArgument naming the keyword and where it is.
//
// Whitespace: by default a bounded form that accepts both compact and pretty-printed JSON: after
// `{`, `[`, `,`, `:` and after every value, nothing, one space, or a newline followed by up to
// `max_indent` spaces/tabs. This admits what models are trained to write (`{"a": 1, "b": [2]}`,
// indented blocks) while bounding runs of whitespace, so a model cannot stall in blank space.
// `compact_whitespace` allows none at all. No whitespace before the value or after it.
//
// Numbers without bounds have at most `max_integer_digits` integer digits (15 by default: every
// such integer is exact in a double), fractions up to 15 digits, exponents up to 2 digits.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "runtime/structured/grammar.h"

namespace tessera::runtime::structured {

struct JsonGrammarOptions {
  bool compact_whitespace = false;
  int max_indent = 20;
  int max_integer_digits = 15;
  int max_fraction_digits = 15;
  // Nested schemas (not $ref recursion, which is unbounded) deeper than this are refused.
  int max_schema_depth = 128;
};

// `schema` is JSON text.
absl::StatusOr<Grammar> JsonSchemaToGrammar(std::string_view schema,
                                            const JsonGrammarOptions& options = {});

// Any JSON object (OpenAI's `response_format: {type: json_object}`).
Grammar AnyJsonObjectGrammar(const JsonGrammarOptions& options = {});

}  // namespace tessera::runtime::structured
