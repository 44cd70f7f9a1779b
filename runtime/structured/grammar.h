// The grammar IR every input (JSON Schema, regex, GBNF) compiles to: rules whose bodies are regular
// expressions over symbols, which may reference other rules. A symbol is a byte (0..255) or one of
// the special tokens the grammar names (kFirstTokenSymbol + k): grammars match the bytes a token
// sequence decodes to, and special tokens only where a grammar names them.
//
// Expressions are immutable trees (shared_ptr, so a subtree can appear in several places); the
// automaton builder (automaton.h) inlines every rule that is not recursive and turns each remaining
// rule into a DFA whose edges are symbols or calls of other rules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::runtime::structured {

constexpr int kNumByteSymbols = 256;
constexpr int kFirstTokenSymbol = 256;
constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// A set of symbols as sorted, disjoint, non-adjacent inclusive ranges.
class SymbolSet {
 public:
  SymbolSet() = default;
  static SymbolSet Single(int symbol) { return Range(symbol, symbol); }
  static SymbolSet Range(int lo, int hi);

  void AddRange(int lo, int hi);
  void Add(const SymbolSet& other);
  bool Contains(int symbol) const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<std::pair<int, int>>& ranges() const { return ranges_; }
  bool operator==(const SymbolSet& o) const { return ranges_ == o.ranges_; }

 private:
  std::vector<std::pair<int, int>> ranges_;
};

// Inclusive ranges of Unicode code points.
using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;

// Sorts and merges; then the complement within [0, 0x10FFFF] (surrogates are dropped later, when
// the ranges are encoded).
CodepointRanges NormalizeRanges(CodepointRanges ranges);
CodepointRanges ComplementRanges(const CodepointRanges& ranges);

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

// One edge of a kGraph expression: from node `from` to node `to`, reading `label` (nullptr: none).
struct GraphEdge {
  int from = 0;
  int to = 0;
  ExprPtr label;
};

struct Expr {
  enum class Kind {
    kSymbols,   // one symbol of `symbols` (an empty set matches nothing)
    kSequence,  // children in order (no children: the empty string)
    kChoice,    // any one child (no children: nothing)
    kRepeat,    // children[0] between min and max times (max < 0: unbounded)
    kRuleRef,   // rule `rule` of the grammar
    kGraph,     // an explicit automaton whose edges are expressions (linear-size encodings of,
                // e.g., objects with optional properties that would otherwise need copies)
  };
  Kind kind = Kind::kSequence;
  SymbolSet symbols;
  std::vector<ExprPtr> children;
  int min = 0;
  int max = -1;
  int rule = -1;
  int num_nodes = 0;
  int start = 0;
  std::vector<int> finals;
  std::vector<GraphEdge> edges;
};

// Builders. Literal/Codepoint/CodepointSet encode code points as UTF-8.
ExprPtr Epsilon();
ExprPtr Nothing();
ExprPtr SymbolsExpr(SymbolSet symbols);
ExprPtr ByteRange(uint8_t lo, uint8_t hi);
ExprPtr Literal(std::string_view bytes);
ExprPtr Sequence(std::vector<ExprPtr> children);
ExprPtr Choice(std::vector<ExprPtr> children);
ExprPtr Repeat(ExprPtr child, int min, int max);
ExprPtr Optional(ExprPtr child);
ExprPtr Star(ExprPtr child);
ExprPtr Plus(ExprPtr child);
ExprPtr RuleRef(int rule);
ExprPtr Graph(int num_nodes, int start, std::vector<int> finals, std::vector<GraphEdge> edges);
// Any one code point of `ranges` as its UTF-8 bytes; surrogates (U+D800..U+DFFF) never match.
ExprPtr CodepointSet(const CodepointRanges& ranges);

// Appends the UTF-8 encoding of `cp` (which must be <= 0x10FFFF).
void AppendUtf8(uint32_t cp, std::string* out);

// A set of rules; `root` is the start. Rule names are for messages only.
struct Grammar {
  std::vector<std::string> rule_names;
  std::vector<ExprPtr> rule_bodies;  // nullptr: declared but not (yet) defined
  int root = 0;
  // Symbol kFirstTokenSymbol + k stands for token id token_symbols[k].
  std::vector<int32_t> token_symbols;

  int AddRule(std::string name);
  // The symbol of `token_id`, added on first use.
  int TokenSymbol(int32_t token_id);
  int num_symbols() const { return kNumByteSymbols + static_cast<int>(token_symbols.size()); }
};

}  // namespace tessera::runtime::structured
