// The CUDA runner's decode graphs, keyed by (padded batch, block-table width), and their capture
// state machine:
//
//   first step of a key   -> runs eagerly (which also fills cuBLASLt's plan cache for its shapes);
//   second step           -> captured, then launched;
//   later steps           -> the captured graph is replayed;
//   a failed capture      -> logged once; that key runs eagerly from then on (this step included).
//
// The capture itself goes through GraphCapturer, so the machine is tested without a GPU
// (graph_cache_test.cc); the runner's capturer records the step's stream (stream.h's Graph).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera::runtime::cuda {

// An instantiated graph.
class CapturedGraph {
 public:
  virtual ~CapturedGraph() = default;
  virtual absl::Status Launch() = 0;
};

// Records the work enqueued between Begin and End into a graph.
class GraphCapturer {
 public:
  virtual ~GraphCapturer() = default;
  virtual absl::Status Begin() = 0;
  // Ends the capture begun by Begin, whatever happened in between.
  virtual absl::StatusOr<std::unique_ptr<CapturedGraph>> End() = 0;
  // Clears the error a failed capture left (so that it does not fail the next launch check).
  virtual void ClearError() = 0;
};

struct GraphKey {
  int32_t batch = 0;
  int32_t table_width = 0;
  bool operator<(const GraphKey& o) const {
    return std::make_pair(batch, table_width) < std::make_pair(o.batch, o.table_width);
  }
};

class GraphCache {
 public:
  enum class State { kCold, kWarm, kCaptured, kEager };

  explicit GraphCache(GraphCapturer* capturer) : capturer_(capturer) {}

  // Runs one step of `key`: `enqueue` queues the step's work (no host synchronisation, no
  // allocation: it may be captured). An error of `enqueue` or of a launch is returned; a failed
  // capture is not an error (the step then runs eagerly).
  absl::Status Run(GraphKey key, absl::FunctionRef<absl::Status()> enqueue);

  State state(GraphKey key) const;
  // Steps run by launching a captured graph.
  uint64_t graph_steps() const { return graph_steps_; }

 private:
  struct Entry {
    State state = State::kCold;
    std::unique_ptr<CapturedGraph> graph;
  };
  GraphCapturer* capturer_;
  std::map<GraphKey, Entry> entries_;
  uint64_t graph_steps_ = 0;
};

}  // namespace tessera::runtime::cuda
