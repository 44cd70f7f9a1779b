#include "runtime/structured/test_util.h"

#include "runtime/structured/token_bitmask.h"

namespace tessera::runtime::structured::testing {

std::shared_ptr<const Vocabulary> SmallVocabulary(const std::vector<std::string>& extra) {
  std::vector<std::string> tokens = {"", "", ""};
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
  tokens.insert(tokens.end(), extra.begin(), extra.end());
  return *Vocabulary::FromTokenBytes(tokens, {{0, "<eos>"}, {1, "<|call>"}, {2, "<call|>"}});
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompileFor(
    const Grammar& grammar, std::shared_ptr<const Vocabulary> vocabulary) {
  return CompiledGrammar::Create(grammar, std::move(vocabulary), AutomatonLimits(), StepLimits());
}

bool Matches(const CompiledGrammar& grammar, const std::string& text) {
  StackSet out;
  if (!grammar.ReadBytes(grammar.initial_state(), text, &out)) return false;
  return out.accepting;
}

std::vector<uint64_t> BruteForceMask(const GrammarMatcher& matcher) {
  std::vector<uint64_t> mask(matcher.mask_words(), 0);
  for (int32_t id = 0; id < matcher.vocab_size(); ++id) {
    GrammarMatcher copy = matcher;
    if (copy.AcceptToken(id).ok()) BitmaskSet(mask.data(), id);
  }
  return mask;
}

std::vector<int32_t> MaskDifference(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b,
                                    int vocab_size, int limit) {
  std::vector<int32_t> out;
  for (int32_t id = 0; id < vocab_size && static_cast<int>(out.size()) < limit; ++id) {
    if (BitmaskTest(a.data(), id) != BitmaskTest(b.data(), id)) out.push_back(id);
  }
  return out;
}

}  // namespace tessera::runtime::structured::testing
