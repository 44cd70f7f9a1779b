#include "runtime/structured/grammar.h"

#include <algorithm>

namespace tessera::runtime::structured {

SymbolSet SymbolSet::Range(int lo, int hi) {
  SymbolSet s;
  s.AddRange(lo, hi);
  return s;
}

void SymbolSet::AddRange(int lo, int hi) {
  if (lo > hi) return;
  ranges_.emplace_back(lo, hi);
  std::sort(ranges_.begin(), ranges_.end());
  std::vector<std::pair<int, int>> merged;
  for (const auto& r : ranges_) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  ranges_ = std::move(merged);
}

void SymbolSet::Add(const SymbolSet& other) {
  for (const auto& [lo, hi] : other.ranges_) AddRange(lo, hi);
}

bool SymbolSet::Contains(int symbol) const {
  for (const auto& [lo, hi] : ranges_) {
    if (symbol < lo) return false;
    if (symbol <= hi) return true;
  }
  return false;
}

CodepointRanges NormalizeRanges(CodepointRanges ranges) {
  std::sort(ranges.begin(), ranges.end());
  CodepointRanges merged;
  for (const auto& r : ranges) {
    if (r.first > r.second) continue;
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

CodepointRanges ComplementRanges(const CodepointRanges& ranges) {
  CodepointRanges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : NormalizeRanges(ranges)) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.emplace_back(next, kMaxCodepoint);
  return out;
}

namespace {

std::shared_ptr<Expr> Make(Expr::Kind kind) {
  auto e = std::make_shared<Expr>();
  e->kind = kind;
  return e;
}

int Utf8Length(uint32_t cp) {
  if (cp < 0x80) return 1;
  if (cp < 0x800) return 2;
  if (cp < 0x10000) return 3;
  return 4;
}

// UTF-8 byte-range sequences for [lo, hi], split until every byte position is an independent range
// (the construction RE2 and Rust's regex-syntax use): each returned sequence matches exactly the
// encodings of a sub-range.
void Utf8Sequences(uint32_t lo, uint32_t hi, std::vector<std::vector<std::pair<int, int>>>* out) {
  if (lo > hi) return;
  // Split at encoded-length boundaries.
  static constexpr uint32_t kBounds[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t b : kBounds) {
    if (lo <= b && hi > b) {
      Utf8Sequences(lo, b, out);
      Utf8Sequences(b + 1, hi, out);
      return;
    }
  }
  const int n = Utf8Length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        Utf8Sequences(lo, lo | m, out);
        Utf8Sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        Utf8Sequences(lo, (hi & ~m) - 1, out);
        Utf8Sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  AppendUtf8(lo, &a);
  AppendUtf8(hi, &b);
  std::vector<std::pair<int, int>> seq;
  for (int i = 0; i < n; ++i) {
    seq.emplace_back(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]));
  }
  out->push_back(std::move(seq));
}

}  // namespace

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

ExprPtr Epsilon() { return Make(Expr::Kind::kSequence); }
ExprPtr Nothing() { return Make(Expr::Kind::kChoice); }

ExprPtr SymbolsExpr(SymbolSet symbols) {
  auto e = Make(Expr::Kind::kSymbols);
  e->symbols = std::move(symbols);
  return e;
}

ExprPtr ByteRange(uint8_t lo, uint8_t hi) { return SymbolsExpr(SymbolSet::Range(lo, hi)); }

ExprPtr Literal(std::string_view bytes) {
  std::vector<ExprPtr> parts;
  for (char c : bytes) parts.push_back(ByteRange(c, c));
  if (parts.size() == 1) return parts[0];
  return Sequence(std::move(parts));
}

ExprPtr Sequence(std::vector<ExprPtr> children) {
  auto e = Make(Expr::Kind::kSequence);
  for (auto& c : children) {
    if (c->kind == Expr::Kind::kSequence) {
      e->children.insert(e->children.end(), c->children.begin(), c->children.end());
    } else {
      e->children.push_back(std::move(c));
    }
  }
  if (e->children.size() == 1) return e->children[0];
  return e;
}

ExprPtr Choice(std::vector<ExprPtr> children) {
  if (children.size() == 1) return children[0];
  auto e = Make(Expr::Kind::kChoice);
  e->children = std::move(children);
  return e;
}

ExprPtr Repeat(ExprPtr child, int min, int max) {
  if (min == 1 && max == 1) return child;
  auto e = Make(Expr::Kind::kRepeat);
  e->children.push_back(std::move(child));
  e->min = min;
  e->max = max;
  return e;
}

ExprPtr Optional(ExprPtr child) { return Repeat(std::move(child), 0, 1); }
ExprPtr Star(ExprPtr child) { return Repeat(std::move(child), 0, -1); }
ExprPtr Plus(ExprPtr child) { return Repeat(std::move(child), 1, -1); }

ExprPtr RuleRef(int rule) {
  auto e = Make(Expr::Kind::kRuleRef);
  e->rule = rule;
  return e;
}

ExprPtr Graph(int num_nodes, int start, std::vector<int> finals, std::vector<GraphEdge> edges) {
  auto e = Make(Expr::Kind::kGraph);
  e->num_nodes = num_nodes;
  e->start = start;
  e->finals = std::move(finals);
  e->edges = std::move(edges);
  return e;
}

ExprPtr CodepointSet(const CodepointRanges& ranges) {
  std::vector<std::vector<std::pair<int, int>>> seqs;
  for (auto [lo, hi] : NormalizeRanges(ranges)) {
    hi = std::min(hi, kMaxCodepoint);
    // Surrogates have no UTF-8 encoding.
    if (lo <= 0xDFFF && hi >= 0xD800) {
      if (lo < 0xD800) Utf8Sequences(lo, 0xD7FF, &seqs);
      if (hi > 0xDFFF) Utf8Sequences(0xE000, hi, &seqs);
    } else {
      Utf8Sequences(lo, hi, &seqs);
    }
  }
  // Single-byte sequences become one symbol set.
  SymbolSet ascii;
  std::vector<ExprPtr> alternatives;
  for (const auto& seq : seqs) {
    if (seq.size() == 1) {
      ascii.AddRange(seq[0].first, seq[0].second);
      continue;
    }
    std::vector<ExprPtr> parts;
    for (const auto& [lo, hi] : seq) parts.push_back(SymbolsExpr(SymbolSet::Range(lo, hi)));
    alternatives.push_back(Sequence(std::move(parts)));
  }
  if (!ascii.empty()) alternatives.insert(alternatives.begin(), SymbolsExpr(std::move(ascii)));
  return Choice(std::move(alternatives));
}

int Grammar::AddRule(std::string name) {
  rule_names.push_back(std::move(name));
  rule_bodies.push_back(nullptr);
  return static_cast<int>(rule_names.size()) - 1;
}

int Grammar::TokenSymbol(int32_t token_id) {
  for (size_t k = 0; k < token_symbols.size(); ++k) {
    if (token_symbols[k] == token_id) return kFirstTokenSymbol + static_cast<int>(k);
  }
  token_symbols.push_back(token_id);
  return kFirstTokenSymbol + static_cast<int>(token_symbols.size()) - 1;
}

}  // namespace tessera::runtime::structured
