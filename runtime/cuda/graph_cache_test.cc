// The graph cache's state machine with a fake capturer that records what was captured and
// launched (no GPU: the runner's real capturer records a CUDA stream).
#include "runtime/cuda/graph_cache.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::runtime::cuda {
namespace {

// Records events in order: "eager", "begin", "enqueue-captured", "end", "launch:<id>", "clear".
struct Log {
  std::vector<std::string> events;
  bool capturing = false;
  int next_graph = 0;
};

class FakeGraph : public CapturedGraph {
 public:
  FakeGraph(Log* log, int id, bool fail_launch) : log_(log), id_(id), fail_(fail_launch) {}
  absl::Status Launch() override {
    log_->events.push_back("launch:" + std::to_string(id_));
    return fail_ ? absl::InternalError("launch failed") : absl::OkStatus();
  }

 private:
  Log* log_;
  int id_;
  bool fail_;
};

class FakeCapturer : public GraphCapturer {
 public:
  explicit FakeCapturer(Log* log) : log_(log) {}
  absl::Status Begin() override {
    log_->events.push_back("begin");
    if (fail_begin) return absl::UnimplementedError("no graphs");
    log_->capturing = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<CapturedGraph>> End() override {
    log_->events.push_back("end");
    log_->capturing = false;
    if (fail_end) return absl::InternalError("instantiate failed");
    return std::unique_ptr<CapturedGraph>(new FakeGraph(log_, log_->next_graph++, fail_launch));
  }
  void ClearError() override { log_->events.push_back("clear"); }

  bool fail_begin = false, fail_end = false, fail_launch = false;

 private:
  Log* log_;
};

class GraphCacheTest : public ::testing::Test {
 protected:
  // The step's work: "eager" when run, "captured" when recorded into a graph.
  absl::Status Enqueue() {
    log_.events.push_back(log_.capturing ? "captured" : "eager");
    return enqueue_status_;
  }
  std::vector<std::string> Take() { return std::exchange(log_.events, {}); }

  Log log_;
  FakeCapturer capturer_{&log_};
  GraphCache cache_{&capturer_};
  absl::Status enqueue_status_;
};

using Events = std::vector<std::string>;

TEST_F(GraphCacheTest, EagerOnceThenCaptureThenReplay) {
  const GraphKey key{4, 16};
  EXPECT_EQ(cache_.state(key), GraphCache::State::kCold);
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"eager"}));
  EXPECT_EQ(cache_.state(key), GraphCache::State::kWarm);
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"begin", "captured", "end", "launch:0"}));
  EXPECT_EQ(cache_.state(key), GraphCache::State::kCaptured);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"launch:0", "launch:0", "launch:0"}));
  EXPECT_EQ(cache_.graph_steps(), 4u);
}

TEST_F(GraphCacheTest, KeysAreIndependent) {
  const GraphKey a{4, 16}, b{4, 32}, c{8, 16};
  for (GraphKey k : {a, b, a, c, a, b}) ASSERT_TRUE(cache_.Run(k, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"eager", "eager", "begin", "captured", "end", "launch:0", "eager",
                            "launch:0", "begin", "captured", "end", "launch:1"}));
  EXPECT_EQ(cache_.state(c), GraphCache::State::kWarm);
}

TEST_F(GraphCacheTest, AFailedCaptureRunsThatKeyEagerlyForever) {
  const GraphKey key{2, 16}, other{1, 16};
  capturer_.fail_end = true;
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  // The capture fails: not an error; the error is cleared and the same step runs eagerly.
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"eager", "begin", "captured", "end", "clear", "eager"}));
  EXPECT_EQ(cache_.state(key), GraphCache::State::kEager);
  capturer_.fail_end = false;  // Even when capture would work now, the key stays eager.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"eager", "eager"}));
  EXPECT_EQ(cache_.graph_steps(), 0u);
  // Another key still captures.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(cache_.Run(other, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"eager", "begin", "captured", "end", "launch:0"}));
}

TEST_F(GraphCacheTest, ABeginThatFailsIsAFailedCapture) {
  const GraphKey key{1, 16};
  capturer_.fail_begin = true;
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(Take(), Events({"eager", "begin", "clear", "eager"}));
  EXPECT_EQ(cache_.state(key), GraphCache::State::kEager);
}

TEST_F(GraphCacheTest, EnqueueErrorsAreReturned) {
  const GraphKey key{1, 16};
  enqueue_status_ = absl::InvalidArgumentError("bad step");
  // Cold: the eager run's error comes back and the key stays cold.
  EXPECT_EQ(cache_.Run(key, [&] { return Enqueue(); }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_.state(key), GraphCache::State::kCold);
  enqueue_status_ = absl::OkStatus();
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  // Warm: an error while capturing ends the capture, the key turns eager and the eager run's
  // error comes back.
  enqueue_status_ = absl::InvalidArgumentError("bad step");
  Take();
  EXPECT_EQ(cache_.Run(key, [&] { return Enqueue(); }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Take(), Events({"begin", "captured", "end", "clear", "eager"}));
  EXPECT_EQ(cache_.state(key), GraphCache::State::kEager);
}

TEST_F(GraphCacheTest, LaunchErrorsAreReturned) {
  const GraphKey key{1, 16};
  capturer_.fail_launch = true;
  ASSERT_TRUE(cache_.Run(key, [&] { return Enqueue(); }).ok());
  EXPECT_EQ(cache_.Run(key, [&] { return Enqueue(); }).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(cache_.graph_steps(), 0u);
}

}  // namespace
}  // namespace tessera::runtime::cuda
