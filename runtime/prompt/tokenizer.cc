// Hugging Face tokenizer.json, BPE model, following the semantics of HF's Rust `tokenizers`
// (added_vocabulary.rs, models/bpe/{model,word}.rs, decoders/byte_fallback.rs) for the component
// kinds Gemma's file uses; anything else is refused at load time with the component named.
#include "runtime/prompt/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <queue>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {
namespace {

using json = nlohmann::json;

// Length of the UTF-8 character starting at s[i], or 0 when the bytes there are not a valid
// (shortest-form, non-surrogate) UTF-8 character.
size_t Utf8CharLen(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  const size_t left = s.size() - i;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return (left >= 2 && (b(i + 1) & 0xC0) == 0x80) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || (b(i + 1) & 0xC0) != 0x80 || (b(i + 2) & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || (b(i + 1) & 0xC0) != 0x80 || (b(i + 2) & 0xC0) != 0x80 ||
        (b(i + 3) & 0xC0) != 0x80) {
      return 0;
    }
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8CharLen(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

uint32_t DecodeCodePoint(std::string_view s, size_t i, size_t len) {
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[k])); };
  switch (len) {
    case 1:
      return b(i);
    case 2:
      return ((b(i) & 0x1F) << 6) | (b(i + 1) & 0x3F);
    case 3:
      return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
    default:
      return ((b(i) & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
             (b(i + 3) & 0x3F);
  }
}

// Unicode White_Space (Rust's char::is_whitespace), used by lstrip/rstrip of added tokens.
bool IsWhitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  if (from.empty() || s->find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s->size() + s->size() / 4);
  size_t pos = 0;
  while (true) {
    const size_t hit = s->find(from, pos);
    if (hit == std::string::npos) break;
    out.append(*s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(*s, pos, std::string::npos);
  *s = std::move(out);
}

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", what));
}

// Only literal patterns: {"String": "..."}. Regex patterns are refused.
absl::StatusOr<std::string> LiteralPattern(const json& component, absl::string_view kind) {
  const json* pattern = component.contains("pattern") ? &component["pattern"] : nullptr;
  if (pattern == nullptr || !pattern->is_object()) {
    return Invalid(absl::StrCat(kind, " has no pattern"));
  }
  if (pattern->contains("String") && (*pattern)["String"].is_string()) {
    std::string literal = (*pattern)["String"].get<std::string>();
    if (literal.empty()) return Invalid(absl::StrCat(kind, " has an empty pattern"));
    return literal;
  }
  return Invalid(absl::StrCat(kind, " pattern ",
                              pattern->dump(-1, ' ', false, json::error_handler_t::replace),
                              " is not supported (only {\"String\": ...} literals are)"));
}

std::string TypeOf(const json& component) {
  if (component.is_object() && component.contains("type") && component["type"].is_string()) {
    return component["type"].get<std::string>();
  }
  return "";
}

std::string Dump(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

// Typed optional fields. A field of the wrong type is an error (recorded in *error, first one wins)
// rather than an exception from nlohmann's value().
class FieldReader {
 public:
  bool Bool(const json& j, const char* key, bool def) {
    const json* f = Find(j, key);
    if (f == nullptr) return def;
    if (!f->is_boolean()) return Wrong(j, key, "a boolean"), def;
    return f->get<bool>();
  }
  std::string String(const json& j, const char* key, const char* def) {
    const json* f = Find(j, key);
    if (f == nullptr) return def;
    if (!f->is_string()) return Wrong(j, key, "a string"), def;
    return f->get<std::string>();
  }
  int Int(const json& j, const char* key, int def) {
    const json* f = Find(j, key);
    if (f == nullptr) return def;
    if (!f->is_number_integer() || f->get<int64_t>() < 0 || f->get<int64_t>() > 1000000) {
      return Wrong(j, key, "a small non-negative integer"), def;
    }
    return static_cast<int>(f->get<int64_t>());
  }
  const absl::Status& status() const { return status_; }

 private:
  static const json* Find(const json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  void Wrong(const json& j, const char* key, const char* want) {
    if (status_.ok()) {
      status_ = Invalid(absl::StrCat("\"", key, "\" must be ", want, " in ", Dump(j)));
    }
  }
  absl::Status status_;
};

struct NormalizerStep {
  enum Kind { kReplace, kPrepend } kind;
  std::string pattern;  // kReplace
  std::string content;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct DecoderStep {
  enum Kind { kReplace, kByteFallback, kFuse, kStrip } kind;
  std::string pattern;
  std::string content;
  int start = 0;  // kStrip
  int stop = 0;
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

// Byte trie over the added tokens' contents, for leftmost-longest matching on the raw text.
class AddedTokenTrie {
 public:
  AddedTokenTrie() : nodes_(1) {}

  void Insert(std::string_view key, int32_t index) {
    int32_t node = 0;
    for (char ch : key) {
      const uint8_t c = static_cast<uint8_t>(ch);
      int32_t child = Child(node, c);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(c, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].token = index;
  }

  // Longest key that starts at text[pos]: returns {token index, length} or {-1, 0}.
  std::pair<int32_t, size_t> LongestMatch(std::string_view text, size_t pos) const {
    std::pair<int32_t, size_t> best{-1, 0};
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) best = {nodes_[node].token, i + 1 - pos};
    }
    return best;
  }

  bool empty() const { return nodes_.size() == 1; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;
  };
  int32_t Child(int32_t node, uint8_t c) const {
    for (const auto& [byte, child] : nodes_[node].children) {
      if (byte == c) return child;
    }
    return -1;
  }
  std::vector<Node> nodes_;
};

// tokenizer.json read with a SAX handler that streams model.vocab and model.merges (almost all of
// a 30 MB file) straight into vectors and builds a DOM only for the small rest.
// NOTE: a full DOM parse of Gemma's file took 1.1 s and its traversal as long again; streaming
// takes about 0.2 s for the parse.
struct TokenizerDocument {
  json rest;  // the document without model.vocab and model.merges
  bool has_vocab = false;
  bool has_merges = false;
  // Deques: no moves of the strings while they grow (vectors spent a sixth of the load there).
  std::deque<std::pair<std::string, int64_t>> vocab;
  std::deque<std::pair<std::string, std::string>> merges;
  std::string error;  // a structural problem in vocab or merges
};

class TokenizerSaxReader : public nlohmann::json_sax<json> {
 public:
  explicit TokenizerSaxReader(TokenizerDocument* doc) : doc_(doc) {}

  bool null() override { return Value(json(nullptr)); }
  bool boolean(bool v) override { return Value(json(v)); }
  bool number_integer(number_integer_t v) override { return Value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return Value(json(v)); }
  bool binary(binary_t&) override { return Fail("binary values are not JSON"); }
  bool string(string_t& v) override {
    switch (mode_) {
      case Mode::kMerges: {
        const size_t space = v.find(' ');
        if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos) {
          return Fail(absl::StrCat("merge ", doc_->merges.size(), " \"", v, "\" is not \"A B\""));
        }
        doc_->merges.emplace_back(v.substr(0, space), v.substr(space + 1));
        return true;
      }
      case Mode::kMergePair:
        if (pair_size_ == 0) doc_->merges.emplace_back(std::move(v), std::string());
        if (pair_size_ == 1) doc_->merges.back().second = std::move(v);
        ++pair_size_;
        return true;
      default:
        return Value(json(std::move(v)));
    }
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::kDom) return Fail("model.vocab or model.merges holds an object");
    if (AtModelField("vocab")) {
      mode_ = Mode::kVocab;
      doc_->has_vocab = true;
      return true;
    }
    json* object = Put(json::object());
    stack_.push_back(object);
    keys_.push_back(key_);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kDom;
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_size_ = 0;
      return true;
    }
    if (mode_ != Mode::kDom) return Fail("model.vocab or model.merges is nested too deeply");
    if (AtModelField("merges")) {
      mode_ = Mode::kMerges;
      doc_->has_merges = true;
      return true;
    }
    json* array = Put(json::array());
    stack_.push_back(array);
    keys_.push_back(key_);
    return true;
  }
  bool end_array() override {
    if (mode_ == Mode::kMergePair) {
      if (pair_size_ != 2) {
        return Fail(absl::StrCat("merge ", doc_->merges.size(), " is not a pair [A, B]"));
      }
      mode_ = Mode::kMerges;
      return true;
    }
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kDom;
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    if (doc_->error.empty()) doc_->error = absl::StrCat("not valid JSON (", e.what(), ")");
    return false;
  }

 private:
  enum class Mode { kDom, kVocab, kMerges, kMergePair };

  // True when the container about to start is the value of `field` in the top-level "model".
  bool AtModelField(const char* field) const {
    return stack_.size() == 2 && keys_[1] == "model" && stack_[1]->is_object() && key_ == field;
  }
  bool Fail(std::string why) {
    if (doc_->error.empty()) doc_->error = std::move(why);
    return false;
  }
  bool Value(json v) {
    switch (mode_) {
      case Mode::kVocab:
        if (!v.is_number_integer()) {
          return Fail(absl::StrCat("model.vocab[\"", key_, "\"] is not an integer id"));
        }
        doc_->vocab.emplace_back(std::move(key_), v.get<int64_t>());
        return true;
      case Mode::kMerges:
      case Mode::kMergePair:
        return Fail(absl::StrCat("merge ", doc_->merges.size(), " holds a non-string"));
      default:
        Put(std::move(v));
        return true;
    }
  }
  // Places a value in the DOM under construction; returns where it lives.
  json* Put(json v) {
    if (stack_.empty()) {
      doc_->rest = std::move(v);
      return &doc_->rest;
    }
    json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    json& slot = (*top)[key_];
    slot = std::move(v);
    return &slot;
  }

  TokenizerDocument* doc_;
  Mode mode_ = Mode::kDom;
  std::vector<json*> stack_;
  std::vector<std::string> keys_;  // the key under which each stack_ entry was opened
  std::string key_;
  int pair_size_ = 0;
};

// Token string -> id, open addressing over the id -> string table it indexes (no per-entry nodes).
// NOTE: std::unordered_map here spent a quarter of the 1.8 s load of Gemma's vocabulary in cache
// misses; this table and MergeTable brought the load to well under a second.
class TokenIndex {
 public:
  explicit TokenIndex(const std::vector<std::string>* tokens) : tokens_(tokens) {}

  void Reserve(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    slots_.assign(capacity, 0);
    mask_ = capacity - 1;
  }
  // False when the string is already present.
  bool Insert(int32_t id) {
    const std::string_view key = (*tokens_)[id];
    const uint64_t h = Hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == 0) {
        slots_[i] = (h << 32) | static_cast<uint32_t>(id + 1);
        return true;
      }
      if ((slots_[i] >> 32) == (h & 0xFFFFFFFF) && (*tokens_)[IdOf(i)] == key) return false;
    }
  }
  int32_t Find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = Hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == 0) return -1;
      if ((slots_[i] >> 32) == (h & 0xFFFFFFFF) && (*tokens_)[IdOf(i)] == key) return IdOf(i);
    }
  }

 private:
  static uint64_t Hash(std::string_view key) {
    return std::hash<std::string_view>()(key) & 0xFFFFFFFF;
  }
  int32_t IdOf(size_t slot) const { return static_cast<int32_t>(slots_[slot] & 0xFFFFFFFF) - 1; }

  const std::vector<std::string>* tokens_;
  std::vector<uint64_t> slots_;  // (32-bit hash << 32) | (id + 1); 0 is empty
  size_t mask_ = 0;
};

struct Merge {
  int32_t rank;
  int32_t new_id;
};

// (left id, right id) -> merge, open addressing with multiplicative hashing.
class MergeTable {
 public:
  void Reserve(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    slots_.assign(capacity, Slot{kEmpty, {0, 0}});
    mask_ = capacity - 1;
  }
  // Keeps the first merge of a pair, as HF does (the lowest rank).
  void Insert(int32_t a, int32_t b, Merge merge) {
    const uint64_t key = Key(a, b);
    for (size_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, merge};
        return;
      }
      if (slots_[i].key == key) return;
    }
  }
  const Merge* Find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = Key(a, b);
    for (size_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t Hash(uint64_t key) { return (key * 0x9E3779B97F4A7C15ull) >> 20; }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

class BpeTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(std::string_view text);

  std::vector<int32_t> Encode(std::string_view text) const override;
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> TokenId(std::string_view token) const override;
  std::string TokenText(int32_t id) const override;
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < static_cast<int32_t>(special_.size()) && special_[id];
  }

 private:
  absl::Status ParseModel(const json& model, TokenizerDocument* doc);
  absl::Status ParseAddedTokens(const json& added);
  absl::Status ParseNormalizer(const json& normalizer);
  absl::Status ParsePreTokenizer(const json& pre_tokenizer);
  absl::Status ParseDecoder(const json& decoder);

  std::string Normalize(std::string_view text) const;
  void PreTokenize(const std::string& normalized, std::vector<std::string_view>* words) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
  void EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const;

  // Every id's string: the model vocabulary, then added tokens outside it.
  std::vector<std::string> id_to_token_;
  // Model vocabulary only (what BPE may produce), string -> id.
  TokenIndex vocab_{&id_to_token_};
  std::vector<bool> special_;
  MergeTable merges_;
  int32_t byte_ids_[256];   // <0xNN> ids, -1 when absent
  int32_t ascii_ids_[128];  // ids of the one-character ASCII tokens, -1 when absent (a fast path)
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  std::vector<AddedToken> added_;
  std::unordered_map<std::string, int32_t> added_ids_;
  AddedTokenTrie added_trie_;

  std::vector<NormalizerStep> normalizer_;
  bool has_split_ = false;
  std::string split_pattern_;
  SplitBehavior split_behavior_ = SplitBehavior::kIsolated;
  std::vector<DecoderStep> decoder_;
  FieldReader fields_;  // type errors in optional fields, reported by Load
};

absl::Status BpeTokenizer::ParseModel(const json& model, TokenizerDocument* doc) {
  if (!model.is_object()) return Invalid("\"model\" is missing");
  if (TypeOf(model) != "BPE") {
    return Invalid(
        absl::StrCat("model type \"", TypeOf(model), "\" is not supported (only \"BPE\" is)"));
  }
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(unsupported) && !model[unsupported].is_null() &&
        !(model[unsupported].is_string() && model[unsupported].get<std::string>().empty())) {
      return Invalid(absl::StrCat("BPE ", unsupported, " is not supported"));
    }
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0) {
    return Invalid("BPE dropout is not supported (tokenization must be deterministic)");
  }
  byte_fallback_ = fields_.Bool(model, "byte_fallback", false);
  fuse_unk_ = fields_.Bool(model, "fuse_unk", false);
  ignore_merges_ = fields_.Bool(model, "ignore_merges", false);

  if (!doc->has_vocab) return Invalid("model.vocab is missing or not an object");
  int64_t max_id = -1;
  for (const auto& [token, id] : doc->vocab) {
    if (id < 0 || id >= (1 << 30)) {
      return Invalid(absl::StrCat("model.vocab[\"", token, "\"] is not a valid id"));
    }
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(max_id + 1, std::string());
  std::vector<bool> seen(max_id + 1, false);
  vocab_.Reserve(doc->vocab.size());
  for (auto& [token, id] : doc->vocab) {
    if (seen[id]) return Invalid(absl::StrCat("model.vocab gives id ", id, " to two tokens"));
    seen[id] = true;
    id_to_token_[id] = std::move(token);
    if (!vocab_.Insert(static_cast<int32_t>(id))) {
      return Invalid(absl::StrCat("model.vocab has \"", id_to_token_[id], "\" twice"));
    }
  }
  doc->vocab.clear();
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_ids_[b] = vocab_.Find(name);
    const char c = static_cast<char>(b);
    if (b < 128) ascii_ids_[b] = vocab_.Find(std::string_view(&c, 1));
  }

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    const int32_t id = vocab_.Find(unk);
    if (id < 0) return Invalid(absl::StrCat("unk_token \"", unk, "\" is not in model.vocab"));
    unk_id_ = id;
  }
  if (!unk_id_.has_value()) {
    const bool all_bytes = byte_fallback_ && std::all_of(std::begin(byte_ids_), std::end(byte_ids_),
                                                         [](int32_t id) { return id >= 0; });
    if (!all_bytes) {
      return Invalid(
          "the BPE model has neither an unk_token nor byte_fallback with all 256 <0xNN> tokens, "
          "so characters outside the vocabulary could not be encoded");
    }
  }

  if (!doc->has_merges) return Invalid("model.merges is missing or not an array");
  merges_.Reserve(doc->merges.size());
  std::string joined;
  for (size_t rank = 0; rank < doc->merges.size(); ++rank) {
    const auto& [a, b] = doc->merges[rank];
    joined.assign(a).append(b);
    const int32_t ia = vocab_.Find(a);
    const int32_t ib = vocab_.Find(b);
    const int32_t ic = vocab_.Find(joined);
    if (ia < 0 || ib < 0 || ic < 0) {
      return Invalid(absl::StrCat("merge ", rank, " (\"", a, "\", \"", b,
                                  "\") uses a token that is not in model.vocab"));
    }
    // The first (lowest-rank) occurrence of a pair wins, as in HF.
    merges_.Insert(ia, ib, Merge{static_cast<int32_t>(rank), ic});
  }
  doc->merges.clear();
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParseAddedTokens(const json& added) {
  if (added.is_null()) return absl::OkStatus();
  if (!added.is_array()) return Invalid("added_tokens is not an array");
  for (const json& t : added) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        !t.contains("content") || !t["content"].is_string()) {
      return Invalid(absl::StrCat("added token ", Dump(t), " needs an integer id and content"));
    }
    AddedToken token;
    token.content = t["content"].get<std::string>();
    const int64_t id = t["id"].get<int64_t>();
    if (id < 0 || id >= (1 << 30) || token.content.empty()) {
      return Invalid(absl::StrCat("added token ", Dump(t), " has a bad id or empty content"));
    }
    token.id = static_cast<int32_t>(id);
    token.special = fields_.Bool(t, "special", false);
    token.lstrip = fields_.Bool(t, "lstrip", false);
    token.rstrip = fields_.Bool(t, "rstrip", false);
    if (fields_.Bool(t, "single_word", false)) {
      return Invalid(absl::StrCat("added token \"", token.content,
                                  "\" has single_word=true, which is not supported"));
    }
    if (fields_.Bool(t, "normalized", false) && !normalizer_.empty()) {
      return Invalid(absl::StrCat("added token \"", token.content,
                                  "\" has normalized=true with a normalizer, which is not "
                                  "supported (only tokens matched on the raw text are)"));
    }
    if (token.id >= static_cast<int32_t>(id_to_token_.size())) {
      id_to_token_.resize(token.id + 1);
    }
    if (!id_to_token_[token.id].empty() && id_to_token_[token.id] != token.content) {
      return Invalid(absl::StrCat("added token \"", token.content, "\" has id ", token.id,
                                  " which model.vocab gives to \"", id_to_token_[token.id], "\""));
    }
    id_to_token_[token.id] = token.content;
    if (!added_ids_.emplace(token.content, token.id).second) {
      return Invalid(absl::StrCat("added token \"", token.content, "\" appears twice"));
    }
    added_trie_.Insert(token.content, static_cast<int32_t>(added_.size()));
    added_.push_back(std::move(token));
  }
  special_.assign(id_to_token_.size(), false);
  for (const AddedToken& t : added_) special_[t.id] = t.special;
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParseNormalizer(const json& normalizer) {
  if (normalizer.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(normalizer);
  if (type == "Sequence") {
    if (!normalizer.contains("normalizers") || !normalizer["normalizers"].is_array()) {
      return Invalid("normalizer Sequence has no \"normalizers\" array");
    }
    for (const json& n : normalizer["normalizers"]) {
      absl::Status s = ParseNormalizer(n);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (type == "Replace") {
    absl::StatusOr<std::string> pattern = LiteralPattern(normalizer, "normalizer Replace");
    if (!pattern.ok()) return pattern.status();
    normalizer_.push_back(
        {NormalizerStep::kReplace, *pattern, fields_.String(normalizer, "content", "")});
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    normalizer_.push_back(
        {NormalizerStep::kPrepend, "", fields_.String(normalizer, "prepend", "")});
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("normalizer type \"", type,
                              "\" is not supported (Replace, Prepend and Sequence are)"));
}

absl::Status BpeTokenizer::ParsePreTokenizer(const json& pre_tokenizer) {
  if (pre_tokenizer.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(pre_tokenizer);
  if (type == "Sequence" && pre_tokenizer.contains("pretokenizers") &&
      pre_tokenizer["pretokenizers"].is_array() && pre_tokenizer["pretokenizers"].size() <= 1) {
    for (const json& p : pre_tokenizer["pretokenizers"]) {
      absl::Status s = ParsePreTokenizer(p);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    absl::StatusOr<std::string> pattern = LiteralPattern(pre_tokenizer, "pre_tokenizer Split");
    if (!pattern.ok()) return pattern.status();
    if (fields_.Bool(pre_tokenizer, "invert", false)) {
      return Invalid("pre_tokenizer Split with invert=true is not supported");
    }
    const std::string behavior = fields_.String(pre_tokenizer, "behavior", "");
    static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
        {"Removed", SplitBehavior::kRemoved},
        {"Isolated", SplitBehavior::kIsolated},
        {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
        {"MergedWithNext", SplitBehavior::kMergedWithNext},
        {"Contiguous", SplitBehavior::kContiguous},
    };
    bool known = false;
    for (const auto& [name, value] : kBehaviors) {
      if (behavior == name) {
        split_behavior_ = value;
        known = true;
      }
    }
    if (!known) return Invalid(absl::StrCat("pre_tokenizer Split behavior \"", behavior, "\""));
    if (has_split_) return Invalid("more than one pre_tokenizer Split is not supported");
    has_split_ = true;
    split_pattern_ = *pattern;
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("pre_tokenizer type \"", type,
                              "\" is not supported (a single Split on a literal string is)"));
}

absl::Status BpeTokenizer::ParseDecoder(const json& decoder) {
  if (decoder.is_null()) {
    return Invalid("there is no decoder; Tessera needs one to turn tokens back into text");
  }
  const std::string type = TypeOf(decoder);
  if (type == "Sequence") {
    if (!decoder.contains("decoders") || !decoder["decoders"].is_array()) {
      return Invalid("decoder Sequence has no \"decoders\" array");
    }
    for (const json& d : decoder["decoders"]) {
      absl::Status s = ParseDecoder(d);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (type == "Replace") {
    absl::StatusOr<std::string> pattern = LiteralPattern(decoder, "decoder Replace");
    if (!pattern.ok()) return pattern.status();
    const std::string content = fields_.String(decoder, "content", "");
    if (pattern->find_first_of("<>0123456789ABCDEFabcdefx") != std::string::npos) {
      // Would interfere with recognising <0xNN> byte tokens incrementally.
      return Invalid(absl::StrCat("decoder Replace pattern \"", *pattern, "\" is not supported"));
    }
    decoder_.push_back({DecoderStep::kReplace, *pattern, content});
    return absl::OkStatus();
  }
  if (type == "ByteFallback") {
    decoder_.push_back({DecoderStep::kByteFallback});
    return absl::OkStatus();
  }
  if (type == "Fuse") {
    decoder_.push_back({DecoderStep::kFuse});
    return absl::OkStatus();
  }
  if (type == "Strip") {
    DecoderStep step{DecoderStep::kStrip};
    step.content = fields_.String(decoder, "content", " ");
    step.start = fields_.Int(decoder, "start", 0);
    step.stop = fields_.Int(decoder, "stop", 0);
    if (Utf8CharLen(step.content, 0) != step.content.size() || step.content.empty()) {
      return Invalid("decoder Strip content must be one character");
    }
    if (std::any_of(decoder_.begin(), decoder_.end(),
                    [](const DecoderStep& d) { return d.kind == DecoderStep::kFuse; })) {
      // After Fuse it would strip the whole text, not each token, which streaming cannot honour.
      return Invalid("decoder Strip after Fuse is not supported");
    }
    decoder_.push_back(step);
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("decoder type \"", type,
                              "\" is not supported (Replace, ByteFallback, Fuse, Strip and "
                              "Sequence are)"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> BpeTokenizer::Load(std::string_view text) {
  TokenizerDocument doc;
  TokenizerSaxReader reader(&doc);
  const bool parsed = json::sax_parse(text.begin(), text.end(), &reader, json::input_format_t::json,
                                      /*strict=*/true);
  if (!parsed) return Invalid(doc.error.empty() ? "not valid JSON" : doc.error);
  json& root = doc.rest;
  if (!root.is_object()) return Invalid("the top level is not an object");
  auto tok = std::make_unique<BpeTokenizer>();
  const json null;
  const auto field = [&](const char* name) -> const json& {
    return root.contains(name) ? root[name] : null;
  };
  absl::Status s = tok->ParseNormalizer(field("normalizer"));
  if (s.ok()) s = tok->ParsePreTokenizer(field("pre_tokenizer"));
  if (s.ok()) s = tok->ParseModel(field("model"), &doc);
  if (s.ok()) s = tok->ParseAddedTokens(field("added_tokens"));
  if (s.ok()) s = tok->ParseDecoder(field("decoder"));
  if (s.ok()) s = tok->fields_.status();
  if (!s.ok()) return s;
  if (tok->special_.size() != tok->id_to_token_.size()) {
    tok->special_.assign(tok->id_to_token_.size(), false);
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

std::string BpeTokenizer::Normalize(std::string_view text) const {
  std::string s(text);
  for (const NormalizerStep& step : normalizer_) {
    if (step.kind == NormalizerStep::kReplace) {
      ReplaceAll(&s, step.pattern, step.content);
    } else if (!s.empty()) {
      s.insert(0, step.content);
    }
  }
  return s;
}

void BpeTokenizer::PreTokenize(const std::string& s, std::vector<std::string_view>* words) const {
  const std::string_view text(s);
  if (!has_split_) {
    if (!text.empty()) words->push_back(text);
    return;
  }
  // Pieces as in HF's SplitDelimiterBehavior, over non-overlapping leftmost matches.
  size_t piece_start = 0;  // start of the text not yet emitted
  size_t pos = 0;
  const size_t n = split_pattern_.size();
  const auto emit = [&](size_t begin, size_t end) {
    if (end > begin) words->push_back(text.substr(begin, end - begin));
  };
  while (true) {
    const size_t hit = text.find(split_pattern_, pos);
    if (hit == std::string_view::npos) break;
    size_t end = hit + n;
    switch (split_behavior_) {
      case SplitBehavior::kRemoved:
        emit(piece_start, hit);
        piece_start = end;
        break;
      case SplitBehavior::kIsolated:
        emit(piece_start, hit);
        emit(hit, end);
        piece_start = end;
        break;
      case SplitBehavior::kContiguous:
        while (text.compare(end, n, split_pattern_) == 0) end += n;
        emit(piece_start, hit);
        emit(hit, end);
        piece_start = end;
        break;
      case SplitBehavior::kMergedWithPrevious:
        emit(piece_start, end);
        piece_start = end;
        break;
      case SplitBehavior::kMergedWithNext:
        emit(piece_start, hit);
        piece_start = hit;
        break;
    }
    pos = end;
  }
  emit(piece_start, text.size());
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    if (const int32_t id = vocab_.Find(word); id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  // Symbols as a doubly linked list over a vector (HF's Word); len == 0 marks a merged-away one.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    int32_t len;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  const auto add = [&](int32_t id, int32_t len) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, len});
    if (index > 0) symbols[index - 1].next = index;
  };
  int32_t unk_len = 0;  // bytes of a pending <unk> (0: none), which fuse_unk may extend
  for (size_t i = 0; i < word.size();) {
    size_t len = Utf8CharLen(word, i);
    if (len == 0) len = 1;  // an invalid byte: not in the vocabulary, so it falls back below
    const std::string_view ch = word.substr(i, len);
    const int32_t id = len == 1 && static_cast<uint8_t>(ch[0]) < 128
                           ? ascii_ids_[static_cast<uint8_t>(ch[0])]
                           : vocab_.Find(ch);
    if (id >= 0) {
      if (unk_len > 0) add(*unk_id_, unk_len), unk_len = 0;
      add(id, static_cast<int32_t>(len));
    } else {
      bool done = false;
      if (byte_fallback_) {
        done = std::all_of(ch.begin(), ch.end(),
                           [&](char c) { return byte_ids_[static_cast<uint8_t>(c)] >= 0; });
        // As in HF, byte tokens are added without first flushing a pending unknown.
        if (done) {
          for (char c : ch) add(byte_ids_[static_cast<uint8_t>(c)], 1);
        }
      }
      if (!done) {
        // Load() guarantees an unk id whenever byte fallback can fail.
        if (unk_len > 0 && fuse_unk_) {
          unk_len += static_cast<int32_t>(len);
        } else {
          if (unk_len > 0) add(*unk_id_, unk_len);
          unk_len = static_cast<int32_t>(len);
        }
      }
    }
    i += len;
  }
  if (unk_len > 0) add(*unk_id_, unk_len);

  // Merge by rank, lowest first; ties go to the leftmost pair (HF's Merge ordering).
  // A candidate stays valid while its two symbols keep the ids it saw: symbols only grow, so the
  // pair's concatenation (its new_id) changes whenever either does, which is HF's staleness test
  // (the pair's merge still yields new_id) without a second table lookup.
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    int32_t left;
    int32_t right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue(
      std::greater<Candidate>(), std::move(storage));
  const auto lookup = [&](int32_t a, int32_t b) -> const Merge* { return merges_.Find(a, b); };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = lookup(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<int32_t>(i), m->new_id, symbols[i].id, symbols[i + 1].id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    if (cur.id != top.left || right.id != top.right) continue;  // stale
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const Merge* pm = lookup(symbols[cur.prev].id, cur.id)) {
        queue.push({pm->rank, cur.prev, pm->new_id, symbols[cur.prev].id, cur.id});
      }
    }
    if (cur.next >= 0) {
      if (const Merge* nm = lookup(cur.id, symbols[cur.next].id)) {
        queue.push({nm->rank, top.pos, nm->new_id, cur.id, symbols[cur.next].id});
      }
    }
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    ids->push_back(symbols[i].id);
  }
}

void BpeTokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  const std::string normalized = Normalize(text);
  std::vector<std::string_view> words;
  PreTokenize(normalized, &words);
  for (std::string_view word : words) EncodeWord(word, ids);
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  size_t segment_start = 0;  // raw text not yet encoded starts here
  size_t pos = 0;
  while (pos < text.size()) {
    const auto [index, len] = added_trie_.LongestMatch(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = added_[index];
    size_t start = pos;
    size_t stop = pos + len;
    if (token.lstrip) {
      // Absorb whitespace to the left, back to the end of the previous match.
      while (start > segment_start) {
        size_t k = start - 1;
        while (k > segment_start && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
        const size_t clen = Utf8CharLen(text, k);
        if (clen != start - k || !IsWhitespace(DecodeCodePoint(text, k, clen))) break;
        start = k;
      }
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        const size_t clen = Utf8CharLen(text, stop);
        if (clen == 0 || !IsWhitespace(DecodeCodePoint(text, stop, clen))) break;
        stop += clen;
      }
    }
    EncodeSegment(text.substr(segment_start, start - segment_start), &ids);
    ids.push_back(token.id);
    segment_start = pos = stop;
  }
  EncodeSegment(text.substr(segment_start), &ids);
  return ids;
}

std::string BpeTokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    // Unknown ids are dropped, as HF's decode does.
    if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size())) continue;
    if (skip_special && special_[id]) continue;
    tokens.push_back(id_to_token_[id]);
  }
  for (const DecoderStep& step : decoder_) {
    switch (step.kind) {
      case DecoderStep::kReplace:
        for (std::string& t : tokens) ReplaceAll(&t, step.pattern, step.content);
        break;
      case DecoderStep::kByteFallback: {
        std::vector<std::string> out;
        out.reserve(tokens.size());
        std::string run;
        size_t run_tokens = 0;
        const auto flush = [&] {
          if (run_tokens == 0) return;
          if (IsValidUtf8(run)) {
            out.push_back(run);
          } else {
            // HF: one U+FFFD per byte token of a run that is not valid UTF-8 as a whole.
            for (size_t k = 0; k < run_tokens; ++k) out.push_back("\xEF\xBF\xBD");
          }
          run.clear();
          run_tokens = 0;
        };
        for (std::string& t : tokens) {
          uint8_t byte;
          if (ParseByteToken(t, &byte)) {
            run.push_back(static_cast<char>(byte));
            ++run_tokens;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderStep::kStrip:
        for (std::string& t : tokens) {
          const size_t c = step.content.size();
          size_t begin = 0;
          for (int k = 0; k < step.start && t.compare(begin, c, step.content) == 0; ++k) begin += c;
          size_t end = t.size();
          for (int k = 0;
               k < step.stop && end >= begin + c && t.compare(end - c, c, step.content) == 0; ++k) {
            end -= c;
          }
          t = t.substr(begin, end - begin);
        }
        break;
    }
  }
  std::string text;
  for (const std::string& t : tokens) text += t;
  return text;
}

std::optional<int32_t> BpeTokenizer::TokenId(std::string_view token) const {
  if (auto it = added_ids_.find(std::string(token)); it != added_ids_.end()) return it->second;
  if (const int32_t id = vocab_.Find(token); id >= 0) return id;
  return std::nullopt;
}

std::string BpeTokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size())) return "";
  return id_to_token_[id];
}

}  // namespace

bool ParseByteToken(std::string_view token, uint8_t* byte) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return false;
  // As Rust's u8::from_str_radix(token[3..5], 16) in HF: two hex digits, or '+' and one.
  int value = 0;
  for (int k = token[3] == '+' ? 4 : 3; k < 5; ++k) {
    const char c = token[k];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    value = value * 16 + digit;
  }
  *byte = static_cast<uint8_t>(value);
  return true;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json) {
  return BpeTokenizer::Load(json);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  // One read of the known size (a stringstream copy cost a tenth of the load).
  const std::streamoff size = in.tellg();
  if (size < 0) return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));
  std::string text(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(text.data(), size)) {
    return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = FromJson(text);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special,
                                       std::vector<int32_t> keep_special)
    : tokenizer_(tokenizer), skip_special_(skip_special), keep_special_(std::move(keep_special)) {
  std::sort(keep_special_.begin(), keep_special_.end());
}

std::string IncrementalDecoder::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) return "";  // Decode drops these too
  if (skip_special_ && tokenizer_->IsSpecial(id)) {
    if (!std::binary_search(keep_special_.begin(), keep_special_.end(), id)) return "";
    // Kept markup: whatever byte run precedes it, then the token verbatim.
    std::string text = tokenizer_->Decode(pending_, skip_special_);
    pending_.clear();
    return text + tokenizer_->Decode({id}, /*skip_special=*/false);
  }
  pending_.push_back(id);
  uint8_t byte;
  if (ParseByteToken(tokenizer_->TokenText(id), &byte)) return "";  // the run may go on
  std::string text = tokenizer_->Decode(pending_, skip_special_);
  pending_.clear();
  return text;
}

std::string IncrementalDecoder::Flush() {
  std::string text = tokenizer_->Decode(pending_, skip_special_);
  pending_.clear();
  return text;
}

}  // namespace tessera::runtime
