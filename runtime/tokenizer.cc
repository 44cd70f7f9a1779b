// Hugging Face tokenizer.json, BPE model, following the semantics of HF's Rust `tokenizers`
// (added_vocabulary.rs, models/bpe/{model,word}.rs, decoders/byte_fallback.rs) for the component
// kinds Gemma's file uses; anything else is refused at load time with the component named.
#include "runtime/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <queue>
#include <sstream>
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
  return Invalid(absl::StrCat(kind, " pattern ", pattern->dump(),
                              " is not supported (only {\"String\": ...} literals are)"));
}

std::string TypeOf(const json& component) {
  if (component.is_object() && component.contains("type") && component["type"].is_string()) {
    return component["type"].get<std::string>();
  }
  return "";
}

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
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::Status ParseModel(const json& model);
  absl::Status ParseAddedTokens(const json& added);
  absl::Status ParseNormalizer(const json& normalizer);
  absl::Status ParsePreTokenizer(const json& pre_tokenizer);
  absl::Status ParseDecoder(const json& decoder);

  std::string Normalize(std::string_view text) const;
  void PreTokenize(const std::string& normalized, std::vector<std::string_view>* words) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
  void EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const;

  // NOTE: std::unordered_map rather than absl::flat_hash_map: Debian's Abseil hash needs a data
  // symbol (MixingHashState::kSeed) that --as-needed drops from tests that link this library as a
  // shared object.
  // Model vocabulary (token -> id), keyed by views into vocab_storage_ (a deque: stable addresses).
  std::deque<std::string> vocab_storage_;
  std::unordered_map<std::string_view, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];  // <0xNN> ids, -1 when absent
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
};

absl::Status BpeTokenizer::ParseModel(const json& model) {
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
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);
  ignore_merges_ = model.value("ignore_merges", false);

  const json& vocab = model.contains("vocab") ? model["vocab"] : json();
  if (!vocab.is_object()) return Invalid("model.vocab is not an object");
  int32_t max_id = -1;
  vocab_.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 30)) {
      return Invalid(absl::StrCat("model.vocab[\"", token, "\"] is not a valid id"));
    }
    const int32_t i = id.get<int32_t>();
    vocab_storage_.push_back(token);
    if (!vocab_.emplace(vocab_storage_.back(), i).second) {
      return Invalid(absl::StrCat("model.vocab has \"", token, "\" twice"));
    }
    max_id = std::max(max_id, i);
  }
  id_to_token_.assign(max_id + 1, std::string());
  std::vector<bool> seen(max_id + 1, false);
  for (const auto& [token, id] : vocab_) {
    if (seen[id]) return Invalid(absl::StrCat("model.vocab gives id ", id, " to two tokens"));
    seen[id] = true;
    id_to_token_[id] = std::string(token);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(absl::StrFormat("<0x%02X>", b));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    auto it = vocab_.find(unk);
    if (it == vocab_.end()) {
      return Invalid(absl::StrCat("unk_token \"", unk, "\" is not in model.vocab"));
    }
    unk_id_ = it->second;
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

  const json& merges = model.contains("merges") ? model["merges"] : json();
  if (!merges.is_array()) return Invalid("model.merges is not an array");
  merges_.reserve(merges.size());
  std::string a, b;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Invalid(absl::StrCat("merge ", rank, " \"", s, "\" is not \"A B\""));
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else {
      return Invalid(absl::StrCat("merge ", rank, " is neither [A, B] nor \"A B\""));
    }
    auto ia = vocab_.find(a);
    auto ib = vocab_.find(b);
    auto ic = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || ic == vocab_.end()) {
      return Invalid(absl::StrCat("merge ", rank, " (\"", a, "\", \"", b,
                                  "\") uses a token that is not in model.vocab"));
    }
    // The first (lowest-rank) occurrence of a pair wins, as in HF.
    merges_.emplace(PairKey(ia->second, ib->second), Merge{static_cast<int32_t>(rank), ic->second});
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParseAddedTokens(const json& added) {
  if (added.is_null()) return absl::OkStatus();
  if (!added.is_array()) return Invalid("added_tokens is not an array");
  for (const json& t : added) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        !t.contains("content") || !t["content"].is_string()) {
      return Invalid(absl::StrCat("added token ", t.dump(), " needs an integer id and content"));
    }
    AddedToken token;
    token.content = t["content"].get<std::string>();
    const int64_t id = t["id"].get<int64_t>();
    if (id < 0 || id >= (1 << 30) || token.content.empty()) {
      return Invalid(absl::StrCat("added token ", t.dump(), " has a bad id or empty content"));
    }
    token.id = static_cast<int32_t>(id);
    token.special = t.value("special", false);
    token.lstrip = t.value("lstrip", false);
    token.rstrip = t.value("rstrip", false);
    if (t.value("single_word", false)) {
      return Invalid(absl::StrCat("added token \"", token.content,
                                  "\" has single_word=true, which is not supported"));
    }
    if (t.value("normalized", false) && !normalizer_.empty()) {
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
    normalizer_.push_back({NormalizerStep::kReplace, *pattern, normalizer.value("content", "")});
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    normalizer_.push_back({NormalizerStep::kPrepend, "", normalizer.value("prepend", "")});
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
    if (pre_tokenizer.value("invert", false)) {
      return Invalid("pre_tokenizer Split with invert=true is not supported");
    }
    const std::string behavior = pre_tokenizer.value("behavior", "");
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
    const std::string content = decoder.value("content", "");
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
    step.content = decoder.value("content", " ");
    step.start = decoder.value("start", 0);
    step.stop = decoder.value("stop", 0);
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
  json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Invalid("not valid JSON");
  if (!root.is_object()) return Invalid("the top level is not an object");
  auto tok = std::make_unique<BpeTokenizer>();
  const json null;
  const auto field = [&](const char* name) -> const json& {
    return root.contains(name) ? root[name] : null;
  };
  absl::Status s = tok->ParseNormalizer(field("normalizer"));
  if (s.ok()) s = tok->ParsePreTokenizer(field("pre_tokenizer"));
  if (s.ok()) s = tok->ParseModel(field("model"));
  if (s.ok()) s = tok->ParseAddedTokens(field("added_tokens"));
  if (s.ok()) s = tok->ParseDecoder(field("decoder"));
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
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
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
  std::optional<std::pair<int32_t, int32_t>> unk;  // pending (id, byte length), for fuse_unk
  for (size_t i = 0; i < word.size();) {
    size_t len = Utf8CharLen(word, i);
    if (len == 0) len = 1;  // an invalid byte: not in the vocabulary, so it falls back below
    const std::string_view ch = word.substr(i, len);
    auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      if (unk) add(unk->first, unk->second), unk.reset();
      add(it->second, static_cast<int32_t>(len));
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
        if (unk && fuse_unk_) {
          unk->second += static_cast<int32_t>(len);
        } else {
          if (unk) add(unk->first, unk->second);
          unk = std::make_pair(*unk_id_, static_cast<int32_t>(len));
        }
      }
    }
    i += len;
  }
  if (unk) add(unk->first, unk->second);

  // Merge by rank, lowest first; ties go to the leftmost pair (HF's Merge ordering).
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue(
      std::greater<Candidate>(), std::move(storage));
  const auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = lookup(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    const Merge* m = lookup(cur.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const Merge* pm = lookup(symbols[cur.prev].id, cur.id)) {
        queue.push({pm->rank, cur.prev, pm->new_id});
      }
    }
    if (cur.next >= 0) {
      if (const Merge* nm = lookup(cur.id, symbols[cur.next].id)) {
        queue.push({nm->rank, top.pos, nm->new_id});
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
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::string BpeTokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size())) return "";
  return id_to_token_[id];
}

}  // namespace

bool ParseByteToken(std::string_view token, uint8_t* byte) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return false;
  int value = 0;
  for (int k = 3; k < 5; ++k) {
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
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = FromJson(buffer.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDecoder::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) return "";  // Decode drops these too
  if (skip_special_ && tokenizer_->IsSpecial(id)) return "";
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
