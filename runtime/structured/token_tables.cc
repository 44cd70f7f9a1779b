#include "runtime/structured/token_tables.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "runtime/structured/token_bitmask.h"

namespace tessera::runtime::structured {

// ---- TokenSet ----

TokenSet TokenSet::FromIds(std::vector<int32_t> ids, int vocab_size) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  TokenSet s;
  s.vocab_size_ = vocab_size;
  s.count_ = static_cast<int>(ids.size());
  const int words = BitmaskWords(vocab_size);
  // A list costs 4 bytes per entry, a bitset 8 per 64 tokens: lists win below vocab/16 entries.
  const int list_limit = std::max(64, vocab_size / 16);
  if (s.count_ <= list_limit) {
    s.kind_ = Kind::kList;
    s.ids_ = std::move(ids);
  } else if (vocab_size - s.count_ <= list_limit) {
    s.kind_ = Kind::kComplement;
    size_t k = 0;
    for (int32_t id = 0; id < vocab_size; ++id) {
      if (k < ids.size() && ids[k] == id) {
        ++k;
      } else {
        s.ids_.push_back(id);
      }
    }
  } else {
    s.kind_ = Kind::kBitset;
    s.bits_.assign(words, 0);
    for (int32_t id : ids) BitmaskSet(s.bits_.data(), id);
  }
  return s;
}

TokenSet TokenSet::FromBitmask(const uint64_t* mask, int vocab_size) {
  const int words = BitmaskWords(vocab_size);
  TokenSet s;
  s.vocab_size_ = vocab_size;
  for (int w = 0; w < words; ++w) s.count_ += __builtin_popcountll(mask[w]);
  const int list_limit = std::max(64, vocab_size / 16);
  if (s.count_ <= list_limit) {
    s.kind_ = Kind::kList;
    s.ids_.reserve(s.count_);
    for (int w = 0; w < words; ++w) {
      for (uint64_t bits = mask[w]; bits != 0; bits &= bits - 1) {
        s.ids_.push_back(w * 64 + __builtin_ctzll(bits));
      }
    }
  } else if (vocab_size - s.count_ <= list_limit) {
    s.kind_ = Kind::kComplement;
    s.ids_.reserve(vocab_size - s.count_);
    for (int w = 0; w < words; ++w) {
      uint64_t bits = ~mask[w];
      if (w == words - 1 && (vocab_size & 63) != 0) bits &= (uint64_t{1} << (vocab_size & 63)) - 1;
      for (; bits != 0; bits &= bits - 1) s.ids_.push_back(w * 64 + __builtin_ctzll(bits));
    }
  } else {
    s.kind_ = Kind::kBitset;
    s.bits_.assign(mask, mask + words);
  }
  return s;
}

void TokenSet::WriteTo(uint64_t* mask) const {
  const int words = BitmaskWords(vocab_size_);
  switch (kind_) {
    case Kind::kList:
      std::memset(mask, 0, words * sizeof(uint64_t));
      for (int32_t id : ids_) BitmaskSet(mask, id);
      break;
    case Kind::kComplement: {
      std::memset(mask, 0xFF, words * sizeof(uint64_t));
      for (int32_t id : ids_) BitmaskClear(mask, id);
      const int tail = vocab_size_ & 63;
      if (tail != 0) mask[words - 1] &= (uint64_t{1} << tail) - 1;
      break;
    }
    case Kind::kBitset:
      std::memcpy(mask, bits_.data(), words * sizeof(uint64_t));
      break;
  }
}

void TokenSet::OrInto(uint64_t* mask) const {
  const int words = BitmaskWords(vocab_size_);
  switch (kind_) {
    case Kind::kList:
      for (int32_t id : ids_) BitmaskSet(mask, id);
      break;
    case Kind::kComplement: {
      std::vector<uint64_t> tmp(words);
      WriteTo(tmp.data());
      BitmaskOr(mask, tmp.data(), words);
      break;
    }
    case Kind::kBitset:
      BitmaskOr(mask, bits_.data(), words);
      break;
  }
}

bool TokenSet::Contains(int32_t id) const {
  switch (kind_) {
    case Kind::kList:
      return std::binary_search(ids_.begin(), ids_.end(), id);
    case Kind::kComplement:
      return id >= 0 && id < vocab_size_ && !std::binary_search(ids_.begin(), ids_.end(), id);
    case Kind::kBitset:
      return id >= 0 && id < vocab_size_ && BitmaskTest(bits_.data(), id);
  }
  return false;
}

// ---- TrieWalker ----

TrieWalker::TrieWalker(const Automaton& automaton, const Vocabulary& vocabulary,
                       const StepLimits& limits)
    : a_(automaton), v_(vocabulary), stepper_(automaton, limits) {
  configs_.resize(vocabulary.max_token_bytes() + 2);
  levels_.resize(vocabulary.max_token_bytes() + 2);
}

void TrieWalker::SetLevel(int d) {
  const StackSet& c = configs_[d];
  Level& l = levels_[d];
  l.fast = !c.accepting && !c.flat.empty() && static_cast<size_t>(c.flat[0]) + 1 == c.flat.size() &&
           a_.IsSimple(c.flat.back());
  l.top = l.fast ? c.flat.back() : -1;
  l.base = d;
}

bool TrieWalker::Walk(const StackSet& start, int begin, int end, int base_depth, int escape_rule,
                      uint64_t* accepted, std::vector<int32_t>* escapes) {
  const TokenTrie& t = v_.trie();
  bool ok = true;
  configs_[0] = start;
  SetLevel(0);
  int i = begin;
  while (i < end) {
    const int d = t.depth[i] - base_depth;
    const Level& parent = levels_[d - 1];
    Level& level = levels_[d];
    const int cls = a_.ClassOf(t.byte[i]);
    bool has_stacks;
    bool accepting = false;
    if (parent.fast) {
      const int32_t next = a_.NextByClass(parent.top, cls);
      if (next < 0) {
        i = t.end[i];
        continue;
      }
      if (a_.IsSimple(next)) {
        level.fast = true;
        level.top = next;
        level.base = parent.base;
        has_stacks = true;
      } else {
        // Materialize: the base level's single stack with its top replaced.
        const StackSet& b = configs_[parent.base];
        const int len = b.flat[0];
        buf_.assign(b.flat.begin() + 1, b.flat.begin() + 1 + len);
        buf_.back() = next;
        stepper_.Begin();
        stepper_.AddClosure(buf_.data(), len);
        ok &= stepper_.Finish(&configs_[d]);
        SetLevel(d);
        has_stacks = configs_[d].has_stacks();
        accepting = configs_[d].accepting;
      }
    } else {
      ok &= stepper_.Step(configs_[d - 1], cls, &configs_[d]);
      SetLevel(d);
      has_stacks = configs_[d].has_stacks();
      accepting = configs_[d].accepting;
    }
    if (!has_stacks && !accepting) {
      i = t.end[i];
      continue;
    }
    for (int k = t.token_begin[i]; k < t.token_begin[i + 1]; ++k) BitmaskSet(accepted, t.tokens[k]);
    if (accepting && escape_rule >= 0 && t.end[i] > i + 1) {
      for (int c = i + 1; c < t.end[i]; c = t.end[c]) {
        if (a_.MayFollowRule(escape_rule, t.byte[c])) {
          escapes->push_back(i);
          break;
        }
      }
    }
    i = has_stacks ? i + 1 : t.end[i];
  }
  return ok;
}

void TrieWalker::WalkDfa(int32_t start, uint64_t* accepted) {
  const TokenTrie& t = v_.trie();
  const int nc = a_.num_classes();
  const int32_t* next = a_.next_table();
  const uint16_t* cls = a_.class_table();
  const uint8_t* bytes = t.byte.data();
  const uint16_t* depth = t.depth.data();
  const int32_t* end = t.end.data();
  const int32_t* token_begin = t.token_begin.data();
  const int32_t* tokens = t.tokens.data();
  std::vector<int32_t>& state = buf_;  // state after depth d bytes
  state.assign(v_.max_token_bytes() + 1, -1);
  state[0] = start;
  const int n = t.num_nodes();
  for (int i = 0; i < n;) {
    const int d = depth[i];
    const int32_t s = next[state[d - 1] * nc + cls[bytes[i]]];
    if (s < 0) {
      i = end[i];
      continue;
    }
    for (int k = token_begin[i]; k < token_begin[i + 1]; ++k) BitmaskSet(accepted, tokens[k]);
    if (!a_.HasMoves(s)) {  // the text is complete: nothing may follow
      i = end[i];
      continue;
    }
    state[d] = s;
    ++i;
  }
}

// ---- TokenTables ----

namespace {

// Classes of states that behave alike on every input of up to `rounds` symbols (Moore refinement
// cut off after `rounds` steps), for states of call-free rules; every other state is its own class.
std::vector<int32_t> ShortHorizonClasses(const Automaton& a, int rounds) {
  const int n = a.num_states();
  const int nc = a.num_classes();
  std::vector<int32_t> block(n, -1);
  std::vector<bool> part(n, false);
  {
    absl::flat_hash_map<std::pair<int, bool>, int> ids;
    for (int s = 0; s < n; ++s) {
      if (a.RuleHasCalls(a.RuleOf(s))) continue;
      part[s] = true;
      // Where a rule is never called, ending it only ends the text: a token that ends there is
      // accepted either way, so finality does not tell states apart.
      const bool final = a.RuleIsCalled(a.RuleOf(s)) && a.IsFinal(s);
      block[s] = ids.emplace(std::make_pair(a.RuleOf(s), final), static_cast<int>(ids.size()))
                     .first->second;
    }
  }
  int count = -1;
  std::vector<int32_t> sig;
  for (int r = 0; r < rounds; ++r) {
    absl::flat_hash_map<std::vector<int32_t>, int> ids;
    std::vector<int32_t> next(n, -1);
    for (int s = 0; s < n; ++s) {
      if (!part[s]) continue;
      sig.assign(1, block[s]);
      for (int c = 0; c < nc; ++c) {
        const int t = a.NextByClass(s, c);
        sig.push_back(t < 0 ? -1 : block[t]);
      }
      next[s] = ids.emplace(sig, static_cast<int>(ids.size())).first->second;
    }
    block = std::move(next);
    if (static_cast<int>(ids.size()) == count) break;
    count = static_cast<int>(ids.size());
  }
  // Distinct ids for the other states.
  int next_id = 0;
  for (int s = 0; s < n; ++s) {
    if (part[s]) next_id = std::max(next_id, block[s] + 1);
  }
  for (int s = 0; s < n; ++s) {
    if (!part[s]) block[s] = next_id++;
  }
  return block;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenTables>> TokenTables::Build(const Automaton& a,
                                                                const Vocabulary& v,
                                                                const StepLimits& limits,
                                                                int max_tables) {
  const auto t0 = std::chrono::steady_clock::now();
  auto tables = std::make_unique<TokenTables>();
  const int n = a.num_states();
  tables->table_of_state_.assign(n, -1);
  // A token has at most max_token_bytes symbols, so agreeing that far is enough.
  const std::vector<int32_t> cls = ShortHorizonClasses(a, v.max_token_bytes() + 1);
  absl::flat_hash_map<int32_t, int32_t> table_of_class;
  {
    absl::flat_hash_set<int32_t> needed;
    for (int s = 0; s < n; ++s) {
      if (a.IsReachable(s) && a.HasMoves(s)) needed.insert(cls[s]);
    }
    if (static_cast<int>(needed.size()) > max_tables) {
      return absl::InvalidArgumentError(absl::StrCat(
          "grammar too large: it needs ", needed.size(), " token tables; the limit is ", max_tables,
          " (bounded repetitions such as maxItems and maxLength multiply them)"));
    }
  }
  TrieWalker walker(a, v, limits);
  std::vector<uint64_t> accepted(BitmaskWords(v.size()));
  std::vector<int32_t> escapes;
  for (int s = 0; s < n; ++s) {
    if (!a.IsReachable(s) || !a.HasMoves(s)) continue;
    ++tables->stats_.consuming_states;
    auto [it, inserted] =
        table_of_class.emplace(cls[s], static_cast<int32_t>(tables->tables_.size()));
    tables->table_of_state_[s] = it->second;
    if (!inserted) continue;
    std::fill(accepted.begin(), accepted.end(), 0);
    escapes.clear();
    StackSet start;
    start.flat = {1, s};
    const int rule = a.RuleOf(s);
    const int escape_rule = a.RuleIsCalled(rule) ? rule : -1;
    if (escape_rule < 0 && !a.RuleHasCalls(rule)) {
      walker.WalkDfa(s, accepted.data());
    } else if (!walker.Walk(start, 0, v.trie().num_nodes(), 0, escape_rule, accepted.data(),
                            &escapes)) {
      return absl::InvalidArgumentError(
          "grammar too ambiguous: masks need more parser stacks than the limit");
    }
    // Special tokens the grammar names are single symbols, outside the trie.
    const auto& token_symbols = a.token_symbols();
    for (size_t k = 0; k < token_symbols.size(); ++k) {
      StackSet out;
      walker.stepper().Step(start, a.ClassOf(kFirstTokenSymbol + static_cast<int>(k)), &out);
      if (!out.dead() && token_symbols[k] >= 0 && token_symbols[k] < v.size()) {
        BitmaskSet(accepted.data(), token_symbols[k]);
      }
    }
    TokenTable table;
    table.accepted = TokenSet::FromBitmask(accepted.data(), v.size());
    table.escape_nodes = escapes;
    tables->stats_.escape_nodes += static_cast<int>(escapes.size());
    tables->tables_.push_back(std::move(table));
  }
  tables->stats_.tables = static_cast<int>(tables->tables_.size());
  tables->stats_.build_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return tables;
}

size_t TokenTables::MemoryBytes() const {
  size_t bytes = table_of_state_.size() * 4;
  for (const auto& t : tables_) bytes += t.accepted.MemoryBytes() + t.escape_nodes.size() * 4;
  return bytes;
}

}  // namespace tessera::runtime::structured
