#include "runtime/structured/automaton.h"

#include <algorithm>
#include <functional>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace tessera::runtime::structured {
namespace {

constexpr uint64_t kSizeCap = uint64_t{1} << 40;

uint64_t SatAdd(uint64_t a, uint64_t b) { return std::min(kSizeCap, a + b); }
uint64_t SatMul(uint64_t a, uint64_t b) {
  if (a == 0 || b == 0) return 0;
  if (a > kSizeCap / b) return kSizeCap;
  return std::min(kSizeCap, a * b);
}

void CollectRefs(const ExprPtr& e, std::vector<int>* out) {
  if (e == nullptr) return;
  if (e->kind == Expr::Kind::kRuleRef) out->push_back(e->rule);
  for (const auto& c : e->children) CollectRefs(c, out);
  for (const auto& edge : e->edges) CollectRefs(edge.label, out);
}

}  // namespace

class AutomatonBuilder {
 public:
  AutomatonBuilder(const Grammar& g, const AutomatonLimits& limits) : g_(g), limits_(limits) {}

  absl::StatusOr<std::shared_ptr<const Automaton>> Build() {
    if (g_.root < 0 || g_.root >= static_cast<int>(g_.rule_bodies.size()) ||
        g_.rule_bodies[g_.root] == nullptr) {
      return absl::InvalidArgumentError("grammar has no root rule");
    }
    if (absl::Status s = FindReachableAndCheckDefined(); !s.ok()) return s;
    FindRecursion();
    DecideInlining();
    if (absl::Status s = BuildNfa(); !s.ok()) return s;
    ComputeClasses();
    if (absl::Status s = Determinize(); !s.ok()) return s;
    Minimize();
    if (absl::Status s = Finish(); !s.ok()) return s;
    return std::shared_ptr<const Automaton>(std::move(a_));
  }

 private:
  // ---- Rules: reachability, recursion, inlining ----

  absl::Status FindReachableAndCheckDefined() {
    const int n = static_cast<int>(g_.rule_bodies.size());
    refs_.assign(n, {});
    reachable_rule_.assign(n, false);
    std::vector<int> stack = {g_.root};
    reachable_rule_[g_.root] = true;
    while (!stack.empty()) {
      const int r = stack.back();
      stack.pop_back();
      if (g_.rule_bodies[r] == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("grammar rule '", g_.rule_names[r], "' is used but not defined"));
      }
      CollectRefs(g_.rule_bodies[r], &refs_[r]);
      std::sort(refs_[r].begin(), refs_[r].end());
      refs_[r].erase(std::unique(refs_[r].begin(), refs_[r].end()), refs_[r].end());
      for (int t : refs_[r]) {
        if (t < 0 || t >= n) return absl::InternalError("rule reference out of range");
        if (!reachable_rule_[t]) {
          reachable_rule_[t] = true;
          stack.push_back(t);
        }
      }
    }
    return absl::OkStatus();
  }

  // Tarjan's strongly connected components over the reachable rules.
  void FindRecursion() {
    const int n = static_cast<int>(g_.rule_bodies.size());
    recursive_.assign(n, false);
    std::vector<int> index(n, -1), low(n, 0), stack;
    std::vector<bool> on_stack(n, false);
    int counter = 0;
    std::function<void(int)> visit = [&](int v) {
      index[v] = low[v] = counter++;
      stack.push_back(v);
      on_stack[v] = true;
      for (int w : refs_[v]) {
        if (index[w] < 0) {
          visit(w);
          low[v] = std::min(low[v], low[w]);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
      }
      if (low[v] == index[v]) {
        std::vector<int> scc;
        int w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = false;
          scc.push_back(w);
        } while (w != v);
        const bool self = std::binary_search(refs_[v].begin(), refs_[v].end(), v);
        if (scc.size() > 1 || self) {
          for (int x : scc) recursive_[x] = true;
        }
      }
    };
    for (int r = 0; r < n; ++r) {
      if (reachable_rule_[r] && index[r] < 0) visit(r);
    }
  }

  uint64_t ExprSize(const ExprPtr& e) {
    switch (e->kind) {
      case Expr::Kind::kSymbols:
        return 1;
      case Expr::Kind::kSequence:
      case Expr::Kind::kChoice: {
        uint64_t s = 1;
        for (const auto& c : e->children) s = SatAdd(s, ExprSize(c));
        return s;
      }
      case Expr::Kind::kRepeat: {
        const uint64_t copies = e->max >= 0 ? std::max(e->max, 1) : e->min + 1;
        return SatAdd(1, SatMul(ExprSize(e->children[0]), copies));
      }
      case Expr::Kind::kRuleRef:
        return inline_[e->rule] ? RuleSize(e->rule) : 1;
      case Expr::Kind::kGraph: {
        uint64_t s = e->num_nodes + 1;
        for (const auto& edge : e->edges) {
          s = SatAdd(s, edge.label ? ExprSize(edge.label) : 1);
        }
        return s;
      }
    }
    return 1;
  }

  uint64_t RuleSize(int r) {
    if (rule_size_[r] == 0) rule_size_[r] = std::max<uint64_t>(1, ExprSize(g_.rule_bodies[r]));
    return rule_size_[r];
  }

  // Callees first: a rule is inlined when it is not recursive and its body, with its own inlined
  // callees expanded, stays under the limit.
  void DecideInlining() {
    const int n = static_cast<int>(g_.rule_bodies.size());
    inline_.assign(n, false);
    rule_size_.assign(n, 0);
    std::vector<int> state(n, 0);  // 0 new, 1 visiting, 2 done
    std::function<void(int)> visit = [&](int r) {
      state[r] = 1;
      for (int t : refs_[r]) {
        if (state[t] == 0 && !recursive_[t]) visit(t);
      }
      state[r] = 2;
      if (!recursive_[r] && r != g_.root) {
        inline_[r] = RuleSize(r) <= static_cast<uint64_t>(limits_.max_inline_size);
      }
    };
    for (int r = 0; r < n; ++r) {
      if (reachable_rule_[r] && state[r] == 0 && !recursive_[r]) visit(r);
    }
  }

  // ---- Thompson NFA ----

  int NewNfaState() {
    if (static_cast<int>(eps_.size()) >= limits_.max_nfa_states) {
      if (error_.ok()) {
        error_ = absl::InvalidArgumentError(
            absl::StrCat("grammar too large: its automaton exceeds ", limits_.max_nfa_states,
                         " states (bounded repetitions and lengths are expanded into copies)"));
      }
      return 0;
    }
    eps_.emplace_back();
    sym_.emplace_back();
    call_.emplace_back();
    return static_cast<int>(eps_.size()) - 1;
  }

  int SetId(const SymbolSet& set) {
    auto [it, inserted] = set_ids_.emplace(set.ranges(), static_cast<int>(sets_.size()));
    if (inserted) sets_.push_back(set);
    return it->second;
  }

  int AutomatonRule(int grammar_rule) {
    auto [it, inserted] = rule_map_.emplace(grammar_rule, static_cast<int>(kept_rules_.size()));
    if (inserted) kept_rules_.push_back(grammar_rule);
    return it->second;
  }

  // Adds the NFA of `e` starting at `from` and returns its end state. Never adds an edge into
  // `from`, so sibling expressions may start at the same state.
  int BuildExpr(const ExprPtr& e, int from, int depth) {
    if (!error_.ok()) return from;
    if (depth > 10000) {
      error_ = absl::InvalidArgumentError("grammar nested more than 10000 levels deep");
      return from;
    }
    switch (e->kind) {
      case Expr::Kind::kSymbols: {
        const int t = NewNfaState();
        if (!e->symbols.empty()) sym_[from].emplace_back(SetId(e->symbols), t);
        return t;
      }
      case Expr::Kind::kSequence: {
        int cur = from;
        for (const auto& c : e->children) cur = BuildExpr(c, cur, depth + 1);
        return cur;
      }
      case Expr::Kind::kChoice: {
        const int end = NewNfaState();
        for (const auto& c : e->children) {
          const int s = NewNfaState();
          if (!error_.ok()) return from;
          eps_[from].push_back(s);
          const int t = BuildExpr(c, s, depth + 1);
          if (!error_.ok()) return from;
          eps_[t].push_back(end);
        }
        return end;
      }
      case Expr::Kind::kRepeat: {
        if (e->min > limits_.max_repetition || e->max > limits_.max_repetition) {
          error_ = absl::InvalidArgumentError(
              absl::StrCat("repetition count ", std::max(e->min, e->max), " exceeds the limit of ",
                           limits_.max_repetition));
          return from;
        }
        if (e->max >= 0 && e->max < e->min) {
          error_ = absl::InvalidArgumentError(
              absl::StrCat("repetition {", e->min, ",", e->max, "} has max < min"));
          return from;
        }
        int cur = from;
        for (int i = 0; i < e->min && error_.ok(); ++i) {
          cur = BuildExpr(e->children[0], cur, depth + 1);
        }
        if (!error_.ok()) return from;
        if (e->max < 0) {
          const int loop = NewNfaState();
          if (!error_.ok()) return from;
          eps_[cur].push_back(loop);
          const int t = BuildExpr(e->children[0], loop, depth + 1);
          if (!error_.ok()) return from;
          eps_[t].push_back(loop);
          return loop;
        }
        if (e->max == e->min) return cur;
        const int end = NewNfaState();
        for (int i = e->min; i < e->max && error_.ok(); ++i) {
          eps_[cur].push_back(end);
          // A fresh state per copy keeps the "no edge into from" invariant.
          const int s = NewNfaState();
          if (!error_.ok()) return from;
          eps_[cur].push_back(s);
          cur = BuildExpr(e->children[0], s, depth + 1);
        }
        if (!error_.ok()) return from;
        eps_[cur].push_back(end);
        return end;
      }
      case Expr::Kind::kRuleRef: {
        if (inline_[e->rule]) return BuildExpr(g_.rule_bodies[e->rule], from, depth + 1);
        const int t = NewNfaState();
        if (!error_.ok()) return from;
        call_[from].emplace_back(AutomatonRule(e->rule), t);
        return t;
      }
      case Expr::Kind::kGraph: {
        std::vector<int> nodes(e->num_nodes);
        for (int& n : nodes) n = NewNfaState();
        if (!error_.ok()) return from;
        eps_[from].push_back(nodes[e->start]);
        for (const auto& edge : e->edges) {
          // Each edge starts at a fresh state so that labels never share a `from` that has
          // incoming edges of another label's loop.
          const int s = NewNfaState();
          if (!error_.ok()) return from;
          eps_[nodes[edge.from]].push_back(s);
          const int t = edge.label ? BuildExpr(edge.label, s, depth + 1) : s;
          if (!error_.ok()) return from;
          eps_[t].push_back(nodes[edge.to]);
        }
        const int end = NewNfaState();
        if (!error_.ok()) return from;
        for (int f : e->finals) eps_[nodes[f]].push_back(end);
        return end;
      }
    }
    return from;
  }

  absl::Status BuildNfa() {
    AutomatonRule(g_.root);
    for (size_t k = 0; k < kept_rules_.size(); ++k) {  // grows as calls are found
      const int start = NewNfaState();
      const int end = BuildExpr(g_.rule_bodies[kept_rules_[k]], start, 0);
      if (!error_.ok()) return error_;
      nfa_start_.push_back(start);
      nfa_final_.push_back(end);
    }
    return absl::OkStatus();
  }

  // ---- Symbol classes: symbols no set tells apart share a class ----

  void ComputeClasses() {
    const int num_symbols = g_.num_symbols();
    std::vector<std::pair<uint64_t, uint64_t>> sig(num_symbols, {0, 0});
    for (size_t s = 0; s < sets_.size(); ++s) {
      const uint64_t a = (s + 1) * 0x9E3779B97F4A7C15ull;
      const uint64_t b = (s + 1) * 0xC2B2AE3D27D4EB4Full;
      for (const auto& [lo, hi] : sets_[s].ranges()) {
        for (int x = lo; x <= hi && x < num_symbols; ++x) {
          sig[x].first = (sig[x].first ^ a) * 0x100000001B3ull + 7;
          sig[x].second = (sig[x].second + b) * 0xFF51AFD7ED558CCDull;
        }
      }
    }
    std::map<std::pair<uint64_t, uint64_t>, int> ids;
    a_->symbol_class_.resize(num_symbols);
    for (int x = 0; x < num_symbols; ++x) {
      auto [it, inserted] = ids.emplace(sig[x], static_cast<int>(ids.size()));
      a_->symbol_class_[x] = static_cast<uint16_t>(it->second);
    }
    a_->num_classes_ = static_cast<int>(ids.size());
    set_classes_.resize(sets_.size());
    for (size_t s = 0; s < sets_.size(); ++s) {
      std::vector<int>& cls = set_classes_[s];
      for (const auto& [lo, hi] : sets_[s].ranges()) {
        for (int x = lo; x <= hi && x < num_symbols; ++x) cls.push_back(a_->symbol_class_[x]);
      }
      std::sort(cls.begin(), cls.end());
      cls.erase(std::unique(cls.begin(), cls.end()), cls.end());
    }
  }

  // ---- Subset construction, per rule ----

  void EpsClosure(std::vector<int>* set) {
    std::vector<int>& stack = scratch_;
    stack.assign(set->begin(), set->end());
    mark_.resize(eps_.size(), 0);
    ++mark_gen_;
    for (int s : *set) mark_[s] = mark_gen_;
    while (!stack.empty()) {
      const int s = stack.back();
      stack.pop_back();
      for (int t : eps_[s]) {
        if (mark_[t] != mark_gen_) {
          mark_[t] = mark_gen_;
          set->push_back(t);
          stack.push_back(t);
        }
      }
    }
    std::sort(set->begin(), set->end());
  }

  absl::Status Determinize() {
    const int nc = a_->num_classes_;
    const int num_rules = static_cast<int>(kept_rules_.size());
    absl::flat_hash_map<std::vector<int>, int> ids;
    std::vector<std::vector<int>> sets;
    std::vector<std::vector<int>> buckets(nc);
    std::vector<int> touched;
    auto intern = [&](std::vector<int> set, int rule) -> int {
      EpsClosure(&set);
      auto [it, inserted] = ids.emplace(set, static_cast<int>(sets.size()));
      if (inserted) {
        sets.push_back(std::move(set));
        d_rule_.push_back(rule);
      }
      return it->second;
    };
    for (int r = 0; r < num_rules; ++r) {
      d_start_.push_back(intern({nfa_start_[r]}, r));
    }
    for (size_t d = 0; d < sets.size(); ++d) {
      if (static_cast<int>(sets.size()) > limits_.max_dfa_states) {
        return absl::InvalidArgumentError(absl::StrCat("grammar too large: its automaton exceeds ",
                                                       limits_.max_dfa_states, " states"));
      }
      const int rule = d_rule_[d];
      const std::vector<int> set = sets[d];  // copy: `sets` may grow
      bool final = false;
      std::map<int, std::vector<int>> call_targets;
      for (int s : set) {
        if (s == nfa_final_[rule]) final = true;
        for (const auto& [set_id, to] : sym_[s]) {
          for (int c : set_classes_[set_id]) {
            if (buckets[c].empty()) touched.push_back(c);
            buckets[c].push_back(to);
          }
        }
        for (const auto& [callee, to] : call_[s]) call_targets[callee].push_back(to);
      }
      std::vector<int32_t> next(nc, -1);
      std::sort(touched.begin(), touched.end());
      for (int c : touched) {
        std::vector<int> target = std::move(buckets[c]);
        buckets[c].clear();
        std::sort(target.begin(), target.end());
        target.erase(std::unique(target.begin(), target.end()), target.end());
        next[c] = intern(std::move(target), rule);
      }
      touched.clear();
      std::vector<RuleCall> calls;
      for (auto& [callee, targets] : call_targets) {
        std::sort(targets.begin(), targets.end());
        targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
        calls.push_back({callee, intern(std::move(targets), rule)});
      }
      d_next_.insert(d_next_.end(), next.begin(), next.end());
      d_calls_.push_back(std::move(calls));
      d_final_.push_back(final);
    }
    return absl::OkStatus();
  }

  // ---- Minimization: Hopcroft's partition refinement, over all rules at once (states of different
  // rules never merge). Symbols are the classes, then one per callee rule (a call edge is a move on
  // that symbol to the return state); a sink state stands for "no move". O(n k log n): Moore's
  // rounds were quadratic on the long chains that bounded lengths make (maxLength 2000: 9 s).

  void Minimize() {
    const int n = static_cast<int>(d_final_.size());
    const int nc = a_->num_classes_;
    const int ns = nc + static_cast<int>(kept_rules_.size());
    const int total = n + 1;
    const int sink = n;
    std::vector<int32_t> delta(static_cast<size_t>(total) * ns, sink);
    for (int s = 0; s < n; ++s) {
      for (int c = 0; c < nc; ++c) {
        const int t = d_next_[static_cast<size_t>(s) * nc + c];
        if (t >= 0) delta[static_cast<size_t>(s) * ns + c] = t;
      }
      for (const RuleCall& call : d_calls_[s]) {
        delta[static_cast<size_t>(s) * ns + nc + call.rule] = call.return_state;
      }
    }
    // Inverse moves, per (symbol, target): inv_src[inv_start[c * total + t] ...].
    std::vector<int32_t> inv_start(static_cast<size_t>(ns) * total + 1, 0);
    for (int s = 0; s < total; ++s) {
      for (int c = 0; c < ns; ++c) {
        ++inv_start[static_cast<size_t>(c) * total + delta[static_cast<size_t>(s) * ns + c] + 1];
      }
    }
    for (size_t k = 1; k < inv_start.size(); ++k) inv_start[k] += inv_start[k - 1];
    std::vector<int32_t> inv_src(inv_start.back());
    {
      std::vector<int32_t> fill(inv_start.begin(), inv_start.end() - 1);
      for (int s = 0; s < total; ++s) {
        for (int c = 0; c < ns; ++c) {
          inv_src[fill[static_cast<size_t>(c) * total + delta[static_cast<size_t>(s) * ns + c]]++] =
              s;
        }
      }
    }
    // The partition: block b holds elems[first[b] .. last[b]); marked states of a block being
    // split sit at its front.
    std::vector<int> elems(total), loc(total), blk(total);
    std::vector<int> first, last, marked;
    {
      std::map<std::pair<int, int>, int> ids;  // (rule, final) -> initial block; the sink alone
      for (int s = 0; s < total; ++s) {
        const auto key = s == sink ? std::make_pair(-1, 0)
                                   : std::make_pair(d_rule_[s], static_cast<int>(d_final_[s]));
        blk[s] = ids.emplace(key, static_cast<int>(ids.size())).first->second;
      }
      const int nb = static_cast<int>(ids.size());
      std::vector<int> count(nb + 1, 0);
      for (int s = 0; s < total; ++s) ++count[blk[s] + 1];
      for (int b = 0; b < nb; ++b) count[b + 1] += count[b];
      first.assign(count.begin(), count.end() - 1);
      last = first;
      for (int s = 0; s < total; ++s) {
        loc[s] = last[blk[s]]++;
        elems[loc[s]] = s;
      }
      marked.assign(nb, 0);
    }
    std::vector<std::pair<int, int>> work;  // (block, symbol) splitters
    std::vector<bool> in_work;              // [block * ns + symbol]
    auto push = [&](int b, int c) {
      const size_t k = static_cast<size_t>(b) * ns + c;
      if (in_work.size() <= k) in_work.resize((static_cast<size_t>(b) + 1) * ns, false);
      if (!in_work[k]) {
        in_work[k] = true;
        work.emplace_back(b, c);
      }
    };
    for (int b = 0; b < static_cast<int>(first.size()); ++b) {
      for (int c = 0; c < ns; ++c) push(b, c);
    }
    std::vector<int> touched, members;
    while (!work.empty()) {
      const auto [splitter, c] = work.back();
      work.pop_back();
      in_work[static_cast<size_t>(splitter) * ns + c] = false;
      touched.clear();
      // A snapshot: marking reorders blocks, the splitter's own included.
      members.assign(elems.begin() + first[splitter], elems.begin() + last[splitter]);
      for (const int t : members) {
        const size_t key = static_cast<size_t>(c) * total + t;
        for (int k = inv_start[key]; k < inv_start[key + 1]; ++k) {
          const int src = inv_src[k];
          const int b = blk[src];
          const int front = first[b] + marked[b];
          if (loc[src] < front) continue;  // already marked
          if (marked[b] == 0) touched.push_back(b);
          const int other = elems[front];
          std::swap(elems[loc[src]], elems[front]);
          loc[other] = loc[src];
          loc[src] = front;
          ++marked[b];
        }
      }
      for (int b : touched) {
        const int m = marked[b];
        marked[b] = 0;
        if (m == last[b] - first[b]) continue;
        const int nb = static_cast<int>(first.size());
        first.push_back(first[b]);
        last.push_back(first[b] + m);
        marked.push_back(0);
        first[b] += m;
        for (int i = first[nb]; i < last[nb]; ++i) blk[elems[i]] = nb;
        const bool nb_smaller = m <= last[b] - first[b];
        for (int c2 = 0; c2 < ns; ++c2) {
          const size_t k = static_cast<size_t>(b) * ns + c2;
          if (k < in_work.size() && in_work[k]) {
            push(nb, c2);
          } else {
            push(nb_smaller ? nb : b, c2);
          }
        }
      }
    }
    const int num_blocks = static_cast<int>(first.size());
    std::vector<int>& block = blk;
    // Renumber blocks in order of first appearance so that the root's start is state 0.
    std::vector<int> order(num_blocks, -1);
    int next_id = 0;
    std::vector<int> rep(num_blocks, -1);
    // Starts first, in rule order, then everything else.
    for (int start : d_start_) {
      if (order[block[start]] < 0) {
        order[block[start]] = next_id++;
        rep[order[block[start]]] = start;
      }
    }
    for (int s = 0; s < n; ++s) {
      if (order[block[s]] < 0) {
        order[block[s]] = next_id++;
        rep[order[block[s]]] = s;
      }
    }
    Automaton& a = *a_;
    a.next_.assign(static_cast<size_t>(next_id) * nc, -1);
    a.flags_.assign(next_id, 0);
    a.rule_of_.assign(next_id, 0);
    m_calls_.assign(next_id, {});
    for (int b = 0; b < next_id; ++b) {
      const int s = rep[b];
      for (int c = 0; c < nc; ++c) {
        const int t = d_next_[static_cast<size_t>(s) * nc + c];
        a.next_[static_cast<size_t>(b) * nc + c] = t < 0 ? -1 : order[block[t]];
      }
      if (d_final_[s]) a.flags_[b] |= Automaton::kFinal;
      a.rule_of_[b] = d_rule_[s];
      for (const RuleCall& call : d_calls_[s]) {
        m_calls_[b].push_back({call.rule, order[block[call.return_state]]});
      }
    }
    a.rule_start_.clear();
    for (int start : d_start_) a.rule_start_.push_back(order[block[start]]);
  }

  // ---- Productivity, trimming, left recursion, flags, FOLLOW ----

  absl::Status Finish() {
    Automaton& a = *a_;
    const int n = a.num_states();
    const int nc = a.num_classes_;
    const int num_rules = static_cast<int>(kept_rules_.size());
    a.rule_names_.clear();
    for (int r : kept_rules_) a.rule_names_.push_back(g_.rule_names[r]);
    a.token_symbols_ = g_.token_symbols;

    // Co-reachability to a final state, given which rules can complete.
    std::vector<bool> productive(num_rules, false), live(n, false);
    std::vector<std::vector<int>> reverse(n);
    for (int s = 0; s < n; ++s) {
      for (int c = 0; c < nc; ++c) {
        const int t = a.next_[static_cast<size_t>(s) * nc + c];
        if (t >= 0) reverse[t].push_back(s);
      }
    }
    while (true) {
      std::vector<bool> now(n, false);
      std::vector<int> stack;
      for (int s = 0; s < n; ++s) {
        if (a.IsFinal(s)) {
          now[s] = true;
          stack.push_back(s);
        }
      }
      // Call edges to productive rules act as edges s -> return_state.
      std::vector<std::vector<int>> call_reverse(n);
      for (int s = 0; s < n; ++s) {
        for (const RuleCall& call : m_calls_[s]) {
          if (productive[call.rule]) call_reverse[call.return_state].push_back(s);
        }
      }
      while (!stack.empty()) {
        const int t = stack.back();
        stack.pop_back();
        for (const auto* preds : {&reverse[t], &call_reverse[t]}) {
          for (int s : *preds) {
            if (!now[s]) {
              now[s] = true;
              stack.push_back(s);
            }
          }
        }
      }
      bool changed = false;
      for (int r = 0; r < num_rules; ++r) {
        if (!productive[r] && now[a.rule_start_[r]]) {
          productive[r] = true;
          changed = true;
        }
      }
      live = std::move(now);
      if (!changed) break;
    }
    if (!productive[0]) return absl::InvalidArgumentError("the grammar matches no text");

    // Trim: moves and calls into states that cannot finish are dropped.
    for (int s = 0; s < n; ++s) {
      for (int c = 0; c < nc; ++c) {
        int32_t& t = a.next_[static_cast<size_t>(s) * nc + c];
        if (t >= 0 && !live[t]) t = -1;
      }
      auto& calls = m_calls_[s];
      calls.erase(std::remove_if(calls.begin(), calls.end(),
                                 [&](const RuleCall& call) {
                                   return !productive[call.rule] || !live[call.return_state];
                                 }),
                  calls.end());
    }

    // Nullable rules: the start reaches a final state through calls of nullable rules only.
    std::vector<bool> nullable(num_rules, false);
    auto eps_reach = [&](int rule) {
      std::vector<int> seen = {a.rule_start_[rule]};
      for (size_t i = 0; i < seen.size(); ++i) {
        for (const RuleCall& call : m_calls_[seen[i]]) {
          if (nullable[call.rule] &&
              std::find(seen.begin(), seen.end(), call.return_state) == seen.end()) {
            seen.push_back(call.return_state);
          }
        }
      }
      return seen;
    };
    for (bool changed = true; changed;) {
      changed = false;
      for (int r = 0; r < num_rules; ++r) {
        if (nullable[r]) continue;
        for (int s : eps_reach(r)) {
          if (a.IsFinal(s)) {
            nullable[r] = true;
            changed = true;
            break;
          }
        }
      }
    }
    // Left recursion: r -> callee when the callee can be entered before r reads a symbol.
    std::vector<std::vector<int>> left(num_rules);
    for (int r = 0; r < num_rules; ++r) {
      for (int s : eps_reach(r)) {
        for (const RuleCall& call : m_calls_[s]) left[r].push_back(call.rule);
      }
    }
    {
      std::vector<int> color(num_rules, 0);
      std::string cycle_rule;
      std::function<bool(int)> dfs = [&](int r) {
        color[r] = 1;
        for (int t : left[r]) {
          if (color[t] == 1) {
            cycle_rule = a.rule_names_[t];
            return true;
          }
          if (color[t] == 0 && dfs(t)) return true;
        }
        color[r] = 2;
        return false;
      };
      for (int r = 0; r < num_rules; ++r) {
        if (color[r] == 0 && dfs(r)) {
          return absl::InvalidArgumentError(
              absl::StrCat("grammar rule '", cycle_rule,
                           "' is left-recursive (it can reach itself without reading anything)"));
        }
      }
    }

    // Calls in CSR form; flags.
    a.call_begin_.assign(n + 1, 0);
    a.calls_.clear();
    for (int s = 0; s < n; ++s) {
      a.call_begin_[s] = static_cast<uint32_t>(a.calls_.size());
      a.calls_.insert(a.calls_.end(), m_calls_[s].begin(), m_calls_[s].end());
    }
    a.call_begin_[n] = static_cast<uint32_t>(a.calls_.size());
    for (int s = 0; s < n; ++s) {
      bool moves = false;
      for (int c = 0; c < nc && !moves; ++c) moves = a.next_[static_cast<size_t>(s) * nc + c] >= 0;
      uint8_t& f = a.flags_[s];
      const bool has_calls = a.call_begin_[s + 1] > a.call_begin_[s];
      if (moves) f |= Automaton::kMoves;
      if (!has_calls && !(f & Automaton::kFinal)) f |= Automaton::kSimple;
      if (!has_calls && !moves && (f & Automaton::kFinal)) f |= Automaton::kPureFinal;
    }

    // Reachability from the root's start (moves, calls into callees, and returns).
    {
      std::vector<bool> seen(n, false);
      std::vector<int> stack = {a.rule_start_[0]};
      seen[a.rule_start_[0]] = true;
      auto push = [&](int t) {
        if (t >= 0 && live[t] && !seen[t]) {
          seen[t] = true;
          stack.push_back(t);
        }
      };
      while (!stack.empty()) {
        const int s = stack.back();
        stack.pop_back();
        for (int c = 0; c < nc; ++c) push(a.next_[static_cast<size_t>(s) * nc + c]);
        for (const RuleCall* c = a.CallsBegin(s); c != a.CallsEnd(s); ++c) {
          push(a.rule_start_[c->rule]);
          push(c->return_state);
        }
      }
      for (int s = 0; s < n; ++s) {
        if (seen[s]) a.flags_[s] |= Automaton::kReachable;
      }
    }
    a.rule_called_.assign(num_rules, false);
    a.rule_has_calls_.assign(num_rules, false);
    for (int s = 0; s < n; ++s) {
      if (!a.IsReachable(s)) continue;
      for (const RuleCall* c = a.CallsBegin(s); c != a.CallsEnd(s); ++c) {
        a.rule_called_[c->rule] = true;
        a.rule_has_calls_[a.rule_of_[s]] = true;
      }
    }

    ComputeFollow(nullable);
    return absl::OkStatus();
  }

  // FIRST bytes of each state (descending into callees) and FOLLOW bytes of each rule, by
  // fixpoint. Used only to prune which tokens may continue past a rule's end, so a superset is
  // always safe.
  void ComputeFollow(const std::vector<bool>& nullable) {
    Automaton& a = *a_;
    const int n = a.num_states();
    const int nc = a.num_classes_;
    const int num_rules = a.num_rules();
    using Bits = std::array<uint64_t, 4>;
    std::vector<Bits> class_bytes(nc, Bits{});
    for (int b = 0; b < 256; ++b)
      class_bytes[a.symbol_class_[b]][b >> 6] |= uint64_t{1} << (b & 63);
    auto merge = [](Bits& dst, const Bits& src) {
      bool changed = false;
      for (int i = 0; i < 4; ++i) {
        const uint64_t v = dst[i] | src[i];
        changed |= v != dst[i];
        dst[i] = v;
      }
      return changed;
    };
    std::vector<Bits> first(n, Bits{});
    std::vector<bool> null_end(n, false);
    for (int s = 0; s < n; ++s) {
      for (int c = 0; c < nc; ++c) {
        if (a.next_[static_cast<size_t>(s) * nc + c] >= 0) merge(first[s], class_bytes[c]);
      }
      null_end[s] = a.IsFinal(s);
    }
    for (bool changed = true; changed;) {
      changed = false;
      for (int s = 0; s < n; ++s) {
        for (const RuleCall* c = a.CallsBegin(s); c != a.CallsEnd(s); ++c) {
          changed |= merge(first[s], first[a.rule_start_[c->rule]]);
          if (nullable[c->rule]) {
            changed |= merge(first[s], first[c->return_state]);
            if (null_end[c->return_state] && !null_end[s]) {
              null_end[s] = true;
              changed = true;
            }
          }
        }
      }
    }
    a.follow_.assign(num_rules, Bits{});
    for (bool changed = true; changed;) {
      changed = false;
      for (int s = 0; s < n; ++s) {
        for (const RuleCall* c = a.CallsBegin(s); c != a.CallsEnd(s); ++c) {
          changed |= merge(a.follow_[c->rule], first[c->return_state]);
          if (null_end[c->return_state]) {
            changed |= merge(a.follow_[c->rule], a.follow_[a.rule_of_[s]]);
          }
        }
      }
    }
  }

  const Grammar& g_;
  const AutomatonLimits limits_;
  std::unique_ptr<Automaton> a_ = std::make_unique<Automaton>();
  absl::Status error_;

  std::vector<std::vector<int>> refs_;
  std::vector<bool> reachable_rule_, recursive_, inline_;
  std::vector<uint64_t> rule_size_;

  // NFA
  std::vector<std::vector<int>> eps_;
  std::vector<std::vector<std::pair<int, int>>> sym_;   // (set id, to)
  std::vector<std::vector<std::pair<int, int>>> call_;  // (automaton rule, to)
  std::map<std::vector<std::pair<int, int>>, int> set_ids_;
  std::vector<SymbolSet> sets_;
  std::vector<std::vector<int>> set_classes_;
  std::map<int, int> rule_map_;  // grammar rule -> automaton rule
  std::vector<int> kept_rules_;  // automaton rule -> grammar rule
  std::vector<int> nfa_start_, nfa_final_;
  std::vector<int> scratch_;
  std::vector<uint32_t> mark_;
  uint32_t mark_gen_ = 0;

  // DFA before minimization
  std::vector<int> d_rule_, d_start_;
  std::vector<int32_t> d_next_;
  std::vector<std::vector<RuleCall>> d_calls_;
  std::vector<bool> d_final_;
  // After minimization
  std::vector<std::vector<RuleCall>> m_calls_;
};

absl::StatusOr<std::shared_ptr<const Automaton>> Automaton::Build(const Grammar& grammar,
                                                                  const AutomatonLimits& limits) {
  return AutomatonBuilder(grammar, limits).Build();
}

size_t Automaton::MemoryBytes() const {
  return next_.size() * sizeof(int32_t) + flags_.size() + call_begin_.size() * sizeof(uint32_t) +
         calls_.size() * sizeof(RuleCall) + rule_of_.size() * sizeof(int32_t) +
         follow_.size() * sizeof(follow_[0]) + symbol_class_.size() * sizeof(uint16_t);
}

}  // namespace tessera::runtime::structured
