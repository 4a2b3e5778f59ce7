// The completion queue (Note [Python threads]).

#include <pybind11/stl.h>

#include <condition_variable>
#include <deque>
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
    if (q.stopping) return;  // the interpreter is going: what is left leaks, nothing runs
    q.items.push_back(std::move(c));
  }
  q.cv.notify_one();
}

void register_completions(py::module_& m) {
  // Blocks (GIL released) until something is queued or stop_completions() ran; runs each item's
  // wait, then returns the tokens of finished requests after running each item's `run` with the
  // GIL. An empty list with stopping set tells the completion thread to end.
  m.def("_next_completions", [] {
    std::deque<Completion> got;
    {
      NoGil release;
      Queue& q = queue();
      std::unique_lock<std::mutex> lock(q.mu);
      q.cv.wait(lock, [&] { return !q.items.empty() || q.stopping; });
      got.swap(q.items);
      lock.unlock();
      for (auto& c : got) {
        if (!c.wait) continue;
        try {
          c.wait();
        } catch (const std::exception&) {
          // A failed stream's work is over; its owner sees the failure at their synchronize.
        }
      }
    }
    std::vector<std::uint64_t> tokens;
    for (auto& c : got) {
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
