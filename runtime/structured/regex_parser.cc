#include "runtime/structured/regex_parser.h"

#include "absl/strings/str_cat.h"

namespace tessera::runtime::structured {
namespace {

CodepointRanges Digits() { return {{'0', '9'}}; }
CodepointRanges Word() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
CodepointRanges Space() {
  return {{'\t', '\r'},     {' ', ' '},       {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
          {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
}

void Append(CodepointRanges* dst, const CodepointRanges& src) {
  dst->insert(dst->end(), src.begin(), src.end());
}

class RegexParser {
 public:
  RegexParser(std::vector<uint32_t> text, const CharEncoder& encode, const RegexOptions& options)
      : s_(std::move(text)), encode_(encode), options_(options) {}

  absl::StatusOr<ParsedRegex> Parse() {
    ParsedRegex out;
    if (!s_.empty() && s_[0] == '^') {
      out.anchored_start = true;
      pos_ = 1;
    }
    end_ = s_.size();
    if (end_ > pos_ && s_[end_ - 1] == '$' && !EscapedAt(end_ - 1)) {
      out.anchored_end = true;
      --end_;
    }
    auto e = ParseAlternation(0);
    if (!e.ok()) return e.status();
    if (pos_ != end_) return Error(absl::StrCat("unexpected ')' at offset ", pos_));
    out.expr = *e;
    return out;
  }

 private:
  absl::Status Error(std::string message) {
    return absl::InvalidArgumentError(absl::StrCat("regex: ", message));
  }

  // Whether s_[i] is preceded by an odd number of backslashes.
  bool EscapedAt(size_t i) const {
    size_t n = 0;
    while (i > n && s_[i - 1 - n] == '\\') ++n;
    return n % 2 == 1;
  }

  bool AtEnd() const { return pos_ >= end_; }
  uint32_t Peek() const { return s_[pos_]; }

  absl::StatusOr<ExprPtr> ParseAlternation(int depth) {
    if (depth > options_.max_nesting) {
      return Error(absl::StrCat("nested more than ", options_.max_nesting, " levels"));
    }
    std::vector<ExprPtr> alternatives;
    while (true) {
      auto seq = ParseSequence(depth);
      if (!seq.ok()) return seq.status();
      alternatives.push_back(*seq);
      if (!AtEnd() && Peek() == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    return Choice(std::move(alternatives));
  }

  absl::StatusOr<ExprPtr> ParseSequence(int depth) {
    std::vector<ExprPtr> items;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      auto atom = ParseAtom(depth);
      if (!atom.ok()) return atom.status();
      auto quantified = ParseQuantifiers(*atom);
      if (!quantified.ok()) return quantified.status();
      items.push_back(*quantified);
    }
    return Sequence(std::move(items));
  }

  absl::StatusOr<ExprPtr> ParseQuantifiers(ExprPtr atom) {
    while (!AtEnd()) {
      const uint32_t c = Peek();
      int min, max;
      if (c == '*') {
        min = 0, max = -1;
        ++pos_;
      } else if (c == '+') {
        min = 1, max = -1;
        ++pos_;
      } else if (c == '?') {
        min = 0, max = 1;
        ++pos_;
      } else if (c == '{') {
        const size_t save = pos_;
        auto counts = ParseBraces();
        if (!counts.ok()) return counts.status();
        if (!counts->first) {  // not a quantifier: a literal '{' (as ECMAScript's Annex B)
          pos_ = save;
          return atom;
        }
        min = counts->second.first;
        max = counts->second.second;
      } else {
        return atom;
      }
      if (!AtEnd() && Peek() == '?') {
        ++pos_;  // lazy: same language
      } else if (!AtEnd() && Peek() == '+') {
        return Error("possessive quantifiers are not supported");
      }
      atom = Repeat(atom, min, max);
    }
    return atom;
  }

  // {n}, {n,}, {n,m}: first = whether it was a quantifier at all.
  absl::StatusOr<std::pair<bool, std::pair<int, int>>> ParseBraces() {
    ++pos_;  // '{'
    auto number = [&](int* v) {
      const size_t start = pos_;
      int64_t n = 0;
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
        n = std::min<int64_t>(n * 10 + (Peek() - '0'), 1'000'000'000);
        ++pos_;
      }
      *v = static_cast<int>(n);
      return pos_ > start;
    };
    int min = 0, max = 0;
    if (!number(&min)) return std::make_pair(false, std::make_pair(0, 0));
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      return std::make_pair(true, std::make_pair(min, min));
    }
    if (AtEnd() || Peek() != ',') return std::make_pair(false, std::make_pair(0, 0));
    ++pos_;
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      return std::make_pair(true, std::make_pair(min, -1));
    }
    if (!number(&max) || AtEnd() || Peek() != '}') {
      return std::make_pair(false, std::make_pair(0, 0));
    }
    ++pos_;
    if (max < min) return Error(absl::StrCat("quantifier {", min, ",", max, "} has max < min"));
    return std::make_pair(true, std::make_pair(min, max));
  }

  absl::StatusOr<ExprPtr> ParseAtom(int depth) {
    const uint32_t c = Peek();
    switch (c) {
      case '(': {
        ++pos_;
        if (!AtEnd() && Peek() == '?') {
          ++pos_;
          if (AtEnd()) return Error("unterminated group");
          const uint32_t k = Peek();
          if (k == ':') {
            ++pos_;
          } else if (k == 'P' || k == '<') {
            if (k == 'P') ++pos_;
            if (AtEnd() || Peek() != '<') return Error("unsupported group syntax '(?P'");
            ++pos_;
            if (!AtEnd() && (Peek() == '=' || Peek() == '!')) {
              return Error("lookbehind is not supported");
            }
            while (!AtEnd() && Peek() != '>') ++pos_;
            if (AtEnd()) return Error("unterminated group name");
            ++pos_;
          } else if (k == '=' || k == '!') {
            return Error("lookahead is not supported");
          } else {
            return Error("inline flags and other '(?' groups are not supported");
          }
        }
        auto inner = ParseAlternation(depth + 1);
        if (!inner.ok()) return inner.status();
        if (AtEnd() || Peek() != ')') return Error("missing ')'");
        ++pos_;
        return *inner;
      }
      case ')':
        return Error("unbalanced ')'");
      case '[':
        return ParseClass();
      case '.': {
        ++pos_;
        CodepointRanges excluded = {{'\n', '\n'}};
        if (options_.ecmascript_dot) excluded = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};
        return encode_(ComplementRanges(excluded));
      }
      case '^':
        return Error("anchor '^' is only supported at the start of the pattern");
      case '$':
        return Error("anchor '$' is only supported at the end of the pattern");
      case '*':
      case '+':
      case '?':
        return Error(absl::StrCat("quantifier '", std::string(1, static_cast<char>(c)),
                                  "' with nothing to repeat"));
      case '\\': {
        ++pos_;
        CodepointRanges set;
        auto st = ParseEscape(/*in_class=*/false, &set);
        if (!st.ok()) return st;
        return encode_(set);
      }
      default:
        ++pos_;
        return encode_({{c, c}});
    }
  }

  // After a backslash. Appends the escaped set to *set.
  absl::Status ParseEscape(bool in_class, CodepointRanges* set) {
    if (AtEnd()) return Error("pattern ends with a backslash");
    const uint32_t c = Peek();
    ++pos_;
    auto single = [&](uint32_t cp) { set->emplace_back(cp, cp); };
    switch (c) {
      case 'd':
        Append(set, Digits());
        return absl::OkStatus();
      case 'D':
        Append(set, ComplementRanges(Digits()));
        return absl::OkStatus();
      case 'w':
        Append(set, Word());
        return absl::OkStatus();
      case 'W':
        Append(set, ComplementRanges(Word()));
        return absl::OkStatus();
      case 's':
        Append(set, Space());
        return absl::OkStatus();
      case 'S':
        Append(set, ComplementRanges(Space()));
        return absl::OkStatus();
      case 'n':
        single('\n');
        return absl::OkStatus();
      case 'r':
        single('\r');
        return absl::OkStatus();
      case 't':
        single('\t');
        return absl::OkStatus();
      case 'f':
        single('\f');
        return absl::OkStatus();
      case 'v':
        single('\v');
        return absl::OkStatus();
      case '0':
        single(0);
        return absl::OkStatus();
      case 'b':
        if (in_class) {
          single('\b');
          return absl::OkStatus();
        }
        return Error("word boundary \\b is not supported");
      case 'B':
        return Error("\\B is not supported");
      case 'x':
      case 'u': {
        uint32_t v = 0;
        if (c == 'u' && !AtEnd() && Peek() == '{') {
          ++pos_;
          int n = 0;
          while (!AtEnd() && Peek() != '}' && n < 7) {
            const int h = Hex(Peek());
            if (h < 0) return Error("bad \\u{...} escape");
            v = v * 16 + h;
            ++pos_;
            ++n;
          }
          if (AtEnd() || Peek() != '}' || n == 0 || v > kMaxCodepoint) {
            return Error("bad \\u{...} escape");
          }
          ++pos_;
        } else {
          const int digits = c == 'x' ? 2 : 4;
          for (int i = 0; i < digits; ++i) {
            if (AtEnd() || Hex(Peek()) < 0) {
              return Error(absl::StrCat("\\", std::string(1, static_cast<char>(c)), " needs ",
                                        digits, " hex digits"));
            }
            v = v * 16 + Hex(Peek());
            ++pos_;
          }
        }
        single(v);
        return absl::OkStatus();
      }
      case 'p':
      case 'P':
        return Error("Unicode property classes (\\p{...}) are not supported");
      case 'k':
        return Error("named backreferences are not supported");
      case 'c':
        return Error("control escapes (\\cX) are not supported");
      default:
        if (c >= '1' && c <= '9') return Error("backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          return Error(absl::StrCat("unknown escape \\", std::string(1, static_cast<char>(c))));
        }
        single(c);  // escaped punctuation or any other character: itself
        return absl::OkStatus();
    }
  }

  static int Hex(uint32_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  absl::StatusOr<ExprPtr> ParseClass() {
    ++pos_;  // '['
    bool negate = false;
    if (!AtEnd() && Peek() == '^') {
      negate = true;
      ++pos_;
    }
    CodepointRanges set;
    while (true) {
      if (AtEnd()) return Error("missing ']'");
      uint32_t c = Peek();
      if (c == ']') {  // as ECMAScript: `[]` matches nothing, `[^]` anything
        ++pos_;
        break;
      }
      // One class atom: a character (possibly the start of a range) or a set escape.
      CodepointRanges atom;
      if (c == '\\') {
        ++pos_;
        auto st = ParseEscape(/*in_class=*/true, &atom);
        if (!st.ok()) return st;
      } else if (c == '[' && pos_ + 1 < end_ && s_[pos_ + 1] == ':') {
        return Error("POSIX classes ([:alpha:]) are not supported");
      } else {
        ++pos_;
        atom.emplace_back(c, c);
      }
      const bool is_char = atom.size() == 1 && atom[0].first == atom[0].second;
      if (is_char && pos_ + 1 < end_ && Peek() == '-' && s_[pos_ + 1] != ']') {
        ++pos_;  // '-'
        CodepointRanges hi_atom;
        if (Peek() == '\\') {
          ++pos_;
          auto st = ParseEscape(true, &hi_atom);
          if (!st.ok()) return st;
        } else {
          hi_atom.emplace_back(Peek(), Peek());
          ++pos_;
        }
        if (hi_atom.size() != 1 || hi_atom[0].first != hi_atom[0].second) {
          return Error("a class range must end with a single character");
        }
        if (hi_atom[0].first < atom[0].first) return Error("class range out of order");
        set.emplace_back(atom[0].first, hi_atom[0].first);
      } else {
        Append(&set, atom);
      }
    }
    if (negate) set = ComplementRanges(set);
    return encode_(NormalizeRanges(set));
  }

  std::vector<uint32_t> s_;
  const CharEncoder& encode_;
  const RegexOptions options_;
  size_t pos_ = 0;
  size_t end_ = 0;
};

}  // namespace

bool DecodeUtf8(std::string_view text, std::vector<uint32_t>* out) {
  out->clear();
  for (size_t i = 0; i < text.size();) {
    const uint8_t b = text[i];
    int n;
    uint32_t cp;
    if (b < 0x80) {
      n = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4, cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > text.size()) return false;
    for (int k = 1; k < n; ++k) {
      const uint8_t c = text[i + k];
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > kMaxCodepoint || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out->push_back(cp);
    i += n;
  }
  return true;
}

absl::StatusOr<ParsedRegex> ParseRegex(std::string_view pattern, const CharEncoder& encode,
                                       const RegexOptions& options) {
  std::vector<uint32_t> cps;
  if (!DecodeUtf8(pattern, &cps)) return absl::InvalidArgumentError("regex is not valid UTF-8");
  return RegexParser(std::move(cps), encode, options).Parse();
}

absl::StatusOr<Grammar> RegexToGrammar(std::string_view pattern, const RegexOptions& options) {
  auto parsed = ParseRegex(pattern, CodepointSet, options);
  if (!parsed.ok()) return parsed.status();
  Grammar g;
  g.root = g.AddRule("root");
  g.rule_bodies[g.root] = parsed->expr;
  return g;
}

}  // namespace tessera::runtime::structured
