// The grammar that forces a tool call (`tool_choice: "required"` or a named function): the model
// must write `<|tool_call>call:NAME{ARGS}<tool_call|>` in Gemma 4's own syntax (tool_calls.h), with
// ARGS matching the function's JSON Schema `parameters`, so that even a model that never learned
// the format (the built-in random one) produces a call the output parser accepts and whose
// arguments validate.
//
// ARGS follow the chat template exactly: keys bare and in `dictsort` order (the order Gemma 4 saw
// in training), strings <|"|>...<|"|> (never containing <|"|>), None for null, integers as Python
// writes them. A marker that is a special token of the vocabulary (Gemma 4's real tokenizer has
// <|tool_call>, <tool_call|> and <|"|>) is that token; otherwise its bytes.
//
// The JSON Schema subset enforced (the one OpenAI's strict mode documents, where a grammar can hold
// it): `type` (one or a list), `enum` / `const` of strings, integers, booleans and null, `anyOf`,
// objects (`properties`, `required`; declared properties only unless there are none and
// `additionalProperties` allows others), arrays (`items`, `minItems`, `maxItems`), strings
// (`minLength`, `maxLength` up to kMaxCountedStringLength; or `pattern`, or a `format` that
// runtime/structured/schema_patterns.h knows, generated without '<'), numbers (`minimum`,
// `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, integer-valued for `number`), `$ref` into
// `$defs` / `definitions` (recursion included), OpenAPI's `nullable`. Annotations (`description`,
// `title`, `default`, `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`,
// `writeOnly`) are ignored. Anything else (`oneOf`, `multipleOf`, `uniqueItems`, ...) is refused by
// name rather than silently not enforced. An empty schema `{}` accepts any value.
//
// A string without maxLength is unbounded: a model that writes random text (the built-in random
// one) rarely spells the closing <|"|> and runs to max_tokens. Give such strings a maxLength or an
// enum when the model is not a trained one.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/structured/grammar.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime {

inline constexpr int kMaxCountedStringLength = 1024;

struct ToolCallGrammarOptions {
  // Empty: any declared function; otherwise only this one (tool_choice naming a function).
  std::string function;
  // One or more calls in a row; false: exactly one.
  bool parallel_tool_calls = true;
};

// `tools` is the request's array of OpenAI declarations ({type: "function", function: {name,
// parameters}}). InvalidArgument naming the function and the schema keyword (with its JSON
// pointer) that cannot be enforced, an unknown `function`, or a name the call syntax cannot carry.
absl::StatusOr<structured::Grammar> BuildToolCallGrammar(const nlohmann::json& tools,
                                                         const ToolCallGrammarOptions& options,
                                                         const structured::Vocabulary& vocabulary);

}  // namespace tessera::runtime
