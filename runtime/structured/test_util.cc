#include "runtime/structured/test_util.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <fstream>
#include <optional>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
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

std::optional<std::string> ShortestCompletion(const CompiledGrammar& grammar, const StackSet& state,
                                              int max_states) {
  if (state.accepting) return std::string();
  const Automaton& a = grammar.automaton();
  // One byte per symbol class is enough: bytes of a class step alike.
  std::vector<int> class_byte(a.num_classes(), -1);
  for (int b = 255; b >= 0; --b) class_byte[a.ClassOf(b)] = b;
  struct Node {
    StackSet state;
    int parent;
    uint8_t byte;
  };
  std::vector<Node> nodes = {{state, -1, 0}};
  std::set<std::vector<int32_t>> seen = {state.flat};
  Stepper stepper(a, grammar.step_limits());
  for (size_t n = 0; n < nodes.size() && static_cast<int>(n) < max_states; ++n) {
    for (int cls = 0; cls < a.num_classes(); ++cls) {
      if (class_byte[cls] < 0) continue;
      StackSet next;
      if (!stepper.Step(nodes[n].state, cls, &next) || next.dead()) continue;
      const bool done = next.accepting;
      if (!done && !seen.insert(next.flat).second) continue;
      nodes.push_back(
          {std::move(next), static_cast<int>(n), static_cast<uint8_t>(class_byte[cls])});
      if (done) {
        std::string path;
        for (int k = static_cast<int>(nodes.size()) - 1; nodes[k].parent >= 0;
             k = nodes[k].parent) {
          path.insert(path.begin(), static_cast<char>(nodes[k].byte));
        }
        return path;
      }
    }
  }
  return std::nullopt;
}

Walk RandomWalk(GrammarMatcher& matcher, uint64_t seed, int budget, int max_tokens) {
  Walk walk;
  std::mt19937_64 rng(seed);
  const Vocabulary& v = matcher.grammar().vocabulary();
  std::vector<uint64_t> mask(matcher.mask_words());
  std::string pending;  // the rest of a shortest completion being followed
  for (int step = 0; step < max_tokens; ++step) {
    matcher.FillNextTokenMask(mask.data());
    const std::vector<int32_t> allowed = AllowedTokens(mask.data(), matcher.vocab_size());
    if (allowed.empty()) return walk;  // a dead end: the caller's test fails on `finished`
    int32_t pick = allowed[rng() % allowed.size()];
    const bool stop_allowed = matcher.IsAccepting();
    if (stop_allowed && (matcher.IsCompleted() || step >= budget || rng() % 4 == 0)) {
      for (int32_t t : allowed) {
        if (matcher.IsStopToken(t)) pick = t;
      }
    } else if (step >= budget) {
      // Head for the end: the token of the next byte of a shortest completion.
      if (pending.empty()) {
        pending = ShortestCompletion(matcher.grammar(), matcher.state()).value_or("");
      }
      if (!pending.empty()) {
        for (int32_t t : allowed) {
          if (v.TokenBytes(t).size() == 1 && v.TokenBytes(t)[0] == pending[0]) pick = t;
        }
        pending.erase(0, 1);
      }
    }
    if (!matcher.AcceptToken(pick).ok()) return walk;
    if (matcher.IsTerminated()) {
      walk.finished = true;
      return walk;
    }
    walk.tokens.push_back(pick);
    walk.text += v.TokenBytes(pick);
  }
  return walk;
}

absl::StatusOr<std::vector<NamedSpec>> LoadSpecs(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  const nlohmann::ordered_json specs = nlohmann::ordered_json::parse(in, nullptr, false);
  if (specs.is_discarded() || !specs.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  std::vector<NamedSpec> out;
  for (const auto& [name, s] : specs.items()) {
    const std::string kind = s.value("kind", "");
    GrammarSpec spec;
    if (kind == "json_schema") {
      spec = GrammarSpec::JsonSchema(s["schema"].dump());
    } else if (kind == "json_object") {
      spec = GrammarSpec::JsonObject();
    } else if (kind == "regex") {
      spec = GrammarSpec::Regex(s.value("pattern", ""));
    } else if (kind == "gbnf") {
      spec = GrammarSpec::Gbnf(s.value("grammar", ""));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(name, ": unknown kind '", kind, "'"));
    }
    out.push_back({name, std::move(spec)});
  }
  return out;
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
