// The per-sequence state of constrained decoding. Each step:
//
//   matcher.FillNextTokenMask(mask);          // bits of the tokens allowed next
//   ApplyTokenBitmask(mask, vocab, logits);   // disallowed logits -> -inf, then sample
//   matcher.AcceptToken(sampled);             // commit
//
// Stop tokens (EOS, end of turn) are allowed only when the text so far is complete; accepting one
// terminates the matcher. A matcher is a small value (a shared pointer to the compiled grammar,
// its parser stacks and a bounded history for Rollback): copy it to fork a sequence (n > 1) or to
// keep it across preemption.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "runtime/structured/compiled_grammar.h"

namespace tessera::runtime::structured {

class GrammarMatcher {
 public:
  // `stop_tokens`: ids that end the text (e.g. <eos> 1 and <turn|> 106 for Gemma 4).
  // `max_rollback_tokens`: how many accepted tokens Rollback can undo.
  GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar, std::vector<int32_t> stop_tokens,
                 int max_rollback_tokens = 16);

  int vocab_size() const { return grammar_->vocabulary().size(); }
  // Words a mask needs: BitmaskWords(vocab_size()).
  int mask_words() const { return (vocab_size() + 63) / 64; }

  // Writes the allowed next tokens (mask_words() words). After termination nothing is allowed.
  void FillNextTokenMask(uint64_t* mask) const;
  std::vector<uint64_t> NextTokenMask() const;

  // Commits a token. InvalidArgument if the mask would not allow it (the state is unchanged);
  // FailedPrecondition after termination; ResourceExhausted if the grammar is too ambiguous for
  // the stack limits (the state is unchanged, the request should end with an error).
  absl::Status AcceptToken(int32_t token);
  // Commits text that is not a sampled token (e.g. a forced prefix); counts as one step for
  // Rollback.
  absl::Status AcceptBytes(std::string_view bytes);
  // Undoes the last `num_tokens` AcceptToken/AcceptBytes calls (termination included).
  absl::Status Rollback(int num_tokens);
  int rollback_available() const { return static_cast<int>(history_.size()); }

  // The text so far is complete: a stop token is allowed now.
  bool IsAccepting() const { return !terminated_ && state_.accepting; }
  // The text is complete and nothing more can be appended to it: only a stop token is allowed.
  bool IsCompleted() const { return !terminated_ && state_.accepting && !state_.has_stacks(); }
  // A stop token was accepted.
  bool IsTerminated() const { return terminated_; }
  bool IsStopToken(int32_t token) const;

  const CompiledGrammar& grammar() const { return *grammar_; }
  const StackSet& state() const { return state_; }

 private:
  struct Snapshot {
    StackSet state;
    bool terminated;
  };
  void PushHistory();

  std::shared_ptr<const CompiledGrammar> grammar_;
  std::shared_ptr<const std::vector<int32_t>> stop_tokens_;
  int max_rollback_tokens_;
  StackSet state_;
  bool terminated_ = false;
  std::deque<Snapshot> history_;
};

}  // namespace tessera::runtime::structured
