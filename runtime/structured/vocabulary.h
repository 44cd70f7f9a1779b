// What constrained decoding needs to know about a tokenizer: the bytes each token decodes to, which
// tokens are special (never produced inside a grammar unless it names them), and a byte trie of
// the ordinary tokens that masks are computed over.
//
// Token bytes follow the tokenizer's decoder (docs/tokenizer.md): "▁" (U+2581) becomes a space,
// a byte-fallback token <0xNN> is that one byte (so a character may be split across tokens), and
// every other token is its vocabulary text. Excluded (never allowed unless named): tokens the
// tokenizer marks special (<eos>, <|turn>, ...), tokens with no bytes, and, with
// exclude_reserved_tokens, Gemma's reserved placeholders that tokenizer.json does not mark special
// (<unusedN>, <mask>, [multimodal]).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "runtime/prompt/tokenizer.h"

namespace tessera::runtime::structured {

struct VocabularyOptions {
  // Also exclude <unusedN>, <mask> and [multimodal] (added tokens Gemma never emits as text).
  bool exclude_reserved_tokens = true;
};

// The ordinary tokens' distinct byte strings as a trie in depth-first preorder (children in byte
// order). Node i reads byte[i] at depth[i] (1 for children of the root); its subtree is
// [i, end[i]); tokens[token_begin[i] .. token_begin[i+1]) are the ids whose bytes end exactly
// there.
struct TokenTrie {
  std::vector<uint8_t> byte;
  std::vector<uint16_t> depth;
  std::vector<int32_t> end;
  std::vector<int32_t> token_begin;  // [num_nodes + 1]
  std::vector<int32_t> tokens;
  int num_nodes() const { return static_cast<int>(byte.size()); }
};

class Vocabulary {
 public:
  static absl::StatusOr<std::shared_ptr<const Vocabulary>> FromTokenizer(
      const Tokenizer& tokenizer, const VocabularyOptions& options = {});
  // Token i has bytes token_bytes[i] (an empty string excludes it); `special` lists excluded
  // tokens by id with the names grammars may use for them (e.g. "<|turn>").
  static absl::StatusOr<std::shared_ptr<const Vocabulary>> FromTokenBytes(
      std::vector<std::string> token_bytes,
      const std::vector<std::pair<int32_t, std::string>>& special);

  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& TokenBytes(int32_t id) const { return bytes_[id]; }
  bool IsExcluded(int32_t id) const { return excluded_[id]; }
  // An excluded token by its text, e.g. "<|turn>" (for grammars that name special tokens).
  std::optional<int32_t> ExcludedTokenId(std::string_view text) const;
  // Any token by its text (vocabulary string), for grammars that name a token.
  std::optional<int32_t> TokenIdByText(std::string_view text) const;
  const std::string& TokenText(int32_t id) const { return texts_[id]; }
  int max_token_bytes() const { return max_token_bytes_; }
  int num_excluded() const;
  const TokenTrie& trie() const { return trie_; }

 private:
  void BuildTrie();

  std::vector<std::string> bytes_;
  std::vector<std::string> texts_;
  std::vector<bool> excluded_;
  absl::flat_hash_map<std::string, int32_t> by_text_;
  int max_token_bytes_ = 0;
  TokenTrie trie_;
};

}  // namespace tessera::runtime::structured
