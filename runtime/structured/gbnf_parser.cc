#include "runtime/structured/gbnf_parser.h"

#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "runtime/structured/regex_parser.h"

namespace tessera::runtime::structured {
namespace {

constexpr int kMaxNesting = 256;

class GbnfParser {
 public:
  GbnfParser(std::string_view text, const Vocabulary* vocabulary)
      : text_(text), vocabulary_(vocabulary) {}

  absl::StatusOr<Grammar> Parse() {
    SkipSpace(/*newlines=*/true);
    while (pos_ < text_.size()) {
      std::string name = ParseName();
      if (name.empty()) return Error("expected a rule name");
      SkipSpace(false);
      if (text_.substr(pos_, 3) != "::=")
        return Error(absl::StrCat("expected '::=' after '", name, "'"));
      pos_ += 3;
      SkipSpace(true);
      const int rule = RuleId(name);
      if (defined_.count(rule)) return Error(absl::StrCat("rule '", name, "' is defined twice"));
      defined_.insert(rule);
      auto body = ParseAlternatives(/*nested=*/false, 0);
      if (!body.ok()) return body.status();
      g_.rule_bodies[rule] = *body;
      if (pos_ < text_.size() && text_[pos_] != '\n' && text_[pos_] != '\r') {
        return Error(absl::StrCat("unexpected '", std::string(text_.substr(pos_, 1)), "'"));
      }
      SkipSpace(true);
    }
    auto root = ids_.find("root");
    if (root == ids_.end() || g_.rule_bodies[root->second] == nullptr) {
      return absl::InvalidArgumentError("GBNF grammar has no 'root' rule");
    }
    for (size_t r = 0; r < g_.rule_bodies.size(); ++r) {
      if (g_.rule_bodies[r] == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("GBNF rule '", g_.rule_names[r], "' is used but not defined"));
      }
    }
    g_.root = root->second;
    return std::move(g_);
  }

 private:
  absl::Status Error(std::string message) const {
    // Line and column for the person who wrote the grammar.
    int line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("GBNF grammar, line ", line, " column ", col, ": ", message));
  }

  void SkipSpace(bool newlines) {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n' && text_[pos_] != '\r') ++pos_;
      } else {
        break;
      }
    }
  }

  static bool IsNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  }

  std::string ParseName() {
    const size_t start = pos_;
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  int RuleId(const std::string& name) {
    auto [it, inserted] = ids_.emplace(name, 0);
    if (inserted) it->second = g_.AddRule(name);
    return it->second;
  }

  absl::StatusOr<ExprPtr> ParseAlternatives(bool nested, int depth) {
    if (depth > kMaxNesting)
      return Error(absl::StrCat("nested more than ", kMaxNesting, " levels"));
    std::vector<ExprPtr> alternatives;
    while (true) {
      auto seq = ParseSequence(nested, depth);
      if (!seq.ok()) return seq.status();
      alternatives.push_back(*seq);
      if (pos_ < text_.size() && text_[pos_] == '|') {
        ++pos_;
        SkipSpace(true);
        continue;
      }
      break;
    }
    return Choice(std::move(alternatives));
  }

  absl::StatusOr<ExprPtr> ParseSequence(bool nested, int depth) {
    std::vector<ExprPtr> items;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '|' || c == ')' || c == '\n' || c == '\r') break;
      absl::StatusOr<ExprPtr> item;
      if (c == '"') {
        item = ParseLiteral();
      } else if (c == '[') {
        item = ParseClass();
      } else if (c == '.') {
        ++pos_;
        item = CodepointSet({{0, kMaxCodepoint}});
      } else if (c == '(') {
        ++pos_;
        SkipSpace(true);
        item = ParseAlternatives(true, depth + 1);
        if (item.ok()) {
          if (pos_ >= text_.size() || text_[pos_] != ')') return Error("missing ')'");
          ++pos_;
        }
      } else if (c == '<') {
        item = ParseToken();
      } else if (c == '!') {
        return Error("'!<token>' (any token but one) is not supported");
      } else if (IsNameChar(c)) {
        const size_t save = pos_;
        std::string name = ParseName();
        // `name ::=` on the same line would be a missing newline between rules.
        size_t p = pos_;
        while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
        if (text_.substr(p, 3) == "::=") {
          pos_ = save;
          return Error(absl::StrCat("rule '", name, "' starts before the previous one ended"));
        }
        item = RuleRef(RuleId(name));
      } else {
        return Error(absl::StrCat("unexpected '", std::string(text_.substr(pos_, 1)), "'"));
      }
      if (!item.ok()) return item.status();
      SkipSpace(nested);
      auto quantified = ParseQuantifier(*item);
      if (!quantified.ok()) return quantified.status();
      items.push_back(*quantified);
      SkipSpace(nested);
    }
    return Sequence(std::move(items));
  }

  absl::StatusOr<ExprPtr> ParseQuantifier(ExprPtr item) {
    if (pos_ >= text_.size()) return item;
    const char c = text_[pos_];
    if (c == '*') {
      ++pos_;
      return Star(item);
    }
    if (c == '+') {
      ++pos_;
      return Plus(item);
    }
    if (c == '?') {
      ++pos_;
      return Optional(item);
    }
    if (c != '{') return item;
    ++pos_;
    SkipSpace(false);
    auto number = [&](int* v) {
      const size_t start = pos_;
      int64_t n = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        n = std::min<int64_t>(n * 10 + (text_[pos_] - '0'), 1'000'000'000);
        ++pos_;
      }
      *v = static_cast<int>(n);
      return pos_ > start;
    };
    int min = 0, max = 0;
    if (!number(&min)) return Error("expected a number after '{'");
    SkipSpace(false);
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return Repeat(item, min, min);
    }
    if (pos_ >= text_.size() || text_[pos_] != ',') return Error("expected ',' or '}'");
    ++pos_;
    SkipSpace(false);
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return Repeat(item, min, -1);
    }
    if (!number(&max)) return Error("expected a number or '}'");
    SkipSpace(false);
    if (pos_ >= text_.size() || text_[pos_] != '}') return Error("expected '}'");
    ++pos_;
    if (max < min) return Error(absl::StrCat("repetition {", min, ",", max, "} has max < min"));
    return Repeat(item, min, max);
  }

  // One (possibly escaped) code point inside a literal or class.
  absl::StatusOr<uint32_t> ParseChar() {
    if (pos_ >= text_.size()) return Error("unexpected end of grammar");
    const uint8_t b = text_[pos_];
    if (b == '\\') {
      ++pos_;
      if (pos_ >= text_.size()) return Error("grammar ends with a backslash");
      const char e = text_[pos_++];
      int digits = 0;
      switch (e) {
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
          return static_cast<uint8_t>(e);
        case 'x':
          digits = 2;
          break;
        case 'u':
          digits = 4;
          break;
        case 'U':
          digits = 8;
          break;
        default:
          return Error(absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
      }
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        if (pos_ >= text_.size()) return Error("incomplete hex escape");
        const char h = text_[pos_++];
        int d;
        if (h >= '0' && h <= '9') {
          d = h - '0';
        } else if (h >= 'a' && h <= 'f') {
          d = h - 'a' + 10;
        } else if (h >= 'A' && h <= 'F') {
          d = h - 'A' + 10;
        } else {
          return Error("bad hex digit in escape");
        }
        v = v * 16 + d;
      }
      if (v > kMaxCodepoint) return Error("code point out of range");
      return v;
    }
    // A UTF-8 sequence.
    int n = b < 0x80             ? 1
            : (b & 0xE0) == 0xC0 ? 2
            : (b & 0xF0) == 0xE0 ? 3
            : (b & 0xF8) == 0xF0 ? 4
                                 : 0;
    std::vector<uint32_t> cps;
    if (n == 0 || pos_ + n > text_.size() || !DecodeUtf8(text_.substr(pos_, n), &cps)) {
      return Error("grammar is not valid UTF-8");
    }
    pos_ += n;
    return cps[0];
  }

  absl::StatusOr<ExprPtr> ParseLiteral() {
    ++pos_;  // '"'
    std::string bytes;
    while (true) {
      if (pos_ >= text_.size() || text_[pos_] == '\n') return Error("unterminated string literal");
      if (text_[pos_] == '"') {
        ++pos_;
        break;
      }
      auto cp = ParseChar();
      if (!cp.ok()) return cp.status();
      AppendUtf8(*cp, &bytes);
    }
    return Literal(bytes);
  }

  absl::StatusOr<ExprPtr> ParseClass() {
    ++pos_;  // '['
    bool negate = false;
    if (pos_ < text_.size() && text_[pos_] == '^') {
      negate = true;
      ++pos_;
    }
    CodepointRanges set;
    while (true) {
      if (pos_ >= text_.size() || text_[pos_] == '\n') return Error("unterminated character class");
      if (text_[pos_] == ']') {
        ++pos_;
        break;
      }
      auto lo = ParseChar();
      if (!lo.ok()) return lo.status();
      uint32_t hi = *lo;
      if (pos_ + 1 < text_.size() && text_[pos_] == '-' && text_[pos_ + 1] != ']') {
        ++pos_;
        auto h = ParseChar();
        if (!h.ok()) return h.status();
        hi = *h;
        if (hi < *lo) return Error("character range out of order");
      }
      set.emplace_back(*lo, hi);
    }
    if (negate) set = ComplementRanges(set);
    return CodepointSet(set);
  }

  absl::StatusOr<ExprPtr> ParseToken() {
    const size_t start = pos_;
    const size_t close = text_.find('>', pos_ + 1);
    if (close == std::string_view::npos) return Error("unterminated token reference '<...>'");
    pos_ = close + 1;
    const std::string_view inner = text_.substr(start + 1, close - start - 1);
    if (vocabulary_ == nullptr) return Error("token references need a vocabulary");
    std::optional<int32_t> id;
    if (inner.size() >= 2 && inner.front() == '[' && inner.back() == ']') {
      int64_t v = 0;
      const std::string_view digits = inner.substr(1, inner.size() - 2);
      if (digits.empty() || digits.size() > 9) return Error("bad token id in '<[...]>'");
      for (char c : digits) {
        if (c < '0' || c > '9') return Error("bad token id in '<[...]>'");
        v = v * 10 + (c - '0');
      }
      if (v >= vocabulary_->size()) {
        return Error(absl::StrCat("token id ", v, " is outside the vocabulary"));
      }
      id = static_cast<int32_t>(v);
    } else {
      id = vocabulary_->TokenIdByText(text_.substr(start, close + 1 - start));
      if (!id) {
        return Error(absl::StrCat("unknown token '",
                                  std::string(text_.substr(start, close + 1 - start)), "'"));
      }
    }
    if (vocabulary_->IsExcluded(*id)) return SymbolsExpr(SymbolSet::Single(g_.TokenSymbol(*id)));
    return Literal(vocabulary_->TokenBytes(*id));
  }

  std::string_view text_;
  const Vocabulary* vocabulary_;
  size_t pos_ = 0;
  Grammar g_;
  std::map<std::string, int> ids_;
  std::set<int> defined_;
};

}  // namespace

absl::StatusOr<Grammar> ParseGbnf(std::string_view text, const Vocabulary* vocabulary) {
  return GbnfParser(text, vocabulary).Parse();
}

}  // namespace tessera::runtime::structured
