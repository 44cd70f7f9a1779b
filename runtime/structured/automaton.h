// A grammar (grammar.h) compiled to a pushdown automaton over symbols: every rule that is not
// recursive is inlined into its callers, and each remaining rule becomes a minimal DFA whose edges
// read a symbol class or call another rule (with the state to return to). A JSON Schema without
// recursion is therefore one DFA; recursion (generic JSON, recursive $ref, recursive GBNF) is the
// only source of calls.
//
// States are numbered globally across rules. A state with `moves` reads symbols; a `final` state
// may return to its caller (or end the text, for the root rule).
//
// Build refuses, with InvalidArgument naming the rule or the limit: undefined rules, left recursion
// (a rule reaching itself without reading a symbol), a grammar that matches nothing, and automata
// over the configured limits.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/structured/grammar.h"

namespace tessera::runtime::structured {

struct AutomatonLimits {
  // States of the intermediate NFA (bounded repetition is expanded into copies).
  int max_nfa_states = 2'000'000;
  // States of all rule DFAs together.
  int max_dfa_states = 200'000;
  // A non-recursive rule whose expanded body is larger than this stays a called rule instead of
  // being inlined (a call costs a stack frame at run time; inlining costs automaton size).
  int max_inline_size = 200'000;
  // The largest count in a bounded repetition ({m,n}).
  int max_repetition = 10'000;
  // Token tables computed at compile time (one walk over the vocabulary trie each, for states
  // that differ within a token's length): bounds compile work. Bounded repetitions multiply them
  // (maxItems x maxLength). On Gemma 4's vocabulary a table takes 0.05 ms (a literal) to 4 ms (inside
  // a string), 0.5 ms on average for the bench's schemas (docs/performance.md).
  int max_token_tables = 20'000;
};

struct RuleCall {
  int32_t rule = 0;
  int32_t return_state = 0;  // in the caller's rule
};

class Automaton {
 public:
  static absl::StatusOr<std::shared_ptr<const Automaton>> Build(const Grammar& grammar,
                                                                const AutomatonLimits& limits);

  int num_states() const { return static_cast<int>(rule_of_.size()); }
  int num_classes() const { return num_classes_; }
  int num_symbols() const { return static_cast<int>(symbol_class_.size()); }
  int num_rules() const { return static_cast<int>(rule_start_.size()); }

  int ClassOf(int symbol) const { return symbol_class_[symbol]; }
  // The state after reading a symbol of class `cls` from `state`; -1 if it cannot be read.
  int NextByClass(int state, int cls) const { return next_[state * num_classes_ + cls]; }
  int Next(int state, int symbol) const { return NextByClass(state, symbol_class_[symbol]); }

  bool IsFinal(int s) const { return flags_[s] & kFinal; }
  bool HasMoves(int s) const { return flags_[s] & kMoves; }
  // Neither calls nor final: reading from it needs no stack work.
  bool IsSimple(int s) const { return flags_[s] & kSimple; }
  // Final with no moves and no calls: being there means returning (used for tail calls).
  bool IsPureFinal(int s) const { return flags_[s] & kPureFinal; }
  // Reachable from the root and able to reach an end: the states masks are computed for.
  bool IsReachable(int s) const { return flags_[s] & kReachable; }
  const RuleCall* CallsBegin(int s) const { return calls_.data() + call_begin_[s]; }
  const RuleCall* CallsEnd(int s) const { return calls_.data() + call_begin_[s + 1]; }

  int RuleOf(int s) const { return rule_of_[s]; }
  int RuleStart(int rule) const { return rule_start_[rule]; }
  int root_rule() const { return 0; }
  const std::string& RuleName(int rule) const { return rule_names_[rule]; }
  // Some call edge targets the rule (the root may be called too, in recursive GBNF).
  bool RuleIsCalled(int rule) const { return rule_called_[rule]; }
  bool RuleHasCalls(int rule) const { return rule_has_calls_[rule]; }
  // Whether `byte` may be read right after `rule` returns to some caller.
  bool MayFollowRule(int rule, uint8_t byte) const {
    return (follow_[rule][byte >> 6] >> (byte & 63)) & 1;
  }
  // Symbol kFirstTokenSymbol + k is token token_symbols()[k].
  const std::vector<int32_t>& token_symbols() const { return token_symbols_; }

  // Raw tables for tight loops: next_table()[state * num_classes() + class], class_table()[symbol].
  const int32_t* next_table() const { return next_.data(); }
  const uint16_t* class_table() const { return symbol_class_.data(); }

  // Approximate heap bytes held (for cache accounting).
  size_t MemoryBytes() const;

 private:
  friend class AutomatonBuilder;
  enum Flag : uint8_t {
    kFinal = 1,
    kMoves = 2,
    kSimple = 4,
    kPureFinal = 8,
    kReachable = 16,
  };

  int num_classes_ = 0;
  std::vector<uint16_t> symbol_class_;  // [num_symbols]
  std::vector<int32_t> next_;           // [num_states * num_classes], -1 = no move
  std::vector<uint8_t> flags_;          // [num_states]
  std::vector<uint32_t> call_begin_;    // [num_states + 1] into calls_
  std::vector<RuleCall> calls_;
  std::vector<int32_t> rule_of_;  // [num_states]
  std::vector<int32_t> rule_start_;
  std::vector<std::string> rule_names_;
  std::vector<bool> rule_called_;
  std::vector<bool> rule_has_calls_;
  std::vector<std::array<uint64_t, 4>> follow_;  // [num_rules] byte bitsets
  std::vector<int32_t> token_symbols_;
};

}  // namespace tessera::runtime::structured
