#include "runtime/structured/vocabulary.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace tessera::runtime::structured {
namespace {

bool IsReservedPlaceholder(std::string_view text) {
  if (text == "<mask>" || text == "[multimodal]") return true;
  if (text.size() < 9 || text.substr(0, 7) != "<unused" || text.back() != '>') return false;
  const std::string_view digits = text.substr(7, text.size() - 8);
  return !digits.empty() &&
         std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Vocabulary>> Vocabulary::FromTokenizer(
    const Tokenizer& tokenizer, const VocabularyOptions& options) {
  auto v = std::shared_ptr<Vocabulary>(new Vocabulary());
  const int32_t n = tokenizer.vocab_size();
  if (n <= 0) return absl::InvalidArgumentError("tokenizer has an empty vocabulary");
  v->bytes_.resize(n);
  v->texts_.resize(n);
  v->excluded_.assign(n, false);
  for (int32_t id = 0; id < n; ++id) {
    std::string text = tokenizer.TokenText(id);
    uint8_t byte;
    bool excluded = text.empty() || tokenizer.IsSpecial(id) ||
                    (options.exclude_reserved_tokens && IsReservedPlaceholder(text));
    if (!excluded) {
      if (ParseByteToken(text, &byte)) {
        v->bytes_[id] = std::string(1, static_cast<char>(byte));
      } else {
        // The tokenizer's own decoder (U+2581 -> space for Gemma) on the token alone.
        v->bytes_[id] = tokenizer.Decode({id});
      }
      excluded = v->bytes_[id].empty();
    }
    if (excluded) v->bytes_[id].clear();
    v->excluded_[id] = excluded;
    v->by_text_.emplace(text, id);
    v->texts_[id] = std::move(text);
  }
  v->BuildTrie();
  return std::shared_ptr<const Vocabulary>(std::move(v));
}

absl::StatusOr<std::shared_ptr<const Vocabulary>> Vocabulary::FromTokenBytes(
    std::vector<std::string> token_bytes,
    const std::vector<std::pair<int32_t, std::string>>& special) {
  auto v = std::shared_ptr<Vocabulary>(new Vocabulary());
  const int32_t n = static_cast<int32_t>(token_bytes.size());
  v->excluded_.assign(n, false);
  v->texts_ = token_bytes;
  for (int32_t id = 0; id < n; ++id) v->excluded_[id] = token_bytes[id].empty();
  for (const auto& [id, name] : special) {
    if (id < 0 || id >= n) {
      return absl::InvalidArgumentError(absl::StrCat("special token id ", id, " out of range"));
    }
    v->excluded_[id] = true;
    token_bytes[id].clear();
    v->texts_[id] = name;
  }
  for (int32_t id = 0; id < n; ++id) v->by_text_.emplace(v->texts_[id], id);
  v->bytes_ = std::move(token_bytes);
  v->BuildTrie();
  return std::shared_ptr<const Vocabulary>(std::move(v));
}

std::optional<int32_t> Vocabulary::ExcludedTokenId(std::string_view text) const {
  auto id = TokenIdByText(text);
  if (id && excluded_[*id]) return id;
  return std::nullopt;
}

std::optional<int32_t> Vocabulary::TokenIdByText(std::string_view text) const {
  auto it = by_text_.find(std::string(text));
  if (it == by_text_.end()) return std::nullopt;
  return it->second;
}

int Vocabulary::num_excluded() const {
  return static_cast<int>(std::count(excluded_.begin(), excluded_.end(), true));
}

void Vocabulary::BuildTrie() {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < size(); ++id) {
    if (!excluded_[id]) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return bytes_[a] != bytes_[b] ? bytes_[a] < bytes_[b] : a < b;
  });
  TokenTrie& t = trie_;
  std::vector<int32_t> path;  // node ids along the current path; path[k] is at depth k + 1
  const std::string* prev = nullptr;
  auto close_to = [&](size_t keep) {
    while (path.size() > keep) {
      t.end[path.back()] = t.num_nodes();
      path.pop_back();
    }
  };
  for (int32_t id : ids) {
    const std::string& s = bytes_[id];
    max_token_bytes_ = std::max(max_token_bytes_, static_cast<int>(s.size()));
    size_t common = 0;
    if (prev != nullptr) {
      while (common < s.size() && common < prev->size() && (*prev)[common] == s[common]) ++common;
    }
    close_to(common);
    for (size_t k = common; k < s.size(); ++k) {
      path.push_back(t.num_nodes());
      t.byte.push_back(static_cast<uint8_t>(s[k]));
      t.depth.push_back(static_cast<uint16_t>(std::min<size_t>(k + 1, 65535)));
      t.end.push_back(0);
      t.token_begin.push_back(static_cast<int32_t>(t.tokens.size()));
    }
    // Tokens are sorted by bytes, so the node of `s` is the current path's last.
    t.tokens.push_back(id);
    prev = &s;
  }
  close_to(0);
  t.token_begin.push_back(static_cast<int32_t>(t.tokens.size()));
  // token_begin[i] was recorded when node i was created, before its tokens were appended, and
  // its tokens come before any node created later: so [token_begin[i], token_begin[i+1]) holds
  // exactly node i's tokens.
}

}  // namespace tessera::runtime::structured
