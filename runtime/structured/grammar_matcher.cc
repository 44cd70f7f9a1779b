#include "runtime/structured/grammar_matcher.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/structured/token_bitmask.h"

namespace tessera::runtime::structured {

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar,
                               std::vector<int32_t> stop_tokens, int max_rollback_tokens)
    : grammar_(std::move(grammar)),
      stop_tokens_(std::make_shared<const std::vector<int32_t>>(std::move(stop_tokens))),
      max_rollback_tokens_(std::max(0, max_rollback_tokens)),
      state_(grammar_->initial_state()) {}

bool GrammarMatcher::IsStopToken(int32_t token) const {
  return std::find(stop_tokens_->begin(), stop_tokens_->end(), token) != stop_tokens_->end();
}

void GrammarMatcher::FillNextTokenMask(uint64_t* mask) const {
  if (terminated_) {
    std::memset(mask, 0, mask_words() * sizeof(uint64_t));
    return;
  }
  grammar_->FillMask(state_, mask);
  if (state_.accepting) {
    for (int32_t t : *stop_tokens_) {
      if (t >= 0 && t < vocab_size()) BitmaskSet(mask, t);
    }
  }
}

std::vector<uint64_t> GrammarMatcher::NextTokenMask() const {
  std::vector<uint64_t> mask(mask_words());
  FillNextTokenMask(mask.data());
  return mask;
}

void GrammarMatcher::PushHistory() {
  if (max_rollback_tokens_ == 0) return;
  if (static_cast<int>(history_.size()) == max_rollback_tokens_) history_.pop_front();
  history_.push_back({state_, terminated_});
}

absl::Status GrammarMatcher::AcceptToken(int32_t token) {
  if (terminated_) {
    return absl::FailedPreconditionError("the grammar matcher has already terminated");
  }
  if (token < 0 || token >= vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token ", token, " is outside the vocabulary of ", vocab_size()));
  }
  if (IsStopToken(token)) {
    if (!state_.accepting) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop token ", token, " before the grammar is complete"));
    }
    PushHistory();
    terminated_ = true;
    return absl::OkStatus();
  }
  StackSet next;
  if (!grammar_->ReadToken(state_, token, &next)) {
    return absl::ResourceExhaustedError(
        "the grammar is too ambiguous: more parser stacks than the limit");
  }
  if (next.dead()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token ", token, " is not allowed by the grammar here"));
  }
  PushHistory();
  state_ = std::move(next);
  return absl::OkStatus();
}

absl::Status GrammarMatcher::AcceptBytes(std::string_view bytes) {
  if (terminated_) {
    return absl::FailedPreconditionError("the grammar matcher has already terminated");
  }
  StackSet next;
  if (!grammar_->ReadBytes(state_, bytes, &next)) {
    return absl::ResourceExhaustedError(
        "the grammar is too ambiguous: more parser stacks than the limit");
  }
  if (next.dead()) {
    return absl::InvalidArgumentError("text is not allowed by the grammar here");
  }
  PushHistory();
  state_ = std::move(next);
  return absl::OkStatus();
}

absl::Status GrammarMatcher::Rollback(int num_tokens) {
  if (num_tokens < 0 || num_tokens > static_cast<int>(history_.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot roll back ", num_tokens, " tokens; ", history_.size(), " available"));
  }
  if (num_tokens == 0) return absl::OkStatus();
  history_.resize(history_.size() - num_tokens + 1);
  state_ = std::move(history_.back().state);
  terminated_ = history_.back().terminated;
  history_.pop_back();
  return absl::OkStatus();
}

}  // namespace tessera::runtime::structured
