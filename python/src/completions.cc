// The completion queue (Note [Python threads]).

#include <pybind11/stl.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "bindings.h"

namespace streampool::python {
namespace {

struct Queue {
  std::mutex mu;  // guards items, stopping
  std::condition_variable cv;
  std::deque<Completion> items;
  bool stopping = false;
};

Queue& queue() {
  static auto* q = new Queue;  // never destroyed: worker threads may push during interpreter exit
  return *q;
}

}  // namespace

void push_completion(Completion c) {
  Queue& q = queue();
  {
    std::lock_guard<std::mutex> lock(q.mu);
    if (q.stopping) {
      // The interpreter is going: nothing runs any more, and destroying the item here could
      // release another library's memory on this (maybe a worker) thread: leak it.
      new Completion(std::move(c));
      return;
    }
    q.items.push_back(std::move(c));
  }
  q.cv.notify_one();
}

void register_completions(py::module_& m) {
  // Blocks (GIL released) until something is queued or stop_completions() ran; runs each item's
  // wait, then returns the tokens of finished requests after running each item's `run` with the
  // GIL. An empty list with stopping set tells the completion thread to end.
  m.def("_next_completions", [] {
    auto got = std::make_unique<std::deque<Completion>>();
    bool stopping = false;
    {
      NoGil release;
      Queue& q = queue();
      std::unique_lock<std::mutex> lock(q.mu);
      q.cv.wait(lock, [&] { return !q.items.empty() || q.stopping; });
      got->swap(q.items);
      stopping = q.stopping;
      lock.unlock();
      if (stopping) {
        // Retaking the GIL may end this daemon thread (interpreter exit): nothing may be
        // released on the way out, so the items are leaked before.
        (void)got.release();
      } else {
        for (auto& c : *got) {
          if (!c.wait) continue;
          try {
            c.wait();
          } catch (const std::exception&) {
            // A failed stream's work is over; its owner sees the failure at their synchronize.
          }
        }
      }
    }
    std::vector<std::uint64_t> tokens;
    if (stopping) return tokens;
    for (auto& c : *got) {
      if (c.run) c.run();
      if (c.token) tokens.push_back(c.token);
    }
    return tokens;
  });
  m.def("_stop_completions", [] {
    Queue& q = queue();
    {
      std::lock_guard<std::mutex> lock(q.mu);
      q.stopping = true;
    }
    q.cv.notify_all();
  });
}

}  // namespace streampool::python
