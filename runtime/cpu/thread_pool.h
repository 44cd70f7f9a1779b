// A fixed pool of worker threads for data-parallel loops in the CPU runner.
//
// ParallelFor splits [0, n) into contiguous chunks, one per thread (the calling thread runs one),
// and returns when all are done. One loop at a time: the runner calls it from its single step
// thread. Chunks are static so results never depend on timing.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera::runtime::cpu {

class ThreadPool {
 public:
  // num_threads <= 0: std::thread::hardware_concurrency(). Total threads including the caller.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n), at most `num_threads` of them, each
  // at least `min_chunk` long (except when n is smaller).
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  // Guarded by mu_.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace tessera::runtime::cpu
