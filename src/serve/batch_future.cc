#include "streampool/batch_future.h"

#include "serve/request_state.h"
#include "core/runtime.h"
#include "streampool/error.h"
#include "streampool/settings.h"

namespace streampool {

const char* to_string(RequestStatus s) {
  switch (s) {
    case RequestStatus::queued: return "queued";
    case RequestStatus::running: return "running";
    case RequestStatus::done: return "done";
    case RequestStatus::failed: return "failed";
    case RequestStatus::cancelled: return "cancelled";
    case RequestStatus::timed_out: return "timed_out";
  }
  return "?";
}

namespace detail {

void fulfil(RequestState& r, RequestStatus final_status, std::shared_ptr<const BatchOutput> batch, std::int64_t row0,
            std::exception_ptr error) {
  r.batch = std::move(batch);
  r.row0 = row0;
  r.error = std::move(error);
  r.in = nn::Input();  // the inputs' memory may go now: the batch that read them has completed
  r.status.store(static_cast<int>(final_status), std::memory_order_release);
  std::function<void()> cb;
  {
    std::lock_guard<std::mutex> lock(r.callback_mu);
    r.ready.store(1, std::memory_order_release);
    cb = std::move(r.callback);
  }
  r.ready.notify_all();
  if (cb) {
    try {
      cb();
    } catch (...) {
      // A callback's exception has nowhere to go: the request itself succeeded or failed as
      // recorded, and the queue's worker must go on.
    }
  }
}

nn::Output request_output(const RequestState& r) {
  nn::Output mine;
  auto rows = [&](const Tensor& t, bool trim) {
    Tensor v = t.slice(0, r.row0, r.row0 + r.rows);
    if (trim && v.dim() >= 2 && v.size(1) == r.batch->len && r.len < r.batch->len) v = v.slice(1, 0, r.len);
    return v;
  };
  mine.y = rows(r.batch->out.y, r.batch->trim);
  if (r.batch->out.pooled.defined()) mine.pooled = rows(r.batch->out.pooled, false);
  return mine;
}

}  // namespace detail

const detail::RequestState& BatchFuture::state() const {
  if (!state_) throw InvalidArgument("BatchFuture: invalid (default-constructed) future");
  return *state_;
}

bool BatchFuture::ready() const { return state().ready.load(std::memory_order_acquire) != 0; }

RequestStatus BatchFuture::status() const { return state().current(); }

void BatchFuture::wait() const {
  const auto& s = state();
  // Spin first (STREAMPOOL_WAIT_SPIN_US): a batch usually completes within tens of
  // microseconds, and a sleeping waiter costs the completing thread a futex wake (microseconds
  // each, one after another there).
  static const auto spin = std::chrono::microseconds(settings().wait_spin_us);
  const auto until = std::chrono::steady_clock::now() + spin;
  for (int i = 1;; ++i) {
    if (s.ready.load(std::memory_order_acquire)) return;
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  while (!s.ready.load(std::memory_order_acquire)) s.ready.wait(0, std::memory_order_acquire);
}

std::future_status BatchFuture::wait_until(std::chrono::steady_clock::time_point t) const {
  const auto& s = state();
  // std::atomic has no timed wait: sleep in growing steps up to 1 ms.
  auto step = std::chrono::microseconds(5);
  while (!s.ready.load(std::memory_order_acquire)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= t) return std::future_status::timeout;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(step, t - now));
    step = std::min(step * 2, std::chrono::microseconds(1000));
  }
  return std::future_status::ready;
}

nn::Output BatchFuture::get() const {
  wait();
  const auto& s = state();
  if (s.error) std::rethrow_exception(s.error);
  nn::Output out = detail::request_output(s);
  // The result was made on a worker's stream. Mark the calling thread's current stream (if it
  // has one) as a user, so the memory is not reused while work this thread enqueues on it
  // later still reads it (Note [Stream-ordered reuse]).
  for (const Tensor* t : {&out.y, &out.pooled}) {
    if (!t->defined()) continue;
    if (auto cur = detail::current_stream_if_set(t->device()); cur && *cur != t->allocation_stream()) {
      t->record_stream(*cur);
    }
  }
  return out;
}

void BatchFuture::on_ready(std::function<void()> callback) const {
  if (!callback) throw InvalidArgument("BatchFuture::on_ready: empty callback");
  auto& s = const_cast<detail::RequestState&>(state());
  {
    std::lock_guard<std::mutex> lock(s.callback_mu);
    if (s.callback_set) throw InvalidArgument("BatchFuture::on_ready: this request has a callback already");
    s.callback_set = true;
    if (!s.ready.load(std::memory_order_acquire)) {
      s.callback = std::move(callback);
      return;
    }
  }
  callback();
}

}  // namespace streampool
