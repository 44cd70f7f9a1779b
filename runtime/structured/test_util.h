// Test helpers for runtime/structured: small vocabularies, whole-string acceptance, and the
// brute-force mask every optimized mask is checked against.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/structured/compiled_grammar.h"
#include "runtime/structured/grammar.h"
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

// Ids whose bits differ between two masks (at most `limit`), for failure messages.
std::vector<int32_t> MaskDifference(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b,
                                    int vocab_size, int limit = 20);

}  // namespace tessera::runtime::structured::testing
