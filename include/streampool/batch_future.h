#pragma once
// BatchFuture: the result of one BatchQueue request (batch_queue.h).
//
// It has std::future's waiting calls (get, wait, wait_for, wait_until, valid), and what a server
// waiting on many requests needs besides: ready() without blocking, on_ready() callbacks, and
// cancel(). Copies share one result (like std::shared_future); get() may be called any number
// of times, from any thread. Waiting blocks on the request's own flag: no lock shared with other
// requests, no device synchronize.

#include <chrono>
#include <functional>
#include <future>
#include <memory>

#include "streampool/nn/module.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

namespace detail {
struct RequestState;
}

enum class RequestStatus {
  queued,     // waiting in the queue
  running,    // taken into a batch
  done,       // result ready
  failed,     // its batch failed (get() rethrows that exception)
  cancelled,  // cancel() removed it before it ran (get() throws CancelledError)
  timed_out,  // its deadline passed before it ran; it was not run (get() throws TimeoutError)
};
const char* to_string(RequestStatus s);

class BatchFuture {
 public:
  BatchFuture() = default;  // invalid: every call but valid() throws InvalidArgument
  explicit BatchFuture(std::shared_ptr<detail::RequestState> state) : state_(std::move(state)) {}

  bool valid() const { return state_ != nullptr; }
  // True once the result or the error is set; never blocks.
  bool ready() const;
  RequestStatus status() const;

  // The request's rows of the batch output: views (y, and pooled where the module has it) of one
  // batch result, complete when get() returns. Throws the request's error: its batch's exception
  // with its original type, TimeoutError, CancelledError, or QueueClosedError.
  nn::Output get() const;
  void wait() const;
  template <typename Rep, typename Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& d) const {
    return wait_until(std::chrono::steady_clock::now() + d);
  }
  std::future_status wait_until(std::chrono::steady_clock::time_point t) const;

  // Runs `callback` once the future is ready: on the queue's thread that completes the request
  // (keep it short; it must not wait for this queue), or at once on this thread if it is ready
  // already. At most one callback per request; a second throws InvalidArgument.
  void on_ready(std::function<void()> callback) const;

  // Removes the request if it has not started: true, and get() then throws CancelledError.
  // False if it is already running or finished (it then completes as usual).
  bool cancel() const;

 private:
  const detail::RequestState& state() const;
  std::shared_ptr<detail::RequestState> state_;
};

}  // namespace streampool
STREAMPOOL_API_END
