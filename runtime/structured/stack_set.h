// The parser state of a pushdown automaton (automaton.h): a set of stacks of automaton states.
// The top of each stack is a state with moves, where the next symbol is read; the frames below it
// are the states to return to when the rule of the frame above ends. Several stacks exist only
// where the grammar is ambiguous so far (e.g. `"a" x | "a" y` across rules); JSON Schema grammars
// keep one or two.
//
// A StackSet is a plain value (one vector): copying it is how a matcher is cloned, and equal
// parser states have equal StackSets (stacks are kept sorted and unique).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "runtime/structured/automaton.h"

namespace tessera::runtime::structured {

struct StackSet {
  // Stacks one after another, each as its length followed by its frames, bottom first.
  std::vector<int32_t> flat;
  // Some path has returned from the bottom frame: for a matcher's state this means the text so far
  // is complete (the grammar accepts); in a mask precomputation it means the rule being walked
  // has ended and what follows depends on the caller.
  bool accepting = false;

  bool dead() const { return flat.empty() && !accepting; }
  bool has_stacks() const { return !flat.empty(); }
  bool operator==(const StackSet& o) const { return accepting == o.accepting && flat == o.flat; }
  int NumStacks() const;
  int MaxDepth() const;
  // Calls f(frames, len) for every stack.
  template <typename F>
  void ForEachStack(F f) const {
    for (size_t i = 0; i < flat.size();) {
      const int len = flat[i];
      f(flat.data() + i + 1, len);
      i += 1 + len;
    }
  }
};

struct StepLimits {
  // Stacks alive at once (grammar ambiguity); exceeding it fails the step.
  int max_stacks = 1024;
  // Frames in one stack (nesting depth of recursive rules); deeper paths are dropped.
  int max_depth = 4096;
};

// Builds StackSets: closures of stacks and one-symbol steps. Holds scratch buffers; one per thread
// (cheap to construct: nothing is allocated until used).
class Stepper {
 public:
  Stepper(const Automaton& automaton, const StepLimits& limits) : a_(automaton), limits_(limits) {}

  // The parser state before any symbol: the closure of the root rule's start.
  StackSet Initial();

  // Reads one symbol of class `cls` from every stack of `in` into `out` (closed and canonical).
  // False when the result would exceed max_stacks (out is then dead).
  bool Step(const StackSet& in, int cls, StackSet* out);

  // Incremental building: Begin, any number of AddClosure (the closure of one stack whose top
  // need not have moves), Finish.
  void Begin();
  void AddClosure(const int32_t* frames, int len);
  bool Finish(StackSet* out);

  // True if some path was dropped for exceeding max_depth since the last Begin.
  bool depth_exceeded() const { return depth_exceeded_; }

 private:
  void Emit(const int32_t* frames, int len);

  const Automaton& a_;
  const StepLimits limits_;
  std::vector<int32_t> out_;       // emitted stacks: [len, frames...]*
  std::vector<uint32_t> offsets_;  // start of each emitted stack in out_
  std::vector<int32_t> work_;      // closure worklist: [len, frames...]*
  std::vector<int32_t> current_;
  std::vector<int32_t> step_;
  absl::flat_hash_set<std::vector<int32_t>> visited_;
  bool accepting_ = false;
  bool depth_exceeded_ = false;
};

}  // namespace tessera::runtime::structured
