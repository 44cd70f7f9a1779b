#include "runtime/structured/compiled_grammar.h"

#include <chrono>
#include <cstring>

#include "runtime/structured/token_bitmask.h"

namespace tessera::runtime::structured {

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::Create(
    const Grammar& grammar, std::shared_ptr<const Vocabulary> vocabulary,
    const AutomatonLimits& automaton_limits, const StepLimits& step_limits) {
  const auto t0 = std::chrono::steady_clock::now();
  auto g = std::shared_ptr<CompiledGrammar>(new CompiledGrammar());
  auto automaton = Automaton::Build(grammar, automaton_limits);
  if (!automaton.ok()) return automaton.status();
  g->automaton_ = *std::move(automaton);
  g->vocabulary_ = std::move(vocabulary);
  g->step_limits_ = step_limits;
  auto tables = TokenTables::Build(*g->automaton_, *g->vocabulary_, step_limits,
                                   automaton_limits.max_token_tables);
  if (!tables.ok()) return tables.status();
  g->tables_ = *std::move(tables);
  Stepper stepper(*g->automaton_, step_limits);
  g->initial_ = stepper.Initial();
  const auto& symbols = g->automaton_->token_symbols();
  for (size_t k = 0; k < symbols.size(); ++k) {
    g->named_tokens_.emplace_back(symbols[k], kFirstTokenSymbol + static_cast<int>(k));
  }
  CompiledGrammarStats& st = g->stats_;
  st.rules = g->automaton_->num_rules();
  st.states = g->automaton_->num_states();
  st.symbol_classes = g->automaton_->num_classes();
  st.tables = g->tables_->stats();
  st.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.memory_bytes = g->automaton_->MemoryBytes() + g->tables_->MemoryBytes();
  return std::shared_ptr<const CompiledGrammar>(std::move(g));
}

void CompiledGrammar::ExactStackMask(const int32_t* frames, int len, uint64_t* mask) const {
  TrieWalker walker(*automaton_, *vocabulary_, step_limits_);
  StackSet start;
  start.flat.push_back(len);
  start.flat.insert(start.flat.end(), frames, frames + len);
  walker.Walk(start, 0, vocabulary_->trie().num_nodes(), 0, -1, mask, nullptr);
  for (const auto& [token, symbol] : named_tokens_) {
    StackSet out;
    walker.stepper().Step(start, automaton_->ClassOf(symbol), &out);
    if (!out.dead() && token >= 0 && token < vocabulary_->size()) BitmaskSet(mask, token);
  }
}

void CompiledGrammar::FillMask(const StackSet& state, uint64_t* mask) const {
  const int words = BitmaskWords(vocabulary_->size());
  const TokenTrie& trie = vocabulary_->trie();
  bool written = false;
  std::unique_ptr<TrieWalker> walker;  // only for escapes (recursive grammars)
  // A token can push at most this many frames per byte (one call chain through distinct rules).
  const int depth_margin = vocabulary_->max_token_bytes() * automaton_->num_rules() + 1;
  state.ForEachStack([&](const int32_t* frames, int len) {
    const TokenTable* table = tables_->ForState(frames[len - 1]);
    const bool exact = len + depth_margin > step_limits_.max_depth;
    if (!written && table != nullptr && !exact) {
      table->accepted.WriteTo(mask);  // the common case: one stack, one table
      written = true;
    } else {
      if (!written) {
        std::memset(mask, 0, words * sizeof(uint64_t));
        written = true;
      }
      if (exact) {
        ExactStackMask(frames, len, mask);
        return;
      }
      if (table == nullptr) return;
      table->accepted.OrInto(mask);
    }
    if (table->escape_nodes.empty() || len == 1) return;
    // The caller's state once the top frame's rule has returned.
    if (walker == nullptr) {
      walker = std::make_unique<TrieWalker>(*automaton_, *vocabulary_, step_limits_);
    }
    StackSet caller;
    walker->stepper().Begin();
    walker->stepper().AddClosure(frames, len - 1);
    walker->stepper().Finish(&caller);
    if (!caller.has_stacks()) return;  // the caller ends too: nothing may follow
    for (int32_t node : table->escape_nodes) {
      walker->Walk(caller, node + 1, trie.end[node], trie.depth[node], -1, mask, nullptr);
    }
  });
  if (!written) std::memset(mask, 0, words * sizeof(uint64_t));
}

bool CompiledGrammar::ReadBytes(const StackSet& state, std::string_view bytes,
                                StackSet* out) const {
  Stepper stepper(*automaton_, step_limits_);
  StackSet cur = state;
  for (char c : bytes) {
    if (!cur.has_stacks()) {
      *out = StackSet();
      return true;
    }
    if (!stepper.Step(cur, automaton_->ClassOf(static_cast<uint8_t>(c)), out)) return false;
    std::swap(cur, *out);
  }
  *out = std::move(cur);
  return true;
}

bool CompiledGrammar::ReadToken(const StackSet& state, int32_t token, StackSet* out) const {
  for (const auto& [id, symbol] : named_tokens_) {
    if (id == token) {
      Stepper stepper(*automaton_, step_limits_);
      return stepper.Step(state, automaton_->ClassOf(symbol), out);
    }
  }
  if (token < 0 || token >= vocabulary_->size() || vocabulary_->IsExcluded(token)) {
    *out = StackSet();
    return true;
  }
  return ReadBytes(state, vocabulary_->TokenBytes(token), out);
}

}  // namespace tessera::runtime::structured
