#include "runtime/prompt/tool_calls.h"

#include <cmath>
#include <cstdlib>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {
namespace {

// Debian's Abseil has its own string_view, which StrCat takes.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A JSON string literal for `text` (UTF-8 kept; invalid bytes become U+FFFD).
std::string JsonString(std::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

// Recursive descent over format_argument's output, writing JSON as it goes.
class ValueReader {
 public:
  // Reads `text` from byte `start` (errors name offsets into `text`).
  explicit ValueReader(std::string_view text, size_t start = 0) : s_(text), pos_(start) {}

  absl::Status Value(std::string* out) {
    SkipSpace();
    if (pos_ >= s_.size()) return Error("a value");
    if (At(kGemmaQuote)) {
      std::string text;
      if (absl::Status s = QuotedString(&text); !s.ok()) return s;
      out->append(JsonString(text));
      return absl::OkStatus();
    }
    const char c = s_[pos_];
    if (c == '{') return Object(out);
    if (c == '[') return Array(out);
    if (At("nan") || At("inf") || At("-inf")) {
      return Error("a value JSON can hold (NaN and infinities cannot be arguments)");
    }
    if (c == '-' || IsDigit(c)) return Number(out);
    for (const auto& [word, json] : {std::pair<std::string_view, std::string_view>{"true", "true"},
                                     {"false", "false"},
                                     {"None", "null"},
                                     {"null", "null"}}) {
      if (At(word) && EndsToken(pos_ + word.size())) {
        pos_ += word.size();
        out->append(json);
        return absl::OkStatus();
      }
    }
    return Error("a value (strings must be written <|\"|>...<|\"|>)");
  }

  // `{key:value,...}`, keys bare or quoted.
  absl::Status Object(std::string* out) {
    if (++depth_ > kMaxToolArgumentDepth) return TooDeep();
    ++pos_;  // '{'
    out->push_back('{');
    SkipSpace();
    if (Peek() == '}') {
      ++pos_;
      out->push_back('}');
      --depth_;
      return absl::OkStatus();
    }
    std::set<std::string, std::less<>> keys;
    for (;;) {
      SkipSpace();
      const size_t key_at = pos_;
      std::string key;
      if (absl::Status s = Key(&key); !s.ok()) return s;
      if (!keys.insert(key).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("tool call arguments: duplicate key '", key, "' at byte ", key_at));
      }
      absl::StrAppend(out, JsonString(key), ":");
      ++pos_;  // ':' (Key stops on it)
      if (absl::Status s = Value(out); !s.ok()) return s;
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        out->push_back(',');
        continue;
      }
      if (Peek() == '}') {
        ++pos_;
        out->push_back('}');
        --depth_;
        return absl::OkStatus();
      }
      return Error("',' or '}' after an object member");
    }
  }

  absl::Status Array(std::string* out) {
    if (++depth_ > kMaxToolArgumentDepth) return TooDeep();
    ++pos_;  // '['
    out->push_back('[');
    SkipSpace();
    if (Peek() == ']') {
      ++pos_;
      out->push_back(']');
      --depth_;
      return absl::OkStatus();
    }
    for (;;) {
      if (absl::Status s = Value(out); !s.ok()) return s;
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        out->push_back(',');
        continue;
      }
      if (Peek() == ']') {
        ++pos_;
        out->push_back(']');
        --depth_;
        return absl::OkStatus();
      }
      return Error("',' or ']' after an array element");
    }
  }

  // Skips whitespace and requires the end of the text.
  absl::Status End() {
    SkipSpace();
    if (pos_ != s_.size()) return Error("the end of the arguments");
    return absl::OkStatus();
  }

  void SkipSpace() {
    while (pos_ < s_.size() && IsSpace(s_[pos_])) ++pos_;
  }
  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool At(std::string_view word) const { return s_.substr(pos_, word.size()) == word; }
  size_t pos() const { return pos_; }
  void Advance(size_t n) { pos_ += n; }

  absl::Status Error(std::string_view expected) const {
    std::string_view near = s_.substr(pos_, 24);
    return absl::InvalidArgumentError(
        pos_ >= s_.size() ? absl::StrCat("tool call arguments: expected ", Av(expected),
                                         " at byte ", pos_, " but they end there")
                          : absl::StrCat("tool call arguments: expected ", Av(expected),
                                         " at byte ", pos_, ", found '", Av(near), "'"));
  }

 private:
  absl::Status QuotedString(std::string* text) {
    pos_ += kGemmaQuote.size();
    const size_t close = s_.find(kGemmaQuote, pos_);
    if (close == std::string_view::npos) {
      pos_ -= kGemmaQuote.size();
      return Error("a string closed by <|\"|>");
    }
    text->assign(s_.substr(pos_, close - pos_));
    pos_ = close + kGemmaQuote.size();
    return absl::OkStatus();
  }

  // A bare key runs to the first ':' (trimmed of whitespace); it may not contain the characters
  // that structure the arguments, so that a missing ':' is reported where it is missing.
  absl::Status Key(std::string* key) {
    if (At(kGemmaQuote)) {
      if (absl::Status s = QuotedString(key); !s.ok()) return s;
      SkipSpace();
      if (Peek() != ':') return Error("':' after a key");
      return absl::OkStatus();
    }
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ':') {
      const char c = s_[pos_];
      if (c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || At(kGemmaQuote)) {
        return Error("a key followed by ':'");
      }
      ++pos_;
    }
    if (pos_ >= s_.size()) {
      pos_ = start;
      return Error("a key followed by ':'");
    }
    std::string_view k = s_.substr(start, pos_ - start);
    while (!k.empty() && IsSpace(k.back())) k.remove_suffix(1);
    key->assign(k);
    return absl::OkStatus();
  }

  // JSON's number grammar, which covers everything Python's str() writes for ints and finite floats
  // ("1e+20", "1e-05", "2.0"); the text is copied as written, so no digit is lost.
  absl::Status Number(std::string* out) {
    const size_t start = pos_;
    if (Peek() == '-') ++pos_;
    if (Peek() == '0') {
      ++pos_;
    } else if (IsDigit(Peek())) {
      while (IsDigit(Peek())) ++pos_;
    } else {
      pos_ = start;
      return Error("a number");
    }
    if (Peek() == '.') {
      ++pos_;
      if (!IsDigit(Peek())) return Error("digits after '.'");
      while (IsDigit(Peek())) ++pos_;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (!IsDigit(Peek())) return Error("exponent digits");
      while (IsDigit(Peek())) ++pos_;
    }
    if (!EndsToken(pos_)) {
      pos_ = start;
      return Error("a number followed by ',', '}' or ']'");
    }
    const std::string text(s_.substr(start, pos_ - start));
    if (!std::isfinite(std::strtod(text.c_str(), nullptr))) {
      pos_ = start;
      return Error("a number a double can hold (this one overflows to infinity)");
    }
    out->append(text);
    return absl::OkStatus();
  }

  bool EndsToken(size_t at) const {
    if (at >= s_.size()) return true;
    const char c = s_[at];
    return IsSpace(c) || c == ',' || c == '}' || c == ']';
  }

  absl::Status TooDeep() const {
    return absl::InvalidArgumentError(
        absl::StrCat("tool call arguments nest deeper than ", kMaxToolArgumentDepth, " levels"));
  }

  std::string_view s_;
  size_t pos_;
  int depth_ = 0;
};

// Joins a message's text parts (a tool result is text).
absl::StatusOr<std::string> MessageText(const Message& m, size_t index) {
  std::string text;
  for (const ContentPart& p : m.parts) {
    if (p.type != ContentPart::Type::kText) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", index, "]: a tool result must be text"));
    }
    text += p.text;
  }
  return text;
}

}  // namespace

absl::StatusOr<std::string> GemmaValueToJson(std::string_view value) {
  ValueReader reader(value);
  std::string out;
  if (absl::Status s = reader.Value(&out); !s.ok()) return s;
  if (absl::Status s = reader.End(); !s.ok()) return s;
  return out;
}

absl::StatusOr<ParsedToolCall> ParseGemmaToolCall(std::string_view body) {
  size_t pos = 0;
  while (pos < body.size() && IsSpace(body[pos])) ++pos;
  constexpr std::string_view kCall = "call:";
  if (body.substr(pos, kCall.size()) != kCall) {
    return absl::InvalidArgumentError(absl::StrCat("tool call: expected 'call:NAME{...}', found '",
                                                   Av(body.substr(pos, 24)), "'"));
  }
  pos += kCall.size();
  const size_t brace = body.find('{', pos);
  ParsedToolCall call;
  call.name.assign(body.substr(pos, brace == std::string_view::npos ? 0 : brace - pos));
  if (brace == std::string_view::npos || call.name.empty()) {
    return absl::InvalidArgumentError("tool call: expected a function name followed by '{'");
  }
  for (char c : call.name) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '<' || c == '>' || c == '}' || c == ':' ||
        c == ',') {
      return absl::InvalidArgumentError(
          absl::StrCat("tool call: the function name '", call.name, "' is not a name"));
    }
  }
  ValueReader reader(body, brace);
  if (absl::Status s = reader.Object(&call.arguments); !s.ok()) return s;
  if (absl::Status s = reader.End(); !s.ok()) return s;
  return call;
}

absl::StatusOr<std::vector<Message>> FoldToolResults(std::vector<Message> messages) {
  std::vector<Message> out;
  out.reserve(messages.size());
  // Index in `out` of the assistant message that tool results attach to, or -1.
  int64_t open_call = -1;
  // Whether that message has received results (so the next plain assistant message continues it).
  bool has_results = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    Message& m = messages[i];
    if (m.role == "tool") {
      if (open_call < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "messages[", i,
            "]: a tool message must follow an assistant message with tool_calls (and only other "
            "tool messages in between)"));
      }
      Message& target = out[open_call];
      std::vector<ToolResponse> responses = std::move(m.tool_responses);
      if (responses.empty()) {
        absl::StatusOr<std::string> text = MessageText(m, i);
        if (!text.ok()) return text.status();
        const size_t k = target.tool_responses.size();
        if (k >= target.tool_calls.size()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "messages[", i, "]: more tool results than the ", target.tool_calls.size(),
              " tool_calls of the assistant turn they answer"));
        }
        const ToolCall* answered = &target.tool_calls[k];
        if (!m.tool_call_id.empty()) {
          answered = nullptr;
          for (const ToolCall& call : target.tool_calls) {
            if (call.id == m.tool_call_id) answered = &call;
          }
          if (answered == nullptr) {
            return absl::InvalidArgumentError(
                absl::StrCat("messages[", i, "]: tool_call_id '", m.tool_call_id,
                             "' is not the id of any tool call of the assistant turn before it"));
          }
        }
        responses.push_back({answered->name, *std::move(text)});
      } else if (!m.parts.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "messages[", i, "]: a tool message carries either tool_responses or text, not both"));
      }
      for (ToolResponse& r : responses) target.tool_responses.push_back(std::move(r));
      has_results = true;
      continue;
    }
    const bool assistant = m.role == "assistant" || m.role == "model";
    if (assistant && m.tool_calls.empty() && m.tool_responses.empty() && open_call >= 0 &&
        has_results && out[open_call].parts.empty()) {
      // The answer after the results: same model turn.
      out[open_call].parts = std::move(m.parts);
      open_call = -1;
      has_results = false;
      continue;
    }
    out.push_back(std::move(m));
    if (assistant && !out.back().tool_calls.empty()) {
      open_call = static_cast<int64_t>(out.size()) - 1;
      has_results = !out.back().tool_responses.empty();
    } else {
      open_call = -1;
      has_results = false;
    }
  }
  return out;
}

}  // namespace tessera::runtime
