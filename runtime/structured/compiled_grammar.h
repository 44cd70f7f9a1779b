// A grammar compiled for one vocabulary: its automaton and per-state token tables. Immutable and
// shared (thread-safe to read) by every matcher of every request that uses it.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "runtime/structured/automaton.h"
#include "runtime/structured/grammar.h"
#include "runtime/structured/stack_set.h"
#include "runtime/structured/token_tables.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime::structured {

struct CompiledGrammarStats {
  int rules = 0;           // rules left after inlining (1 unless the grammar recurses)
  int states = 0;          // automaton states
  int symbol_classes = 0;  // symbols grouped by how the grammar treats them
  TokenTableStats tables;
  double compile_seconds = 0;  // automaton + tables
  size_t memory_bytes = 0;
};

class CompiledGrammar {
 public:
  static absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Create(
      const Grammar& grammar, std::shared_ptr<const Vocabulary> vocabulary,
      const AutomatonLimits& automaton_limits, const StepLimits& step_limits);

  const Automaton& automaton() const { return *automaton_; }
  const Vocabulary& vocabulary() const { return *vocabulary_; }
  const StepLimits& step_limits() const { return step_limits_; }
  const StackSet& initial_state() const { return initial_; }
  const CompiledGrammarStats& stats() const { return stats_; }

  // The tokens that may be read next from `state` (bit set = allowed; BitmaskWords(vocab) words).
  // Stop tokens are the matcher's business and are not included.
  void FillMask(const StackSet& state, uint64_t* mask) const;

  // The state after reading `bytes` (symbols 0..255) from `state`; dead if they cannot be read.
  // False only when a stack limit was exceeded.
  bool ReadBytes(const StackSet& state, std::string_view bytes, StackSet* out) const;
  // The state after one token (its bytes, or its symbol if the grammar names it).
  bool ReadToken(const StackSet& state, int32_t token, StackSet* out) const;

 private:
  CompiledGrammar() = default;
  // Exact mask of one stack by walking the whole trie (for stacks near the depth limit).
  void ExactStackMask(const int32_t* frames, int len, uint64_t* mask) const;

  std::shared_ptr<const Automaton> automaton_;
  std::shared_ptr<const Vocabulary> vocabulary_;
  std::unique_ptr<TokenTables> tables_;
  StepLimits step_limits_;
  StackSet initial_;
  CompiledGrammarStats stats_;
  // Symbol of each named token (-1: not named), indexed by token id only for named ones.
  std::vector<std::pair<int32_t, int>> named_tokens_;
};

}  // namespace tessera::runtime::structured
