#include "runtime/cpu/thread_pool.h"

#include <algorithm>

namespace tessera::runtime::cpu {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads_ = std::max(1, num_threads);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunChunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n,
                           int64_t chunk, int64_t num_chunks) {
  while (true) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= num_chunks) return;
    fn(c * chunk, std::min(n, (c + 1) * chunk));
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int64_t, int64_t)>* fn;
    int64_t n, chunk, num_chunks;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (fn_ == nullptr) continue;  // Woke after the loop finished without us.
      fn = fn_;
      n = n_;
      chunk = chunk_;
      num_chunks = num_chunks_;
      ++in_flight_;
    }
    RunChunks(*fn, n, chunk, num_chunks);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--in_flight_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t max_chunks = std::min<int64_t>(4 * num_threads_, (n + min_chunk - 1) / min_chunk);
  if (num_threads_ == 1 || max_chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + max_chunks - 1) / max_chunks;
  const int64_t num_chunks = (n + chunk - 1) / chunk;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    num_chunks_ = num_chunks;
    next_chunk_.store(0, std::memory_order_relaxed);
    ++generation_;
  }
  work_cv_.notify_all();
  RunChunks(fn, n, chunk, num_chunks);
  // Every chunk is claimed; wait for the workers still running one, and close the loop so that a
  // worker waking later does not touch `fn`.
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return in_flight_ == 0; });
  fn_ = nullptr;
}

}  // namespace tessera::runtime::cpu
