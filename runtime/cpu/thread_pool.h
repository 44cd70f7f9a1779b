// A fixed pool of worker threads for data-parallel loops in the CPU runner.
//
// ParallelFor splits [0, n) into contiguous chunks (a few per thread) that the calling thread and
// the workers claim from a shared counter, and returns when all are done. Claiming dynamically
// matters on a shared machine: a worker that the OS has not scheduled yet does not hold the step
// up, the caller takes its chunks. Which thread runs a chunk never changes the result (every
// caller's chunk body is deterministic per index). One loop at a time: the runner calls it from
// its single step thread.
#pragma once

#include <atomic>
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

  // Calls fn(begin, end) over disjoint contiguous chunks covering [0, n), each at least
  // `min_chunk` long (except the last), at most 4 per thread.
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  // Claims and runs chunks of the current loop until none is left.
  void RunChunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n, int64_t chunk,
                 int64_t num_chunks);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  // The current loop. fn_ is null between loops (a worker that wakes late then does nothing).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;  // Guarded by mu_.
  int64_t n_ = 0, chunk_ = 0, num_chunks_ = 0;                 // Guarded by mu_.
  uint64_t generation_ = 0;                                    // Guarded by mu_.
  int in_flight_ = 0;  // Workers inside the current loop. Guarded by mu_.
  bool stop_ = false;  // Guarded by mu_.
  std::atomic<int64_t> next_chunk_{0};
};

}  // namespace tessera::runtime::cpu
