#include "runtime/structured/stack_set.h"

#include <algorithm>
#include <numeric>

namespace tessera::runtime::structured {

int StackSet::NumStacks() const {
  int n = 0;
  ForEachStack([&](const int32_t*, int) { ++n; });
  return n;
}

int StackSet::MaxDepth() const {
  int d = 0;
  ForEachStack([&](const int32_t*, int len) { d = std::max(d, len); });
  return d;
}

StackSet Stepper::Initial() {
  Begin();
  const int32_t start = a_.RuleStart(a_.root_rule());
  AddClosure(&start, 1);
  StackSet out;
  Finish(&out);
  return out;
}

void Stepper::Begin() {
  out_.clear();
  offsets_.clear();
  visited_.clear();
  accepting_ = false;
  depth_exceeded_ = false;
}

void Stepper::Emit(const int32_t* frames, int len) {
  offsets_.push_back(static_cast<uint32_t>(out_.size()));
  out_.push_back(len);
  out_.insert(out_.end(), frames, frames + len);
}

void Stepper::AddClosure(const int32_t* frames, int len) {
  if (a_.IsSimple(frames[len - 1])) {
    Emit(frames, len);
    return;
  }
  // Worklist of stacks, each stored as its frames followed by its length (LIFO).
  work_.clear();
  work_.insert(work_.end(), frames, frames + len);
  work_.push_back(len);
  while (!work_.empty()) {
    const int n = work_.back();
    current_.assign(work_.end() - 1 - n, work_.end() - 1);
    work_.resize(work_.size() - 1 - n);
    const int32_t top = current_.back();
    if (a_.IsSimple(top)) {
      Emit(current_.data(), n);
      continue;
    }
    if (!visited_.insert(current_).second) continue;
    if (a_.HasMoves(top)) Emit(current_.data(), n);
    for (const RuleCall* c = a_.CallsBegin(top); c != a_.CallsEnd(top); ++c) {
      const int32_t callee_start = a_.RuleStart(c->rule);
      // A call whose return state only returns is a tail call: the caller's frame is not kept,
      // so right recursion (`list ::= item list | item`) runs in constant stack.
      const bool tail = a_.IsPureFinal(c->return_state);
      const int next_len = tail ? n : n + 1;
      if (next_len > limits_.max_depth) {
        depth_exceeded_ = true;
        continue;
      }
      work_.insert(work_.end(), current_.begin(), current_.end() - 1);
      if (!tail) work_.push_back(c->return_state);
      work_.push_back(callee_start);
      work_.push_back(next_len);
    }
    if (a_.IsFinal(top)) {
      if (n == 1) {
        accepting_ = true;
      } else {
        work_.insert(work_.end(), current_.begin(), current_.end() - 1);
        work_.push_back(n - 1);
      }
    }
  }
}

bool Stepper::Finish(StackSet* out) {
  out->accepting = accepting_;
  out->flat.clear();
  if (offsets_.size() <= 1) {
    out->flat = out_;
    return true;
  }
  std::vector<uint32_t>& order = offsets_;
  auto less = [&](uint32_t x, uint32_t y) {
    const int32_t lx = out_[x], ly = out_[y];
    if (lx != ly) return lx < ly;
    return std::lexicographical_compare(out_.begin() + x + 1, out_.begin() + x + 1 + lx,
                                        out_.begin() + y + 1, out_.begin() + y + 1 + ly);
  };
  auto equal = [&](uint32_t x, uint32_t y) {
    const int32_t lx = out_[x];
    return lx == out_[y] &&
           std::equal(out_.begin() + x, out_.begin() + x + 1 + lx, out_.begin() + y);
  };
  std::sort(order.begin(), order.end(), less);
  order.erase(std::unique(order.begin(), order.end(), equal), order.end());
  if (static_cast<int>(order.size()) > limits_.max_stacks) {
    out->accepting = false;
    return false;
  }
  for (uint32_t o : order) {
    out->flat.insert(out->flat.end(), out_.begin() + o, out_.begin() + o + 1 + out_[o]);
  }
  return true;
}

bool Stepper::Step(const StackSet& in, int cls, StackSet* out) {
  Begin();
  for (size_t i = 0; i < in.flat.size();) {
    const int len = in.flat[i];
    const int32_t* frames = in.flat.data() + i + 1;
    const int32_t t = a_.NextByClass(frames[len - 1], cls);
    if (t >= 0) {
      if (len == 1) {
        AddClosure(&t, 1);
      } else {
        // A buffer of its own: AddClosure uses current_ and work_.
        step_.assign(frames, frames + len);
        step_.back() = t;
        AddClosure(step_.data(), len);
      }
    }
    i += 1 + len;
  }
  return Finish(out);
}

}  // namespace tessera::runtime::structured
