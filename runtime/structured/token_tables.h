// Per-state token masks, precomputed when a grammar is compiled (the idea of XGrammar's adaptive
// token mask cache, over our own automaton):
//
// For every automaton state q with moves, walk the vocabulary trie (vocabulary.h) from the stack
// [q]: a token is *accepted* if its bytes can be read from q whatever lies below q on the real
// stack (calls made inside the token return inside it), and it is an *escape* if q's rule can end
// after some of its bytes with more bytes left: those depend on the caller. Escapes are kept as
// trie nodes (the point where the rule ended); at run time the subtree below each is walked from
// the caller's actual state, which is cheap because the caller's next bytes are few (`,` `}` `]`
// ...). Grammars without recursion have no callers, so their masks are exactly the accepted sets.
//
// States of call-free rules whose behaviour agrees on every input of up to max-token-length bytes
// share one table (k-equivalence by Moore refinement): a string of maxLength 1000 then costs as
// many walks as one of maxLength 50.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/structured/automaton.h"
#include "runtime/structured/stack_set.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime::structured {

// An immutable set of token ids in the cheapest of three forms: a sorted list (few tokens), the
// sorted list of the tokens *not* in it (almost all), or a bitset.
class TokenSet {
 public:
  TokenSet() = default;
  static TokenSet FromIds(std::vector<int32_t> ids, int vocab_size);
  // From a mask of BitmaskWords(vocab_size) words (bits past vocab_size must be clear).
  static TokenSet FromBitmask(const uint64_t* mask, int vocab_size);

  // mask = this (first) or mask |= this; `mask` has BitmaskWords(vocab_size) words.
  void WriteTo(uint64_t* mask) const;
  void OrInto(uint64_t* mask) const;
  bool Contains(int32_t id) const;
  int size() const { return count_; }
  size_t MemoryBytes() const { return ids_.size() * 4 + bits_.size() * 8; }

 private:
  enum class Kind { kList, kComplement, kBitset };
  Kind kind_ = Kind::kList;
  int vocab_size_ = 0;
  int count_ = 0;
  std::vector<int32_t> ids_;
  std::vector<uint64_t> bits_;
};

struct TokenTable {
  TokenSet accepted;
  std::vector<int32_t> escape_nodes;  // trie nodes where the rule ended with bytes to follow
};

// Walks trie subtrees from a parser configuration.
class TrieWalker {
 public:
  TrieWalker(const Automaton& automaton, const Vocabulary& vocabulary, const StepLimits& limits);

  // Walks the nodes [begin, end) of the trie (whole subtrees, at depths > base_depth) starting
  // from `start`, the configuration after base_depth bytes. Sets the bits of tokens that can be
  // read in `accepted` (a token bitmask). If escape_rule >= 0, `start` is a precomputation's [q]:
  // where the bottom frame returns with bytes left that may follow escape_rule, the node goes to
  // `escapes`. Returns false if a step exceeded the stack limits (results are then a subset).
  bool Walk(const StackSet& start, int begin, int end, int base_depth, int escape_rule,
            uint64_t* accepted, std::vector<int32_t>* escapes);

  // The same walk over the whole trie for a start state of a rule that makes no calls and is never
  // called: a plain DFA walk (one state per depth, no stacks), which is what every grammar without
  // recursion needs.
  void WalkDfa(int32_t start, uint64_t* accepted);

  Stepper& stepper() { return stepper_; }

 private:
  struct Level {
    bool fast = false;  // one stack, not accepting, simple top: only `top` changed since `base`
    int32_t top = -1;
    int base = 0;
  };
  void SetLevel(int d);

  const Automaton& a_;
  const Vocabulary& v_;
  Stepper stepper_;
  std::vector<StackSet> configs_;
  std::vector<Level> levels_;
  std::vector<int32_t> buf_;
};

struct TokenTableStats {
  int consuming_states = 0;  // states with moves, reachable
  int tables = 0;            // distinct tables computed (after k-equivalence)
  int escape_nodes = 0;
  double build_seconds = 0;
};

class TokenTables {
 public:
  static absl::StatusOr<std::unique_ptr<TokenTables>> Build(const Automaton& automaton,
                                                            const Vocabulary& vocabulary,
                                                            const StepLimits& limits,
                                                            int max_tables);
  // The table of a reachable state with moves; nullptr otherwise.
  const TokenTable* ForState(int state) const {
    const int t = table_of_state_[state];
    return t < 0 ? nullptr : &tables_[t];
  }
  const TokenTableStats& stats() const { return stats_; }
  size_t MemoryBytes() const;

 private:
  std::vector<int32_t> table_of_state_;
  std::vector<TokenTable> tables_;
  TokenTableStats stats_;
};

}  // namespace tessera::runtime::structured
