#include "runtime/cuda/graph_cache.h"

#include "base/logging.h"

namespace tessera::runtime::cuda {

absl::Status GraphCache::Run(GraphKey key, absl::FunctionRef<absl::Status()> enqueue) {
  Entry& e = entries_[key];
  if (e.state == State::kWarm) {
    absl::Status st = capturer_->Begin();
    absl::StatusOr<std::unique_ptr<CapturedGraph>> graph = absl::UnknownError("not captured");
    if (st.ok()) {
      st = enqueue();
      graph = capturer_->End();  // Ends the capture whatever happened.
    }
    if (st.ok() && graph.ok()) {
      e.graph = std::move(*graph);
      e.state = State::kCaptured;
    } else {
      // The capture's error must not fail later launches.
      capturer_->ClearError();
      e.state = State::kEager;
      TESSERA_LOG(WARNING) << "CUDA graph capture for batch " << key.batch << ", table width "
                           << key.table_width << " failed; those steps run eagerly: "
                           << (st.ok() ? graph.status() : st);
    }
  }
  if (e.state == State::kCaptured) {
    if (absl::Status st = e.graph->Launch(); !st.ok()) return st;
    ++graph_steps_;
    return absl::OkStatus();
  }
  if (absl::Status st = enqueue(); !st.ok()) return st;
  if (e.state == State::kCold) e.state = State::kWarm;
  return absl::OkStatus();
}

GraphCache::State GraphCache::state(GraphKey key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? State::kCold : it->second.state;
}

}  // namespace tessera::runtime::cuda
