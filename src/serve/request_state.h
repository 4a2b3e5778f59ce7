#pragma once
// One BatchQueue request: what the caller gave, where it waits, and its result. Internal.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "streampool/batch_future.h"
#include "streampool/batch_queue.h"

namespace streampool::detail {

using Clock = std::chrono::steady_clock;

struct Lane;

// One batch's result as the requests share it.
struct BatchOutput {
  nn::Output out;
  std::int64_t len = 0;  // the batch's padded length; rows shorter than it are trimmed back in get()
  bool trim = false;
};

struct RequestState {
  // ---- written by submit() before the request is published, then read-only ----
  nn::Input in;                       // released when the request completes
  std::int64_t rows = 0, len = 0;     // len: along the spec's seq_dim (0 without one)
  std::optional<Stream> producer;     // the submitter's stream of a device-resident x
  std::vector<std::uint8_t> padded;   // host copy of the request's mask (true = padded), rows * len; empty: none
  Device result_device;
  Clock::time_point arrival;
  Clock::time_point deadline = Clock::time_point::max();
  int priority = 0;
  std::uint64_t seq = 0;               // arrival order (the arrival time in clock ticks)
  std::weak_ptr<BatchQueue::Core> queue;  // cancel() reaches the queue through it

  std::string lane_key;               // which lane it joins (BatchQueue::Core::lane_key)

  // ---- the intake (a lock-free stack submit pushes onto; a worker or the reaper moves the
  // requests into their lanes under the queue's mutex) ----
  RequestState* intake_next = nullptr;
  std::shared_ptr<RequestState> intake_self;  // the intake's reference, moved into the lane

  // ---- guarded by the queue's mutex while `status` is queued ----
  Lane* lane = nullptr;  // null while in the intake

  // status: queued -> running (a worker took it, under the queue's mutex) -> done | failed;
  // queued -> cancelled | timed_out (under the queue's mutex). Terminal states are set by
  // fulfil() only, after the result or the error is written.
  std::atomic<int> status{static_cast<int>(RequestStatus::queued)};
  std::atomic<std::uint32_t> ready{0};  // 1 once the outcome is written (release)
  // The outcome, written once before `ready`: the batch's output and this request's place in it
  // (get() makes the views on the caller's thread, so the completing thread does not), or the error.
  std::shared_ptr<const BatchOutput> batch;
  std::int64_t row0 = 0;
  std::exception_ptr error;

  std::mutex callback_mu;  // guards callback, callback_set and the ready transition for on_ready
  std::function<void()> callback;
  bool callback_set = false;

  RequestStatus current() const { return static_cast<RequestStatus>(status.load(std::memory_order_acquire)); }
};

// Sets the outcome, wakes waiters, runs the callback. Once per request.
void fulfil(RequestState& r, RequestStatus final_status, std::shared_ptr<const BatchOutput> batch, std::int64_t row0,
            std::exception_ptr error);
// The request's rows of its batch's output (views).
nn::Output request_output(const RequestState& r);

}  // namespace streampool::detail
