// The CPU intra-op pool (parallel.h).

#include "ops/cpu/parallel.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "backend/cpu/cpu_load.h"
#include "streampool/settings.h"

namespace streampool::detail::cpu {
namespace {

// Note [CPU intra-op pool]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// An op is split into chunks by its shape and STREAMPOOL_CPU_THREADS alone (chunks_for), so a
// chunk computes the same values whichever thread runs it and however many run: results stay
// bitwise equal under any load. Who runs them depends on the load: the calling stream's thread
// runs chunks itself, and wakes a helper per other chunk only while fewer CPU stream tasks run
// than the process has cores (cpu_tasks_running, the CPU backend's count): with every core
// busy with its own stream, an op runs on its own thread alone instead of oversubscribing the
// cores (libtorch's intra-op threads fall below one thread's figure at two request threads).
// The pool has STREAMPOOL_CPU_THREADS - 1 helpers (at most cores - 1), started at the first
// split op and never destroyed (Note [Process lifetime]): at exit they sleep in wait(), and the
// CPU exit gate waits for the task that owns any chunk they run.
//
// Shared state: Pool::mu_ guards jobs_ and idle_; a Job's next/done/refs are atomics, its error
// is guarded by its error_mu. A helper takes a job (refs + 1) under mu_; the caller takes the
// job off jobs_ under mu_ once no chunk is left to claim, then waits until refs is 0, so no
// helper touches the job (on the caller's stack) after the caller returns.

struct Job {
  const std::function<void(std::int64_t, std::int64_t)>* fn = nullptr;
  std::int64_t n = 0, align = 1;
  int chunks = 0;
  std::atomic<int> next{0};
  std::atomic<int> refs{0};
  std::mutex error_mu;  // guards error
  std::exception_ptr error;

  std::int64_t bound(int c) const {
    if (c >= chunks) return n;
    const std::int64_t units = (n + align - 1) / align;
    return std::min(n, units * c / chunks * align);
  }
  // Claims and runs chunks until none is left.
  void drain() {
    for (int c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      try {
        const std::int64_t b = bound(c), e = bound(c + 1);
        if (b < e) (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  }
};

int process_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

class Pool {
 public:
  explicit Pool(int helpers) : cores_(process_cores()) {
    for (int i = 0; i < helpers; ++i) std::thread([this] { loop(); }).detach();
  }

  void run(Job& job) {
    int wake = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(&job);
      // Cores not busy with a stream task of their own (this task counts itself).
      const int free_cores = cores_ - std::max(1, cpu_tasks_running());
      wake = std::min({job.chunks - 1, idle_, std::max(0, free_cores)});
    }
    for (int i = 0; i < wake; ++i) cv_.notify_one();
    job.drain();
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.erase(std::find(jobs_.begin(), jobs_.end(), &job));
    }
    // Helpers still running a chunk they claimed: short waits, then yield.
    for (int spins = 0; job.refs.load(std::memory_order_acquire) > 0; ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }

 private:
  void loop() {
    for (;;) {
      Job* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ++idle_;
        cv_.wait(lock, [&] { return (job = claimable()) != nullptr; });
        --idle_;
        job->refs.fetch_add(1, std::memory_order_relaxed);  // under mu_: the caller cannot leave yet
      }
      job->drain();
      job->refs.fetch_sub(1, std::memory_order_release);
    }
  }

  // The oldest job with a chunk left to claim (mu_ held).
  Job* claimable() const {
    for (Job* j : jobs_)
      if (j->next.load(std::memory_order_relaxed) < j->chunks) return j;
    return nullptr;
  }

  const int cores_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> jobs_;  // guarded by mu_
  int idle_ = 0;           // guarded by mu_: helpers waiting for a job
};

Pool& pool() {
  static Pool* p = new Pool(std::min(settings().cpu_threads, process_cores()) - 1);  // Note [Process lifetime]
  return *p;
}

}  // namespace

int chunks_for(std::int64_t work, std::int64_t min_per_chunk) {
  const int threads = settings().cpu_threads;
  if (threads <= 1 || work < 2 * min_per_chunk) return 1;
  return static_cast<int>(std::min<std::int64_t>(threads, work / min_per_chunk));
}

void parallel_for(std::int64_t n, int chunks, std::int64_t align,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  align = std::max<std::int64_t>(align, 1);
  chunks = static_cast<int>(std::min<std::int64_t>(chunks, (n + align - 1) / align));
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  job.align = align;
  job.chunks = chunks;
  pool().run(job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace streampool::detail::cpu
