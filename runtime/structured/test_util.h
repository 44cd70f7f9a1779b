// Test helpers for runtime/structured: small vocabularies, whole-string acceptance, and the
// brute-force mask every optimized mask is checked against.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/structured/compiled_grammar.h"
#include "runtime/structured/grammar.h"
#include "runtime/structured/grammar_compiler.h"
#include "runtime/structured/grammar_matcher.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime::structured::testing {

// Tokens: 0 "<eos>" (special), 1 "<|call>" (special), 2 "<call|>" (special), 3..258 the single
// bytes 0x00..0xFF (like <0xNN> byte fallback), then `extra` multi-byte tokens.
std::shared_ptr<const Vocabulary> SmallVocabulary(const std::vector<std::string>& extra = {});
constexpr int32_t kEos = 0;
inline int32_t ByteToken(uint8_t b) { return 3 + b; }

// Compiles `grammar` for `vocabulary` with default limits.
absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompileFor(
    const Grammar& grammar, std::shared_ptr<const Vocabulary> vocabulary);

// Whether the grammar matches the whole of `text` (bytes), by stepping the parser directly.
bool Matches(const CompiledGrammar& grammar, const std::string& text);

// For every token: a copy of `matcher` accepts it. What FillNextTokenMask must equal.
std::vector<uint64_t> BruteForceMask(const GrammarMatcher& matcher);

// A random document under the masks: each step samples uniformly among the allowed tokens until
// `budget` tokens, then follows a shortest completion byte by byte (so every walk
// ends). A stop token, when allowed, is taken with probability 1/4 (always after the budget).
// Stops at a stop token or after `max_tokens` (then `finished` is false). `text` is the bytes of
// the tokens (stop token excluded).
struct Walk {
  std::vector<int32_t> tokens;
  std::string text;
  bool finished = false;
};
Walk RandomWalk(GrammarMatcher& matcher, uint64_t seed, int budget = 40, int max_tokens = 2000);

// The named specs of a JSON file like testdata/specs.json: {name: {kind: json_schema | json_object
// | regex | gbnf, schema | pattern | grammar}}, in file order.
struct NamedSpec {
  std::string name;
  GrammarSpec spec;
};
absl::StatusOr<std::vector<NamedSpec>> LoadSpecs(const std::string& path);

// A shortest byte string that makes `state` accepting (breadth-first over symbol classes, at most
// `max_states` states); empty if it is accepting already, nullopt if none was found.
std::optional<std::string> ShortestCompletion(const CompiledGrammar& grammar, const StackSet& state,
                                              int max_states = 50000);

// Ids whose bits differ between two masks (at most `limit`), for failure messages.
std::vector<int32_t> MaskDifference(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b,
                                    int vocab_size, int limit = 20);

}  // namespace tessera::runtime::structured::testing
