#include "streampool/batch_queue.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/fork_guard.h"
#include "core/runtime.h"
#include "ops/exit_drain.h"
#include "serve/batch_assembly.h"
#include "serve/metrics.h"
#include "serve/request_state.h"
#include "tensor/tensor_impl.h"
#include "streampool/error.h"
#include "streampool/event.h"
#include "streampool/settings.h"
#include "streampool/stream_pool.h"

namespace streampool {

using detail::Clock;
using detail::RequestState;
using Ptr = std::shared_ptr<RequestState>;

namespace detail {

// Requests that may share a batch. Within it, one Level per priority (highest first); in a
// level, requests with a deadline in a min-heap by deadline, those without in arrival order.
// Entries that were cancelled or timed out stay until they reach the front (lazy removal).
struct Lane {
  std::string key;
  bool host = true;  // requests' tensors on the host; else on `device`
  Device device;
  struct Level {
    int priority = 0;
    std::vector<Ptr> heap;  // by deadline (std::push_heap with Later)
    std::deque<Ptr> fifo;
  };
  std::vector<Level> levels;  // priority descending
  std::int64_t rows = 0;      // rows of the live (queued) requests
  std::size_t count = 0;      // live requests
};

namespace {

struct Later {
  bool operator()(const Ptr& a, const Ptr& b) const {
    return a->deadline != b->deadline ? a->deadline > b->deadline : a->seq > b->seq;
  }
};

bool live(const Ptr& r) { return r->current() == RequestStatus::queued; }

// The most urgent live request of a level (dead entries at the front are dropped).
RequestState* level_head(Lane::Level& l) {
  while (!l.heap.empty() && !live(l.heap.front())) {
    std::pop_heap(l.heap.begin(), l.heap.end(), Later());
    l.heap.pop_back();
  }
  while (!l.fifo.empty() && !live(l.fifo.front())) l.fifo.pop_front();
  if (!l.heap.empty()) return l.heap.front().get();  // a finite deadline beats none
  if (!l.fifo.empty()) return l.fifo.front().get();
  return nullptr;
}

Ptr level_pop(Lane::Level& l) {
  Ptr r;
  if (!l.heap.empty()) {
    std::pop_heap(l.heap.begin(), l.heap.end(), Later());
    r = std::move(l.heap.back());
    l.heap.pop_back();
  } else {
    r = std::move(l.fifo.front());
    l.fifo.pop_front();
  }
  return r;
}

RequestState* lane_head(Lane& lane, Lane::Level** level) {
  for (auto& l : lane.levels) {
    if (RequestState* r = level_head(l)) {
      *level = &l;
      return r;
    }
  }
  return nullptr;
}

// a more urgent than b: priority, then deadline, then arrival.
bool more_urgent(const RequestState& a, const RequestState& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  if (a.deadline != b.deadline) return a.deadline < b.deadline;
  return a.seq < b.seq;
}

// How long a worker's threads spin for each other before sleeping on a condition variable:
// STREAMPOOL_WAIT_SPIN_US, as for a BatchFuture's wait.
std::chrono::microseconds spin_time() {
  static const std::chrono::microseconds t(settings().wait_spin_us);
  return t;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

double us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}


}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------------------------

struct BatchQueue::Core : std::enable_shared_from_this<BatchQueue::Core> {
  struct WorkerSpec {
    std::shared_ptr<const nn::Module> module;
    std::shared_ptr<CompiledModule> compiled;
    Device device;
  };
  class Worker;

  BatchOptions options;
  nn::InputSpec spec;
  DType dtype = DType::float32;  // the modules' parameter dtype (x's dtype unless spec.ids)
  std::vector<WorkerSpec> specs;
  std::vector<Device> devices;  // the workers' devices, distinct
  detail::QueueCounters counters;

  std::mutex mu;                  // guards lanes, closed, reaper_target, reaper_stop, final_drained
  std::condition_variable work_cv;    // workers: a lane became non-empty, a batch filled, close
  std::condition_variable room_cv;    // blocked submitters: room in the queue, close
  std::condition_variable reaper_cv;  // the reaper: an earlier deadline, close
  std::list<detail::Lane> lanes;      // stable addresses: requests point at their lane
  // Note [BatchQueue intake]: submit never takes `mu` on its common path. It reserves a place
  // in `depth`, pushes the request onto the intake (a Treiber stack) and wakes a worker only if
  // one sleeps; workers and the reaper move the intake into the lanes under `mu`. The pushes and
  // the sleeper count are seq_cst, so a worker about to sleep sees a push or the pusher sees it.
  std::atomic<std::size_t> depth{0};           // requests accepted and not yet taken, cancelled or expired
  std::atomic<detail::RequestState*> intake{nullptr};
  std::atomic<int> sleepers{0};                // workers waiting on work_cv (counted under mu)
  bool closed = false;
  Clock::time_point reaper_target = Clock::time_point::max();
  bool reaper_stop = false;
  bool final_drained = false;  // close() has failed what the workers left: later submits fail their own

  std::vector<std::unique_ptr<Worker>> workers;
  std::thread reaper;
  std::once_flag close_once;
  std::atomic<bool> closed_flag{false};

  void start();
  BatchFuture submit(nn::Input in, const SubmitOptions& so);
  void check_request(RequestState& r) const;
  std::string lane_key(const RequestState& r) const;
  bool next_batch(const Device& worker_device, const std::atomic<int>& in_flight, detail::BatchPlan& plan);
  bool cancel(RequestState& r);
  void reap();
  void close();
  // Fails every request still waiting (QueueClosedError); `final` from close() after the workers
  // are joined, else only once close() got that far.
  void fail_leftovers(bool final);
  void expire(const Ptr& r, Clock::time_point now);
  // Removes request `r` (status queued, under mu) from its lane's counts.
  void unlink(RequestState& r) {
    r.lane->rows -= r.rows;
    --r.lane->count;
    depth.fetch_sub(1, std::memory_order_relaxed);
    r.lane = nullptr;
  }
  // Under mu: files every request of the intake into its lane, in arrival order.
  void drain_intake();
  void file(Ptr r);
  // Waits on work_cv (under `lock`) unless the intake has something; `until` bounds it.
  void sleep(std::unique_lock<std::mutex>& lock, std::optional<Clock::time_point> until) {
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (intake.load(std::memory_order_seq_cst) == nullptr) {
      if (until) work_cv.wait_until(lock, *until);
      else work_cv.wait(lock);
    }
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
  void drop_empty_lanes() {
    lanes.remove_if([](const detail::Lane& l) { return l.count == 0; });
  }
};

// A worker: a launcher thread that forms and launches batches on its own pool stream, and a
// completer thread that waits for each batch's event and fulfils its requests. They share the
// in-flight list and the slots (page-locked staging per batch in flight).
class BatchQueue::Core::Worker {
 public:
  Worker(Core& core, WorkerSpec spec) : core_(core), spec_(std::move(spec)), slots_(core.options.pipeline_depth) {
    for (auto& s : slots_) free_.push_back(&s);
  }
  ~Worker() {
    // Page-locked buffers go back to the driver; where it refuses (the process is past its CUDA
    // teardown) they are left to the operating system, never an exception out of a destructor.
    try {
      Backend* b = nullptr;
      for (auto& s : slots_) {
        for (void* p : {s.in, s.out}) {
          if (!p) continue;
          if (!b) b = &detail::device_pool(spec_.device).backend;
          b->deallocate_pinned(p);
        }
      }
    } catch (...) {
    }
  }
  void start() {
    completer_ = std::thread([this] { complete_loop(); });
    launcher_ = std::thread([this] { launch_loop(); });
  }
  std::uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }
  void join() {
    if (launcher_.joinable()) launcher_.join();
    if (completer_.joinable()) completer_.join();
  }

 private:
  using Backend = detail::Backend;
  struct Slot {
    void* in = nullptr;
    std::size_t in_cap = 0;
    void* out = nullptr;
    std::size_t out_cap = 0;
    Event done;
  };
  struct Flight {
    std::shared_ptr<detail::BatchPlan> plan;  // shared with a CPU worker's gather task
    Slot* slot = nullptr;
    nn::Output out;              // the batch output on the worker's device
    bool download = false;       // results go to the host through slot->out
    std::size_t y_off = 0, pooled_off = 0;
    Clock::time_point start;
    std::exception_ptr error;    // the launch failed: fail the batch without waiting
    bool stop = false;           // the launcher is done
  };

  static void* grow(Backend& b, void*& p, std::size_t& cap, std::size_t need) {
    if (cap >= need) return p;
    if (p) b.deallocate_pinned(p);
    p = nullptr;
    cap = 0;
    const std::size_t n = std::max<std::size_t>(need, 1 << 16);
    p = b.allocate_pinned(n);
    if (!p) throw OutOfMemoryError("BatchQueue: cannot allocate " + std::to_string(n) + " bytes of page-locked host memory");
    cap = n;
    return p;
  }
  static std::size_t align(std::size_t n) { return (n + 255) & ~std::size_t(255); }

  void launch_loop() {
    for (;;) {
      auto plan = std::make_shared<detail::BatchPlan>();
      if (!core_.next_batch(spec_.device, in_flight_, *plan)) break;
      Slot* slot = take_slot();
      Flight f;
      f.plan = std::move(plan);
      f.slot = slot;
      f.start = Clock::now();
      for (const auto& r : f.plan->reqs) core_.counters.queue_us.observe(detail::us_between(r->arrival, f.start));
      try {
        launch(f);
      } catch (...) {
        f.error = std::current_exception();
      }
      in_flight_.fetch_add(1, std::memory_order_acq_rel);
      push(std::move(f));
    }
    Flight last;
    last.stop = true;
    push(std::move(last));
  }

  void launch(Flight& f) {
    const Device dev = spec_.device;
    const Stream stream = current_stream(dev);
    const nn::InputSpec& spec = core_.spec;
    detail::BatchPlan& p = *f.plan;
    const Tensor& x0 = p.reqs.front()->in.x;
    const Shape xs = detail::batch_shape(p, spec.seq_dim);
    nn::Input batch;
    const bool cuda = dev.kind != DeviceKind::cpu;
    if (p.host) {
      Tensor x = empty(xs, x0.dtype(), dev);
      Tensor mask = p.mask ? empty({p.rows, p.len}, DType::boolean, dev) : Tensor();
      Tensor types = p.types ? empty({p.rows, p.len}, DType::int64, dev) : Tensor();
      if (cuda) {
        // Gather on this thread into page-locked memory, then one upload per tensor.
        Backend& b = detail::device_pool(dev).backend;
        const std::size_t xb = align(x.nbytes()), mb = align(mask.defined() ? mask.nbytes() : 0);
        const std::size_t tb = types.defined() ? types.nbytes() : 0;
        char* h = static_cast<char*>(grow(b, f.slot->in, f.slot->in_cap, xb + mb + tb));
        detail::gather_host(p, spec.seq_dim, h, p.mask ? reinterpret_cast<std::uint8_t*>(h + xb) : nullptr,
                            p.types ? reinterpret_cast<std::int64_t*>(h + xb + mb) : nullptr);
        detail::StreamImpl& s = detail::current_impl(dev);
        b.copy_async(x.data_ptr(), h, x.nbytes(), s);
        if (p.mask) b.copy_async(mask.data_ptr(), h + xb, mask.nbytes(), s);
        if (p.types) b.copy_async(types.data_ptr(), h + xb + mb, types.nbytes(), s);
      } else {
        // A CPU worker gathers on its own stream, in order after the work that last used the
        // blocks; the requests stay alive until the batch completes.
        void* xp = x.data_ptr();
        auto* mp = p.mask ? static_cast<std::uint8_t*>(mask.data_ptr()) : nullptr;
        auto* tp = p.types ? static_cast<std::int64_t*>(types.data_ptr()) : nullptr;
        const std::int64_t seq_dim = spec.seq_dim;
        std::shared_ptr<const detail::BatchPlan> plan = f.plan;
        stream.enqueue_host("batch_gather", [plan, seq_dim, xp, mp, tp] { detail::gather_host(*plan, seq_dim, xp, mp, tp); });
      }
      batch.x = x;
      batch.key_padding_mask = mask;
      batch.token_type_ids = types;
    } else {
      // Device-resident requests: wait for each submitter's stream, then copy on the device.
      std::vector<Stream> waited;
      for (const auto& r : p.reqs) {
        if (!r->producer || *r->producer == stream) continue;
        if (std::find(waited.begin(), waited.end(), *r->producer) != waited.end()) continue;
        waited.push_back(*r->producer);
        Event e;
        e.record(*r->producer);
        stream.wait(e);
      }
      // One gather launch per tensor (a copy per request cost a launch each), into zeros where
      // some request is shorter than the batch.
      bool short_rows = false;
      for (const auto& r : p.reqs) short_rows |= r->len < p.len;
      const std::size_t es = dtype_size(x0.dtype());
      std::int64_t inner = 1;  // elements per position along dimension 1 (padding) or per row
      for (std::int64_t d = short_rows ? 2 : 1; d < x0.dim(); ++d) inner *= x0.size(d);
      auto gather = [&](const Tensor& dst, auto&& src_of, std::size_t esize, std::int64_t per_pos) {
        std::vector<detail::GatherPiece> pieces;
        for (std::size_t i = 0; i < p.reqs.size(); ++i) {
          const RequestState& r = *p.reqs[i];
          const Tensor* src = src_of(r);
          if (!src) continue;
          const char* base = static_cast<const char*>(src->data_ptr());
          if (!short_rows) {
            const std::int64_t row_bytes = static_cast<std::int64_t>(esize) * per_pos;
            pieces.push_back({base, p.offsets[i] * row_bytes, r.rows * row_bytes});
            continue;
          }
          const std::int64_t pos = static_cast<std::int64_t>(esize) * per_pos;
          for (std::int64_t row = 0; row < r.rows; ++row) {
            pieces.push_back({base + row * r.len * pos, (p.offsets[i] + row) * p.len * pos, r.len * pos});
          }
        }
        detail::gather_bytes(dev, dst.data_ptr(), pieces);
      };
      Tensor x = short_rows ? zeros(xs, x0.dtype(), dev) : empty(xs, x0.dtype(), dev);
      const std::int64_t per_row = short_rows ? inner : x0.numel() / x0.size(0);
      gather(x, [](const RequestState& r) { return &r.in.x; }, es, per_row);
      Tensor types;
      if (p.types) {
        types = zeros({p.rows, p.len}, DType::int64, dev);
        gather(types, [](const RequestState& r) { return r.in.token_type_ids.defined() ? &r.in.token_type_ids : nullptr; },
               sizeof(std::int64_t), short_rows ? 1 : p.len);
      }
      if (p.mask) {
        std::vector<std::uint8_t> m(static_cast<std::size_t>(p.rows * p.len));
        detail::gather_mask(p, m.data());
        batch.key_padding_mask = from_host(m.data(), m.size(), {p.rows, p.len}, DType::boolean, dev);
      }
      batch.x = x;
      batch.token_type_ids = types;
    }
    f.out = spec_.compiled ? spec_.compiled->forward(batch) : spec_.module->forward(batch);
    f.download = cuda && p.reqs.front()->result_device.kind == DeviceKind::cpu;
    if (f.download) {
      Backend& b = detail::device_pool(dev).backend;
      f.out.y = f.out.y.contiguous();
      if (f.out.pooled.defined()) f.out.pooled = f.out.pooled.contiguous();
      const std::size_t yb = align(f.out.y.nbytes());
      const std::size_t pb = f.out.pooled.defined() ? f.out.pooled.nbytes() : 0;
      char* h = static_cast<char*>(grow(b, f.slot->out, f.slot->out_cap, yb + pb));
      detail::StreamImpl& s = detail::current_impl(dev);
      f.y_off = 0;
      f.pooled_off = yb;
      b.copy_async(h, f.out.y.data_ptr(), f.out.y.nbytes(), s);
      if (pb) b.copy_async(h + yb, f.out.pooled.data_ptr(), pb, s);
    }
    f.slot->done.record(stream);
  }

  void complete_loop() {
    for (;;) {
      Flight f = pop();
      if (f.stop) break;
      complete(f);
      give_slot(f.slot);
    }
  }

  // The batch's device work is over: a launcher waiting for it (continuous batching) may form
  // the next batch while this thread still fulfils the requests.
  void batch_done() {
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    {
      std::lock_guard<std::mutex> lock(core_.mu);  // a launcher waiting for this batch checked under it
    }
    core_.work_cv.notify_all();
  }

  void complete(Flight& f) {
    detail::BatchPlan& p = *f.plan;
    std::exception_ptr error = f.error;
    nn::Output out;
    if (error) {
      // The launch failed part-way: let what it enqueued finish before the inputs go.
      try {
        Stream(spec_.device, current_stream_id_.load()).synchronize();
      } catch (...) {
      }
    } else {
      try {
        f.slot->done.synchronize();
        if (f.download) {
          // Host results: one host tensor per output, filled from the page-locked copy. This
          // thread never enqueues CPU work, so its blocks have no earlier work pending.
          const char* h = static_cast<const char*>(f.slot->out);
          out.y = empty(f.out.y.shape(), f.out.y.dtype(), Device(DeviceKind::cpu));
          std::memcpy(out.y.data_ptr(), h + f.y_off, out.y.nbytes());
          if (f.out.pooled.defined()) {
            out.pooled = empty(f.out.pooled.shape(), f.out.pooled.dtype(), Device(DeviceKind::cpu));
            std::memcpy(out.pooled.data_ptr(), h + f.pooled_off, out.pooled.nbytes());
          }
        } else {
          out = f.out;
        }
      } catch (...) {
        error = std::current_exception();
        // Take the stream's pending error, so that the batches behind this one are judged by
        // their own work (each of them that saw the failure fails too: Note in batch_queue.h).
        try {
          Stream(spec_.device, current_stream_id_.load()).synchronize();
        } catch (...) {
        }
      }
    }
    if (error) {
      // A batch error that wraps the op's own exception: hand on the original.
      try {
        std::rethrow_exception(error);
      } catch (const AsyncError& e) {
        if (e.cause()) error = e.cause();
      } catch (...) {
      }
    }
    batch_done();
    const auto now = Clock::now();
    core_.counters.compute_us.observe(detail::us_between(f.start, now));
    core_.counters.batch_size.observe(static_cast<double>(p.rows));
    core_.counters.batches.fetch_add(1, std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
    std::shared_ptr<detail::BatchOutput> shared;
    if (!error) {
      shared = std::make_shared<detail::BatchOutput>();
      shared->out = std::move(out);
      shared->len = p.len;
      shared->trim = core_.spec.pad && core_.spec.seq_dim == 1;
    }
    // Counters first, so that a caller who got its result sees it counted.
    for (const auto& r : p.reqs) core_.counters.request_us.observe(detail::us_between(r->arrival, now));
    (error ? core_.counters.failed : core_.counters.completed).fetch_add(p.reqs.size(), std::memory_order_relaxed);
    for (std::size_t i = 0; i < p.reqs.size(); ++i) {
      detail::fulfil(*p.reqs[i], error ? RequestStatus::failed : RequestStatus::done, shared, p.offsets[i], error);
    }
  }

  Slot* take_slot() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    Slot* s = free_.back();
    free_.pop_back();
    if (current_stream_id_.load() == kNoStream) current_stream_id_ = current_stream(spec_.device).id();
    return s;
  }
  void give_slot(Slot* s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_.push_back(s);
    }
    cv_.notify_all();
  }
  void push(Flight f) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      flights_.push_back(std::move(f));
      pushed_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
  }
  Flight pop() {
    // The launcher pushes the next flight soon after this one completes, usually: spin briefly.
    const auto until = Clock::now() + detail::spin_time();
    for (int i = 1; pushed_.load(std::memory_order_acquire) == popped_; ++i) {
      if (i % 64 == 0 && Clock::now() >= until) break;
      detail::cpu_relax();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !flights_.empty(); });
    ++popped_;
    Flight f = std::move(flights_.front());
    flights_.pop_front();
    return f;
  }

  static constexpr std::uint32_t kNoStream = ~0u;
  Core& core_;
  const WorkerSpec spec_;
  std::vector<Slot> slots_;
  std::mutex mu_;               // guards flights_, free_
  std::condition_variable cv_;  // a flight was pushed, a slot was given back
  std::deque<Flight> flights_;  // launched, in launch order
  std::atomic<std::uint64_t> pushed_{0};  // flights pushed (the completer spins on it before sleeping)
  std::uint64_t popped_ = 0;              // the completer's own count
  std::vector<Slot*> free_;
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<int> in_flight_{0};  // batches launched and not yet completed (next_batch reads it under core_.mu)
  std::atomic<std::uint32_t> current_stream_id_{kNoStream};  // the launcher's stream, for the completer
  std::thread launcher_, completer_;
};

// ---------------------------------------------------------------------------------------------

namespace {

std::string dims_str(const std::vector<std::int64_t>& d) {
  std::string s = "(batch";
  for (auto v : d) s += ", " + (v < 0 ? std::string("any") : std::to_string(v));
  return s + ")";
}

}  // namespace

void BatchQueue::Core::check_request(RequestState& r) const {
  const nn::Input& in = r.in;
  auto bad = [&](const std::string& why) {
    throw InvalidArgument("BatchQueue::submit: " + why + (in.x.defined() ? " (x is " + in.x.str() + ")" : ""));
  };
  if (!in.x.defined()) bad("the request's x is undefined");
  const Tensor& x = in.x;
  if (x.dim() < 1) bad("x needs a batch dimension (rows along dimension 0)");
  r.rows = x.size(0);
  if (r.rows < 1) bad("x has no rows");
  if (r.rows > options.max_batch_size) {
    bad("the request has " + std::to_string(r.rows) + " rows, more than max_batch_size " +
        std::to_string(options.max_batch_size));
  }
  if (!spec.dims.empty()) {
    if (x.dim() != static_cast<std::int64_t>(spec.dims.size()) + 1) {
      bad("the module takes x of shape " + dims_str(spec.dims));
    }
    for (std::size_t d = 0; d < spec.dims.size(); ++d) {
      if (spec.dims[d] >= 0 && x.size(static_cast<std::int64_t>(d) + 1) != spec.dims[d]) {
        bad("the module takes x of shape " + dims_str(spec.dims));
      }
    }
  } else if (spec.last_dim > 0 && (x.dim() < 2 || x.size(-1) != spec.last_dim)) {
    bad("the module takes x of shape (batch, ..., " + std::to_string(spec.last_dim) + ")");
  }
  if (spec.ids) {
    if (x.dtype() != DType::int64) bad("the module takes token ids as int64");
  } else if (x.dtype() != dtype) {
    bad("the module runs in " + std::string(dtype_name(dtype)) + " and takes x in that dtype");
  }
  r.len = spec.seq_dim >= 1 ? x.size(spec.seq_dim) : 0;
  if (spec.seq_dim >= 1 && r.len < 1) bad("the sequence is empty");
  if (spec.max_len > 0 && r.len > spec.max_len) {
    bad("the sequence has " + std::to_string(r.len) + " positions, more than the module's " + std::to_string(spec.max_len));
  }
  if (!options.length_buckets.empty() && spec.pad && r.len > options.length_buckets.back()) {
    bad("the sequence has " + std::to_string(r.len) + " positions, more than the largest length bucket " +
        std::to_string(options.length_buckets.back()));
  }
  const bool host = x.device().kind == DeviceKind::cpu;
  if (!host && std::find(devices.begin(), devices.end(), x.device()) == devices.end()) {
    bad("no worker of this queue runs on " + x.device().str() + " (give host tensors, or tensors on a worker's device)");
  }
  r.result_device = options.output_device ? *options.output_device : x.device();
  // Fields: masks only where the module pads; BERT's fields only for BERT.
  const Shape mask_shape = {r.rows, r.len};
  auto field = [&](const Tensor& t, const char* name, bool taken) {
    if (!t.defined()) return;
    if (!taken) bad(std::string("the module takes no ") + name);
    if (t.shape() != mask_shape) bad(std::string(name) + " must have shape " + shape_str(mask_shape) + ", got " + t.str());
  };
  field(in.key_padding_mask, "key_padding_mask", spec.pad);
  field(in.attention_mask, "attention_mask", spec.pad && spec.ids);
  field(in.token_type_ids, "token_type_ids", spec.ids);
  if (in.key_padding_mask.defined() && in.attention_mask.defined()) bad("give attention_mask or key_padding_mask, not both");
  if (in.token_type_ids.defined()) {
    if (in.token_type_ids.dtype() != DType::int64) bad("token_type_ids must be int64");
    if (in.token_type_ids.device() != x.device()) bad("token_type_ids must be on x's device");
  }
  // Host tensors are read by the workers' host code: ready and contiguous now (one wait covers
  // both: contiguous() queues behind the work that made them). The submitter's CPU stream is
  // idle in the common case, and query() is then a quick check. Masks are read below by
  // to_float_vector, which waits for their own stream.
  if (host) {
    if (!r.in.x.is_contiguous()) r.in.x = r.in.x.contiguous();
    if (r.in.token_type_ids.defined() && !r.in.token_type_ids.is_contiguous()) r.in.token_type_ids = r.in.token_type_ids.contiguous();
    if (auto s = detail::current_stream_if_set(Device(DeviceKind::cpu)); s && !s->query()) s->synchronize();
    if (spec.id_limit > 0) {
      const auto* ids = r.in.x.data<std::int64_t>();
      for (std::int64_t i = 0; i < r.in.x.numel(); ++i) {
        if (ids[i] < 0 || ids[i] >= spec.id_limit) {
          bad("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) + " is outside [0, " +
              std::to_string(spec.id_limit) + ")");
        }
      }
    }
    if (spec.type_id_limit > 0 && r.in.token_type_ids.defined()) {
      const auto* t = r.in.token_type_ids.data<std::int64_t>();
      for (std::int64_t i = 0; i < r.in.token_type_ids.numel(); ++i) {
        if (t[i] < 0 || t[i] >= spec.type_id_limit) {
          bad("token type id " + std::to_string(t[i]) + " is outside [0, " + std::to_string(spec.type_id_limit) + ")");
        }
      }
    }
  } else {
    // The device gather copies whole rows: contiguous (on this thread's stream, which the
    // worker waits for).
    if (!r.in.x.is_contiguous()) r.in.x = r.in.x.contiguous();
    if (r.in.token_type_ids.defined() && !r.in.token_type_ids.is_contiguous()) r.in.token_type_ids = r.in.token_type_ids.contiguous();
    r.producer = current_stream(x.device());
  }
  // Masks: one host byte per position, true = padded, whatever form the request gave.
  const Tensor& m = in.key_padding_mask.defined() ? in.key_padding_mask : in.attention_mask;
  if (m.defined()) {
    std::vector<float> v = m.to_float_vector();
    const bool real_is_one = in.attention_mask.defined();
    r.padded.resize(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r.padded[i] = real_is_one ? (v[i] == 0.0f) : (v[i] != 0.0f);
    r.in.key_padding_mask = Tensor();
    r.in.attention_mask = Tensor();
  }
}

std::string BatchQueue::Core::lane_key(const RequestState& r) const {
  const Tensor& x = r.in.x;
  std::string k = x.device().kind == DeviceKind::cpu ? "h" : x.device().str();
  k += '|';
  k += dtype_name(x.dtype());
  k += '|';
  k += r.result_device.str();
  for (std::int64_t d = 1; d < x.dim(); ++d) {
    k += '|';
    if (d == spec.seq_dim && spec.pad) {
      // Padding: one lane, or one per length bucket.
      std::int64_t b = 0;
      while (b < static_cast<std::int64_t>(options.length_buckets.size()) && options.length_buckets[b] < r.len) ++b;
      k += "b" + std::to_string(b);
    } else {
      k += std::to_string(x.size(d));
    }
  }
  return k;
}

BatchFuture BatchQueue::Core::submit(nn::Input in, const SubmitOptions& so) {
  // The fork handler is installed (the modules' loading used a device): it marks every child.
  if (detail::g_in_forked_child.load(std::memory_order_relaxed)) {
    throw QueueClosedError("BatchQueue::submit: this queue belongs to the parent process (its workers do not exist in a "
                           "forked child); make a queue in the child, or start children with spawn or exec");
  }
  auto r = std::make_shared<RequestState>();
  r->in = std::move(in);
  r->arrival = Clock::now();
  r->priority = so.priority;
  if (so.deadline && so.timeout) {
    counters.rejected.fetch_add(1, std::memory_order_relaxed);
    throw InvalidArgument("BatchQueue::submit: give a deadline or a timeout, not both");
  }
  if (so.timeout && so.timeout->count() < 0) {
    counters.rejected.fetch_add(1, std::memory_order_relaxed);
    throw InvalidArgument("BatchQueue::submit: negative timeout");
  }
  // A timeout beyond the clock's range is no deadline: arrival + timeout would wrap into the
  // past and fail the request at once (a client asking for "as long as it takes").
  auto after = [&](std::chrono::microseconds t) {
    const auto room = std::chrono::duration_cast<std::chrono::microseconds>(Clock::time_point::max() - r->arrival);
    return t >= room ? Clock::time_point::max() : r->arrival + t;
  };
  if (so.deadline) r->deadline = *so.deadline;
  else if (so.timeout) r->deadline = after(*so.timeout);
  else if (options.default_timeout.count() > 0) r->deadline = after(options.default_timeout);
  try {
    check_request(*r);
  } catch (...) {
    counters.rejected.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  r->queue = weak_from_this();
  r->lane_key = lane_key(*r);
  auto closed_error = [&] {
    counters.rejected.fetch_add(1, std::memory_order_relaxed);
    return QueueClosedError("BatchQueue::submit: the queue is closed");
  };
  if (closed_flag.load(std::memory_order_acquire)) throw closed_error();
  // A place in the queue: reserved by compare-and-swap, so max_queue holds exactly.
  for (std::size_t d = depth.load(std::memory_order_relaxed);;) {
    if (options.max_queue == 0 || d < options.max_queue) {
      if (depth.compare_exchange_weak(d, d + 1, std::memory_order_relaxed)) break;
      continue;
    }
    auto full = [&](const std::string& how) {
      counters.rejected.fetch_add(1, std::memory_order_relaxed);
      return QueueFullError("BatchQueue::submit: the queue is full (" + std::to_string(options.max_queue) +
                            " requests waiting, max_queue)" + how);
    };
    if (options.full_policy == FullPolicy::reject) throw full("");
    std::unique_lock<std::mutex> lock(mu);
    auto room = [&] { return closed || depth.load(std::memory_order_relaxed) < options.max_queue; };
    if (options.full_timeout.count() > 0) {
      if (!room_cv.wait_for(lock, options.full_timeout, room)) {
        throw full(" after waiting " + std::to_string(options.full_timeout.count()) + " us for room");
      }
    } else {
      room_cv.wait(lock, room);
    }
    if (closed) throw closed_error();
    d = depth.load(std::memory_order_relaxed);
  }
  r->seq = static_cast<std::uint64_t>(r->arrival.time_since_epoch().count());  // arrival order, no shared counter
  r->intake_self = r;
  RequestState* raw = r.get();
  RequestState* head = intake.load(std::memory_order_relaxed);
  do {
    raw->intake_next = head;
  } while (!intake.compare_exchange_weak(head, raw, std::memory_order_seq_cst, std::memory_order_relaxed));
  counters.submitted.add();
  // close() may have drained the intake for the last time between the check above and the push:
  // then this request is failed here (QueueClosedError), never left waiting.
  if (closed_flag.load(std::memory_order_seq_cst)) fail_leftovers(/*final=*/false);
  if (sleepers.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu); }  // a worker between its check and its wait holds mu
    work_cv.notify_one();
  }
  if (r->deadline != Clock::time_point::max()) {
    std::lock_guard<std::mutex> lock(mu);
    if (r->deadline < reaper_target) {
      reaper_target = r->deadline;
      reaper_cv.notify_one();
    }
  }
  return BatchFuture(std::move(r));
}

void BatchQueue::Core::drain_intake() {
  RequestState* head = intake.exchange(nullptr, std::memory_order_seq_cst);
  // The stack holds the newest first: reverse it into arrival order.
  RequestState* fifo = nullptr;
  while (head) {
    RequestState* next = head->intake_next;
    head->intake_next = fifo;
    fifo = head;
    head = next;
  }
  while (fifo) {
    RequestState* next = fifo->intake_next;
    fifo->intake_next = nullptr;
    Ptr r = std::move(fifo->intake_self);
    if (detail::live(r)) file(std::move(r));  // cancelled in the intake: dropped here
    fifo = next;
  }
}

void BatchQueue::Core::file(Ptr r) {
  detail::Lane* lane = nullptr;
  for (auto& l : lanes) {
    if (l.key == r->lane_key) {
      lane = &l;
      break;
    }
  }
  if (!lane) {
    lane = &lanes.emplace_back();
    lane->key = r->lane_key;
    lane->host = r->in.x.device().kind == DeviceKind::cpu;
    lane->device = r->in.x.device();
  }
  auto lv = std::find_if(lane->levels.begin(), lane->levels.end(), [&](const auto& l) { return l.priority <= r->priority; });
  if (lv == lane->levels.end() || lv->priority != r->priority) {
    lv = lane->levels.insert(lv, detail::Lane::Level{});
    lv->priority = r->priority;
  }
  r->lane = lane;
  lane->rows += r->rows;
  ++lane->count;
  if (r->deadline != Clock::time_point::max()) {
    lv->heap.push_back(std::move(r));
    std::push_heap(lv->heap.begin(), lv->heap.end(), detail::Later());
  } else {
    lv->fifo.push_back(std::move(r));
  }
}

void BatchQueue::Core::expire(const Ptr& r, Clock::time_point now) {
  std::ostringstream m;
  m << "BatchQueue: request timed out: its deadline passed " << detail::us_between(r->deadline, now)
    << " us ago, after " << detail::us_between(r->arrival, now) << " us in the queue; it was not run";
  counters.timed_out.fetch_add(1, std::memory_order_relaxed);
  counters.request_us.observe(detail::us_between(r->arrival, now));
  detail::fulfil(*r, RequestStatus::timed_out, nullptr, 0, std::make_exception_ptr(TimeoutError(m.str())));
}

bool BatchQueue::Core::next_batch(const Device& worker_device, const std::atomic<int>& in_flight, detail::BatchPlan& plan) {
  std::vector<Ptr> expired;
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    drain_intake();
    detail::Lane* best = nullptr;
    detail::RequestState* head = nullptr;
    for (auto& lane : lanes) {
      if (lane.count == 0 || !(lane.host || lane.device == worker_device)) continue;
      detail::Lane::Level* lv = nullptr;
      detail::RequestState* h = detail::lane_head(lane, &lv);
      if (h && (!head || detail::more_urgent(*h, *head))) {
        best = &lane;
        head = h;
      }
    }
    if (!best) {
      if (closed) return false;  // a submit racing close() is failed by close() itself
      sleep(lock, std::nullopt);
      continue;
    }
    const auto now = Clock::now();
    if (!closed && options.max_delay.count() > 0 && best->rows < options.max_batch_size &&
        now < head->arrival + options.max_delay) {
      sleep(lock, head->arrival + options.max_delay);
      continue;
    }
    // Continuous batching: while this worker's last batch still runs, a new one would only
    // queue behind it on the same stream; wait until it completes (the completer notifies under
    // `mu`) or the lane fills a whole batch. Under load the batches grow instead of the count
    // of small launches.
    if (!closed && best->rows < options.max_batch_size && in_flight.load(std::memory_order_acquire) > 0) {
      // The batch in flight completes within tens of microseconds: spin for it (outside the
      // lock) before sleeping, since a futex wake-up costs about as much as a small batch.
      lock.unlock();
      const auto until = Clock::now() + detail::spin_time();
      for (int i = 1; in_flight.load(std::memory_order_acquire) > 0; ++i) {
        if (i % 64 == 0 && Clock::now() >= until) break;
        detail::cpu_relax();
      }
      lock.lock();
      if (in_flight.load(std::memory_order_acquire) > 0) sleep(lock, std::nullopt);
      continue;
    }
    plan = detail::BatchPlan();
    plan.host = best->host;
    while (best->count > 0) {
      detail::Lane::Level* lv = nullptr;
      detail::RequestState* h = detail::lane_head(*best, &lv);
      if (!h) break;
      if (h->deadline <= now) {  // expired while waiting: not run
        Ptr r = detail::level_pop(*lv);
        unlink(*r);
        r->status.store(static_cast<int>(RequestStatus::running), std::memory_order_relaxed);
        expired.push_back(std::move(r));
        continue;
      }
      if (plan.rows + h->rows > options.max_batch_size) break;
      Ptr r = detail::level_pop(*lv);
      unlink(*r);
      r->status.store(static_cast<int>(RequestStatus::running), std::memory_order_release);
      plan.offsets.push_back(plan.rows);
      plan.rows += r->rows;
      plan.len = std::max(plan.len, r->len);
      plan.types |= r->in.token_type_ids.defined();
      plan.mask |= !r->padded.empty();
      plan.reqs.push_back(std::move(r));
    }
    drop_empty_lanes();
    const bool more = depth.load(std::memory_order_relaxed) > 0 && sleepers.load() > 0;
    if (options.max_queue > 0) room_cv.notify_all();
    if (plan.reqs.empty()) {
      if (!expired.empty()) {
        lock.unlock();
        for (auto& r : expired) expire(r, now);
        expired.clear();
        lock.lock();
      }
      continue;
    }
    lock.unlock();
    if (more) work_cv.notify_one();  // the rest is for another worker
    for (auto& r : expired) expire(r, now);
    if (spec.pad && spec.seq_dim >= 1) {
      for (const auto& r : plan.reqs) plan.mask |= r->len < plan.len;
    }
    if (plan.mask && !spec.pad) plan.mask = false;
    return true;
  }
}

bool BatchQueue::Core::cancel(RequestState& r) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (r.current() != RequestStatus::queued) return false;
    if (r.lane) {
      unlink(r);
    } else {
      depth.fetch_sub(1, std::memory_order_relaxed);  // still in the intake: drain_intake drops it
    }
    r.status.store(static_cast<int>(RequestStatus::running), std::memory_order_relaxed);  // claimed
    drop_empty_lanes();
  }
  room_cv.notify_all();
  counters.cancelled.fetch_add(1, std::memory_order_relaxed);
  detail::fulfil(r, RequestStatus::cancelled, nullptr, 0, std::make_exception_ptr(CancelledError("BatchQueue: request cancelled")));
  return true;
}

void BatchQueue::Core::reap() {
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    drain_intake();
    if (reaper_stop || (closed && depth.load() == 0)) return;
    const auto now = Clock::now();
    std::vector<Ptr> expired;
    Clock::time_point next = Clock::time_point::max();
    for (auto& lane : lanes) {
      for (auto& lv : lane.levels) {
        for (;;) {
          detail::level_head(lv);  // drops dead entries at the front
          if (lv.heap.empty()) break;
          const Ptr& top = lv.heap.front();
          if (top->deadline > now) {
            next = std::min(next, top->deadline);
            break;
          }
          std::pop_heap(lv.heap.begin(), lv.heap.end(), detail::Later());
          Ptr r = std::move(lv.heap.back());
          lv.heap.pop_back();
          unlink(*r);
          r->status.store(static_cast<int>(RequestStatus::running), std::memory_order_relaxed);
          expired.push_back(std::move(r));
        }
      }
    }
    if (!expired.empty()) {
      drop_empty_lanes();
      lock.unlock();
      room_cv.notify_all();
      for (auto& r : expired) expire(r, now);
      lock.lock();
      continue;
    }
    reaper_target = next;
    if (closed) {
      // Draining: the workers take what is left; deadlines still apply.
      reaper_cv.wait_for(lock, std::chrono::milliseconds(1));
    } else if (next == Clock::time_point::max()) {
      reaper_cv.wait(lock);
    } else {
      reaper_cv.wait_until(lock, next);
    }
  }
}

void BatchQueue::Core::start() {
  for (auto& s : specs) {
    workers.push_back(std::make_unique<Worker>(*this, s));
  }
  try {
    for (auto& w : workers) w->start();
    reaper = std::thread([this] { reap(); });
  } catch (...) {
    close();
    throw;
  }
}

void BatchQueue::Core::fail_leftovers(bool final) {
  std::vector<Ptr> left;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (final) final_drained = true;
    if (!final_drained) return;  // close() has not drained yet: it will
    drain_intake();  // submits that raced close()
    for (auto& lane : lanes) {
      for (auto& lv : lane.levels) {
        for (auto& r : lv.fifo)
          if (detail::live(r)) left.push_back(r);
        for (auto& r : lv.heap)
          if (detail::live(r)) left.push_back(r);
      }
    }
    lanes.clear();
    depth.store(0);
  }
  for (auto& r : left) {
    counters.failed.fetch_add(1, std::memory_order_relaxed);
    detail::fulfil(*r, RequestStatus::failed, nullptr, 0,
                   std::make_exception_ptr(QueueClosedError("BatchQueue: closed before the request ran")));
  }
}

void BatchQueue::Core::close() {
  std::call_once(close_once, [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = true;
    }
    closed_flag.store(true, std::memory_order_seq_cst);
    work_cv.notify_all();
    room_cv.notify_all();
    reaper_cv.notify_all();
    for (auto& w : workers) w->join();
    {
      std::lock_guard<std::mutex> lock(mu);
      reaper_stop = true;  // the workers are gone: nothing the reaper waits for can change now
    }
    reaper_cv.notify_all();
    if (reaper.joinable()) reaper.join();
    // What a worker could not take (a lane no worker serves cannot exist: submit checks) is
    // failed, so that no future is left waiting.
    fail_leftovers(/*final=*/true);
  });
}

// ---------------------------------------------------------------------------------------------
// Note [Queues at exit]
// begin_exit (process_exit.h) - run by the main thread's exit sentinel before any atexit
// handler, by Python at interpreter exit, or by the caller - closes the CUDA gate, after which
// other threads' CUDA calls fail. A queue still open then (a static one is destroyed only after
// the atexit handlers) would fail every request it had accepted: on an H200 a static queue with
// 400 requests in hand lost them on every exit. So begin_exit first closes every live queue:
// it stops accepting, and its workers finish what it had accepted while CUDA still serves them.
// At most two seconds in all, so that a worker held up (a caller's callback that never
// returns) cannot hang the exit: the closing runs on a thread of its own, and what it has not
// finished by then fails as before. Not in a forked child: the parent's workers are not there.

namespace {

std::mutex live_mu;  // guards live
auto* live = new std::vector<std::weak_ptr<BatchQueue::Core>>;  // Note [Process lifetime]

void drain_live_queues() {
  if (detail::g_in_forked_child.load(std::memory_order_relaxed)) return;
  auto cores = std::make_shared<std::vector<std::shared_ptr<BatchQueue::Core>>>();
  {
    std::lock_guard<std::mutex> lock(live_mu);
    for (const auto& w : *live) {
      if (auto c = w.lock(); c && !c->closed_flag.load()) cores->push_back(std::move(c));
    }
  }
  if (cores->empty()) return;
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  try {
    std::thread([cores, done] {
      for (auto& c : *cores) {
        try {
          c->close();
        } catch (...) {
        }
      }
      cores->clear();
      done->set_value();
    }).detach();
  } catch (...) {
    return;  // no thread to be had: the queues fail what is left, as before
  }
  finished.wait_for(std::chrono::seconds(2));
}

void register_live(const std::shared_ptr<BatchQueue::Core>& core) {
  std::lock_guard<std::mutex> lock(live_mu);
  live->erase(std::remove_if(live->begin(), live->end(), [](const auto& w) { return w.expired(); }), live->end());
  live->push_back(core);
  detail::add_exit_drain(drain_live_queues);
}

}  // namespace

namespace {

std::vector<Replica> one(std::shared_ptr<const nn::Module> m, std::shared_ptr<CompiledModule> c) {
  Replica r;
  r.module = std::move(m);
  r.compiled = std::move(c);
  return {r};
}

void check_options(const BatchOptions& o) {
  auto bad = [](const std::string& why) { throw InvalidArgument("BatchQueue: " + why); };
  if (o.max_batch_size < 1 || o.max_batch_size > (1 << 20)) bad("max_batch_size must be 1 .. 1048576, got " + std::to_string(o.max_batch_size));
  if (o.max_delay.count() < 0) bad("max_delay must not be negative");
  if (o.num_workers < 1 || o.num_workers > 64) bad("num_workers must be 1 .. 64, got " + std::to_string(o.num_workers));
  if (o.full_timeout.count() < 0) bad("full_timeout must not be negative");
  if (o.default_timeout.count() < 0) bad("default_timeout must not be negative");
  if (o.pipeline_depth < 1 || o.pipeline_depth > 16) bad("pipeline_depth must be 1 .. 16, got " + std::to_string(o.pipeline_depth));
  for (std::size_t i = 0; i < o.length_buckets.size(); ++i) {
    if (o.length_buckets[i] < 1 || (i > 0 && o.length_buckets[i] <= o.length_buckets[i - 1])) {
      bad("length_buckets must be positive and ascending");
    }
  }
  if (o.output_device) check_device(*o.output_device);
}

}  // namespace

BatchQueue::BatchQueue(std::shared_ptr<const nn::Module> module, const BatchOptions& options)
    : BatchQueue(one(std::move(module), nullptr), options) {}

BatchQueue::BatchQueue(std::shared_ptr<CompiledModule> compiled, const BatchOptions& options)
    : BatchQueue(one(nullptr, std::move(compiled)), options) {}

BatchQueue::BatchQueue(std::vector<Replica> replicas, const BatchOptions& options) : core_(std::make_shared<Core>()) {
  check_options(options);
  Core& c = *core_;
  c.options = options;
  if (replicas.empty()) throw InvalidArgument("BatchQueue: no replica given");
  const nn::Module* first = nullptr;
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    Replica& r = replicas[i];
    const std::string which = "BatchQueue: replica " + std::to_string(i);
    if (!r.module && !r.compiled) throw InvalidArgument(which + " has neither a module nor a compiled module");
    const nn::Module& m = r.compiled ? r.compiled->module() : *r.module;
    if (!m.loaded()) throw InvalidArgument(which + " (" + std::string(m.name()) + ") is not loaded (load_state_dict first)");
    if (r.workers < 0 || r.workers > 64) throw InvalidArgument(which + ": workers must be 0 .. 64");
    if (!first) {
      first = &m;
      c.spec = m.input_spec();
      c.dtype = m.dtype();
      if (!c.spec.batchable) {
        throw InvalidArgument("BatchQueue: " + std::string(m.name()) + " does not batch along dimension 0 (batch_first=false?)");
      }
    } else if (m.name() != first->name() || m.dtype() != first->dtype() || m.parameters() != first->parameters()) {
      throw InvalidArgument(which + " is not the same model as replica 0 (" + std::string(m.name()) + " in " +
                            std::string(dtype_name(m.dtype())) + " against " + std::string(first->name()) + " in " +
                            std::string(dtype_name(first->dtype())) + ")");
    }
    if (options.output_device && options.output_device->kind != DeviceKind::cpu && *options.output_device != m.device()) {
      throw InvalidArgument("BatchQueue: output_device " + options.output_device->str() + " is neither the host nor " +
                            which + "'s device " + m.device().str());
    }
    std::shared_ptr<CompiledModule> compiled = r.compiled;
    if (!compiled && options.graph) {
      GraphOptions g;
      g.batch_buckets = true;
      g.max_bucket = options.max_batch_size;
      compiled = compile(r.module, g);
    }
    const int n = r.workers > 0 ? r.workers : options.num_workers;
    for (int w = 0; w < n; ++w) c.specs.push_back({r.module, compiled, m.device()});
    if (std::find(c.devices.begin(), c.devices.end(), m.device()) == c.devices.end()) c.devices.push_back(m.device());
  }
  c.start();
  register_live(core_);  // Note [Queues at exit]
}

BatchQueue::~BatchQueue() {
  try {
    close();
  } catch (...) {
  }
}

BatchFuture BatchQueue::submit(nn::Input in, const SubmitOptions& options) { return core_->submit(std::move(in), options); }

void BatchQueue::close() { core_->close(); }

bool BatchQueue::closed() const { return core_->closed_flag.load(); }

const BatchOptions& BatchQueue::options() const { return core_->options; }

BatchQueueMetrics BatchQueue::metrics() const {
  const Core& c = *core_;
  BatchQueueMetrics m;
  m.submitted = c.counters.submitted.load();
  m.rejected = c.counters.rejected.load(std::memory_order_relaxed);
  m.completed = c.counters.completed.load(std::memory_order_relaxed);
  m.failed = c.counters.failed.load(std::memory_order_relaxed);
  m.timed_out = c.counters.timed_out.load(std::memory_order_relaxed);
  m.cancelled = c.counters.cancelled.load(std::memory_order_relaxed);
  m.batches = c.counters.batches.load(std::memory_order_relaxed);
  m.queue_depth = c.depth.load(std::memory_order_relaxed);
  for (const auto& w : c.workers) m.worker_batches.push_back(w->batches());
  m.request_us = c.counters.request_us.snapshot();
  m.queue_us = c.counters.queue_us.snapshot();
  m.compute_us = c.counters.compute_us.snapshot();
  m.batch_size = c.counters.batch_size.snapshot();
  return m;
}

std::string BatchQueue::metrics_text() const { return detail::prometheus_text(metrics(), core_->options.name); }

bool BatchFuture::cancel() const {
  auto& s = const_cast<detail::RequestState&>(state());
  if (s.current() != RequestStatus::queued) return false;
  auto q = s.queue.lock();
  return q && q->cancel(s);
}

}  // namespace streampool
