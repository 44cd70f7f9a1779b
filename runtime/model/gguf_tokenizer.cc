#include "runtime/model/gguf_tokenizer.h"

#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {
namespace {

using json = nlohmann::json;

// The tokens conversion/gemma.py marks USER_DEFINED although the tokenizer makes them special, "so
// that the chat parser can read them"; special again here, as in the checkpoint's tokenizer.json.
const std::set<std::string_view>& ConverterVisibleTokens() {
  static const auto* s = new std::set<std::string_view>{
      "<|channel>",       "<channel|>",       "<|tool_call>", "<tool_call|>",
      "<|tool_response>", "<tool_response|>", "<|\"|>"};
  return *s;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<uint8_t>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> GgufChatTemplate(const GgufFile& file) {
  if (!file.Has("tokenizer.chat_template")) {
    return absl::NotFoundError(file.path() + " has no tokenizer.chat_template");
  }
  TESSERA_ASSIGN_OR_RETURN(std::string_view t, file.GetString("tokenizer.chat_template"));
  return std::string(t);
}

absl::StatusOr<std::string> GgufTokenizerJson(const GgufFile& file) {
  if (!file.Has("tokenizer.ggml.tokens")) {
    return absl::NotFoundError(file.path() + " has no tokenizer.ggml.tokens");
  }
  TESSERA_ASSIGN_OR_RETURN(std::string_view model, file.GetString("tokenizer.ggml.model"));
  if (model != "gemma4") {
    return file.Error("tokenizer.ggml.model is '" + std::string(model) +
                      "'; Tessera reads llama.cpp's 'gemma4' tokenizer model (SentencePiece-style "
                      "BPE with byte fallback)");
  }
  TESSERA_ASSIGN_OR_RETURN(const std::vector<std::string_view>* tokens,
                           file.GetStringArray("tokenizer.ggml.tokens"));
  const size_t n = tokens->size();
  std::vector<int64_t> types(n, static_cast<int64_t>(GgufTokenType::kNormal));
  if (file.Has("tokenizer.ggml.token_type")) {
    TESSERA_ASSIGN_OR_RETURN(types, file.GetIntArray("tokenizer.ggml.token_type"));
    if (types.size() != n) {
      return file.Error(absl::StrCat("tokenizer.ggml.token_type has ", types.size(),
                                     " entries for ", n, " tokens"));
    }
  }
  json vocab = json::object();
  json added = json::array();
  std::unordered_map<std::string_view, size_t> seen;
  seen.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string_view tok = (*tokens)[id];
    if (!IsValidUtf8(tok)) {
      return file.Error(absl::StrCat("tokenizer.ggml.tokens[", id, "] is not valid UTF-8"));
    }
    if (tok.empty()) {
      return file.Error(absl::StrCat("tokenizer.ggml.tokens[", id, "] is empty"));
    }
    if (auto [it, inserted] = seen.emplace(tok, id); !inserted) {
      return file.Error(absl::StrCat("tokenizer.ggml.tokens[", id, "] repeats token ", it->second,
                                     " (", json(std::string(tok)).dump(), ")"));
    }
    vocab[std::string(tok)] = id;
    const auto type = static_cast<GgufTokenType>(types[id]);
    if (type == GgufTokenType::kControl || type == GgufTokenType::kUnknown ||
        type == GgufTokenType::kUserDefined) {
      const bool special =
          type != GgufTokenType::kUserDefined || ConverterVisibleTokens().count(tok) != 0;
      added.push_back({{"id", id},
                       {"content", std::string(tok)},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", special}});
    }
  }
  json merges = json::array();
  if (file.Has("tokenizer.ggml.merges")) {
    TESSERA_ASSIGN_OR_RETURN(const std::vector<std::string_view>* m,
                             file.GetStringArray("tokenizer.ggml.merges"));
    for (size_t i = 0; i < m->size(); ++i) {
      const std::string_view merge = (*m)[i];
      // As llama.cpp: the first space after the first byte separates the pair.
      const size_t space = merge.size() < 2 ? std::string_view::npos : merge.find(' ', 1);
      if (space == std::string_view::npos || !IsValidUtf8(merge)) {
        return file.Error(
            absl::StrCat("tokenizer.ggml.merges[", i, "] is not a UTF-8 pair \"A B\""));
      }
      merges.push_back({std::string(merge.substr(0, space)), std::string(merge.substr(space + 1))});
    }
  }
  json bpe = {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", true},
              {"byte_fallback", true},
              {"ignore_merges", false}};
  if (file.Has("tokenizer.ggml.unknown_token_id")) {
    TESSERA_ASSIGN_OR_RETURN(int64_t unk, file.GetInt("tokenizer.ggml.unknown_token_id"));
    if (unk < 0 || static_cast<size_t>(unk) >= n) {
      return file.Error(
          absl::StrCat("tokenizer.ggml.unknown_token_id ", unk, " is not a token id"));
    }
    bpe["unk_token"] = std::string((*tokens)[unk]);
  }
  bpe["vocab"] = std::move(vocab);
  bpe["merges"] = std::move(merges);
  const json space_to_meta = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}};
  json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", std::move(added)},
      {"normalizer", space_to_meta},
      {"pre_tokenizer",
       {{"type", "Split"},
        {"pattern", {{"String", " "}}},
        {"behavior", "MergedWithPrevious"},
        {"invert", false}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array(
             {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}}})}}},
      {"model", std::move(bpe)},
  };
  return doc.dump();
}

absl::Status AddGgufTokenizerMetadata(const HfTokenizerFiles& files, GgufWriter* writer) {
  const json doc = json::parse(files.tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("model") ||
      !doc["model"].is_object()) {
    return absl::InvalidArgumentError("tokenizer.json is not a tokenizer.json object");
  }
  const json& model = doc["model"];
  if (model.value("type", "") != "BPE" || !model.value("byte_fallback", false)) {
    return absl::InvalidArgumentError(
        "tokenizer.json: llama.cpp's gemma4 tokenizer needs a BPE model with byte_fallback");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError("tokenizer.json: model.vocab is not an object");
  }
  std::map<int64_t, std::string> by_id;
  std::set<int64_t> base_ids;
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      return absl::InvalidArgumentError("tokenizer.json: model.vocab has a non-integer id");
    }
    by_id[id.get<int64_t>()] = text;
    base_ids.insert(id.get<int64_t>());
  }
  std::set<std::string> special_texts;
  if (doc.contains("added_tokens") && doc["added_tokens"].is_array()) {
    for (const json& t : doc["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string()) {
        return absl::InvalidArgumentError("tokenizer.json: an added token lacks id or content");
      }
      const int64_t id = t["id"].get<int64_t>();
      const std::string content = t["content"].get<std::string>();
      auto it = by_id.find(id);
      if (it != by_id.end() && it->second != content) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: id ", id, " is both ", it->second, " and ", content));
      }
      by_id[id] = content;
      if (files.tokenizer_config_json.empty() && t.value("special", false)) {
        special_texts.insert(content);
      }
    }
  }
  const int64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  if (static_cast<int64_t>(by_id.size()) != n) {
    return absl::InvalidArgumentError("tokenizer.json: token ids are not contiguous from 0");
  }
  // Named special tokens, as transformers' all_special_tokens.
  std::map<std::string, std::string> named;  // bos -> "<bos>"
  if (!files.tokenizer_config_json.empty()) {
    const json cfg = json::parse(files.tokenizer_config_json, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) {
      return absl::InvalidArgumentError("tokenizer_config.json is not a JSON object");
    }
    const auto text_of = [](const json& v) -> std::string {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        return v["content"].get<std::string>();
      }
      return "";
    };
    for (const char* k : {"bos", "eos", "unk", "pad", "mask"}) {
      const std::string key = std::string(k) + "_token";
      if (cfg.contains(key)) {
        const std::string t = text_of(cfg[key]);
        if (!t.empty()) {
          named[k] = t;
          special_texts.insert(t);
        }
      }
    }
    for (const char* list : {"extra_special_tokens", "additional_special_tokens"}) {
      if (cfg.contains(list) && cfg[list].is_array()) {
        for (const json& v : cfg[list]) {
          const std::string t = text_of(v);
          if (!t.empty()) special_texts.insert(t);
        }
      }
    }
  } else {
    for (const auto& [k, t] : std::map<std::string, std::string>{{"bos", "<bos>"},
                                                                 {"eos", "<eos>"},
                                                                 {"unk", "<unk>"},
                                                                 {"pad", "<pad>"},
                                                                 {"mask", "<mask>"}}) {
      if (special_texts.count(t) != 0) named[k] = t;
    }
  }
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::map<std::string, int64_t> id_of;
  for (const auto& [id, text] : by_id) {
    tokens.push_back(text);
    scores.push_back(-1000.0f);
    id_of[text] = id;
    GgufTokenType type = GgufTokenType::kNormal;
    uint8_t byte = 0;
    const bool is_byte = text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' &&
                         std::sscanf(text.c_str() + 3, "%2hhx", &byte) == 1 &&
                         std::isxdigit(static_cast<unsigned char>(text[3])) &&
                         std::isxdigit(static_cast<unsigned char>(text[4]));
    if (is_byte) {
      type = GgufTokenType::kByte;
    } else if (special_texts.count(text) != 0) {
      type = GgufTokenType::kControl;
    } else if (base_ids.count(id) == 0) {
      type = GgufTokenType::kUserDefined;
    }
    if (ConverterVisibleTokens().count(text) != 0) type = GgufTokenType::kUserDefined;
    types.push_back(static_cast<int32_t>(type));
  }
  std::vector<std::string> merges;
  if (model.contains("merges") && model["merges"].is_array()) {
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        return absl::InvalidArgumentError("tokenizer.json: a merge is neither \"A B\" nor [A, B]");
      }
    }
  }
  writer->AddString("tokenizer.ggml.model", "gemma4");
  writer->AddStringArray("tokenizer.ggml.tokens", tokens);
  writer->AddFloat32Array("tokenizer.ggml.scores", scores);
  writer->AddInt32Array("tokenizer.ggml.token_type", types);
  writer->AddStringArray("tokenizer.ggml.merges", merges);
  for (const auto& [k, key] :
       std::vector<std::pair<std::string, std::string>>{{"bos", "bos_token_id"},
                                                        {"eos", "eos_token_id"},
                                                        {"unk", "unknown_token_id"},
                                                        {"pad", "padding_token_id"},
                                                        {"mask", "mask_token_id"}}) {
    auto it = named.find(k);
    if (it == named.end() || id_of.count(it->second) == 0) continue;
    writer->AddUint32("tokenizer.ggml." + key, static_cast<uint32_t>(id_of[it->second]));
  }
  bool add_eos = false;
  if (!files.tokenizer_config_json.empty()) {
    const json cfg = json::parse(files.tokenizer_config_json, nullptr, false);
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
      add_eos = cfg["add_eos_token"].get<bool>();
    }
  }
  writer->AddBool("tokenizer.ggml.add_bos_token", true);
  writer->AddBool("tokenizer.ggml.add_eos_token", add_eos);
  if (!files.chat_template.empty()) {
    writer->AddString("tokenizer.chat_template", files.chat_template);
  }
  writer->AddBool("tokenizer.ggml.add_space_prefix", false);
  return absl::OkStatus();
}

}  // namespace tessera::runtime
