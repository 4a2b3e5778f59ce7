#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>

#include "core/fork_guard.h"
#include "core/runtime.h"
#include "streampool/error.h"
#include "streampool/event.h"
#include "streampool/settings.h"
#include "streampool/stream_guard.h"

namespace streampool {
namespace detail {

DevicePool::DevicePool(const Device& d, int streams, Backend& b)
    : device(d),
      size(streams),
      backend(b),
      slots_(new Slot[streams]),
      capture_slots_(new Slot[kCaptureStreams]),
      leased_(streams, false),
      capture_leased_(kCaptureStreams, false) {}

StreamImpl& DevicePool::impl(std::uint32_t id) {
  if (id >= static_cast<std::uint32_t>(size + kCaptureStreams)) {
    throw InvalidArgument("stream id " + std::to_string(id) + " out of range for " + device.str() +
                          ", which has " + std::to_string(size) + " streams");
  }
  Slot& slot = id < static_cast<std::uint32_t>(size) ? slots_[id] : capture_slots_[id - size];
  if (StreamImpl* p = slot.impl.load(std::memory_order_acquire)) return *p;
  // A failed creation (a CUDA error) throws out of call_once, leaving the slot to retry.
  std::call_once(slot.once, [&] {
    slot.impl.store(backend.create_stream(Stream(device, id)).release(), std::memory_order_release);
  });
  return *slot.impl.load(std::memory_order_acquire);
}

StreamImpl* DevicePool::created(std::uint32_t id) const {
  return slots_[id].impl.load(std::memory_order_acquire);
}

std::uint32_t DevicePool::acquire_capture_stream() {
  std::lock_guard<std::mutex> lock(lease_mu_);
  for (int i = 0; i < kCaptureStreams; ++i) {
    if (!capture_leased_[i]) {
      capture_leased_[i] = true;
      return static_cast<std::uint32_t>(size + i);
    }
  }
  throw Error("graph: more than " + std::to_string(kCaptureStreams) + " captures at once on " + device.str());
}

void DevicePool::release_capture_stream(std::uint32_t id) {
  std::lock_guard<std::mutex> lock(lease_mu_);
  capture_leased_[id - static_cast<std::uint32_t>(size)] = false;
}

std::uint32_t DevicePool::next_round_robin() {
  if (size == 1) return 0;
  return 1 + round_robin_.fetch_add(1, std::memory_order_relaxed) % static_cast<std::uint32_t>(size - 1);
}

std::uint32_t DevicePool::acquire(const PoolExhaustedSetting& policy, bool& leased) {
  leased = false;
  auto exhausted = [&](const char* why) {
    std::ostringstream msg;
    msg << "no free pool stream on " << device.str() << ": " << why << " (STREAMPOOL_POOL_EXHAUSTED="
        << to_string(policy) << ", STREAMPOOL_STREAMS_PER_DEVICE=" << size
        << "); raise the stream count, use fewer device threads, or choose 'share' or 'wait'";
    return PoolExhaustedError(msg.str());
  };
  if (size == 1) {
    if (policy.policy == ExhaustedPolicy::share) return 0;
    throw exhausted("the device has no pool streams");
  }
  std::unique_lock<std::mutex> lock(lease_mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<std::int64_t>(policy.wait_ms, 0));
  for (;;) {
    for (int id = 1; id < size; ++id) {
      if (!leased_[id]) {
        leased_[id] = true;
        ++leased_count_;
        leased = true;
        return static_cast<std::uint32_t>(id);
      }
    }
    switch (policy.policy) {
      case ExhaustedPolicy::share:
        lock.unlock();
        return next_round_robin();
      case ExhaustedPolicy::error:
        throw exhausted("all pool streams are leased by live threads");
      case ExhaustedPolicy::wait:
        if (policy.wait_ms < 0) {
          lease_cv_.wait(lock);
        } else if (lease_cv_.wait_until(lock, deadline) == std::cv_status::timeout &&
                   leased_count_ == size - 1) {
          throw exhausted("timed out waiting for a pool stream");
        }
        break;
    }
  }
}

void DevicePool::release(std::uint32_t id) {
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    if (id == 0 || id >= static_cast<std::uint32_t>(size) || !leased_[id]) return;
    leased_[id] = false;
    --leased_count_;
  }
  lease_cv_.notify_one();
}

int DevicePool::leased_count() const {
  std::lock_guard<std::mutex> lock(lease_mu_);
  return leased_count_;
}

namespace {

// Devices of each kind, counted once per kind.
struct KindCount {
  std::once_flag once;
  int count = 0;  // written once under `once`
};

KindCount& kind_count(DeviceKind kind) {
  // Never destroyed: Note [Process lifetime].
  static KindCount* all = new KindCount[kNumDeviceKinds];
  return all[static_cast<int>(kind)];
}

PerDevice<DevicePool>& pools() {
  static auto* p = new PerDevice<DevicePool>;  // Note [Process lifetime]
  return *p;
}

}  // namespace

DevicePool& device_pool(const Device& device) {
  check_not_forked();
  if (static_cast<int>(device.kind) >= kNumDeviceKinds) throw InvalidArgument("invalid device kind");
  KindCount& kc = kind_count(device.kind);
  std::call_once(kc.once, [&] {
    Backend& b = backend(device.kind);
    (void)settings();  // surface a bad STREAMPOOL_* value before any state is built
    install_fork_handler();
    kc.count = std::min(b.device_count(), kMaxDevicesPerKind);
  });
  if (device.index < 0 || device.index >= kc.count) {
    throw DeviceError("device " + device.str() + " does not exist: " + std::to_string(kc.count) + " " +
                      std::string(to_string(device.kind)) + " device(s) visible");
  }
  return pools().get(device, [&] { return new DevicePool(device, settings().streams_per_device, backend(device.kind)); });
}

StreamImpl& stream_impl(const Stream& stream) { return device_pool(stream.device()).impl(stream.id()); }

// ---- the calling thread's streams ----

namespace {

struct ThreadDeviceState {
  std::int32_t assigned = -1;  // stream this thread uses by default on the device, -1 none yet
  std::int32_t override_id = -1;  // set_current_stream / StreamGuard, -1 none
  bool leased = false;         // `assigned` is an exclusive lease to return at exit
};

// Trivially destructible, so it stays readable while other thread_locals are torn down.
thread_local ThreadDeviceState tls_state[kNumDeviceKinds][kMaxDevicesPerKind];
thread_local bool tls_exiting = false;

void release_all_leases() {
  for (int k = 0; k < kNumDeviceKinds; ++k) {
    for (int i = 0; i < kMaxDevicesPerKind; ++i) {
      ThreadDeviceState& st = tls_state[k][i];
      if (st.leased) {
        // The pool exists: this thread leased from it.
        pools().find(Device(static_cast<DeviceKind>(k), i))->release(st.assigned);
      }
      st.assigned = -1;
      st.leased = false;
    }
  }
}

// Returns the thread's leases when it exits. Armed at the first lease.
struct ThreadExitHook {
  void arm() {}
  ~ThreadExitHook() {
    tls_exiting = true;
    // In a forked child the pools' locks may be held by threads that did not survive fork.
    if (!g_in_forked_child.load(std::memory_order_relaxed)) release_all_leases();
  }
};
thread_local ThreadExitHook tls_exit_hook;

// Two system calls, so the answer is kept per thread (a thread's id never changes; a forked
// child refuses device use before it gets here).
bool is_main_thread() {
  thread_local const bool main = static_cast<pid_t>(::syscall(SYS_gettid)) == ::getpid();
  return main;
}

ThreadDeviceState& state_for(const Device& device) {
  return tls_state[static_cast<int>(device.kind)][device.index];
}

Stream assign_stream(DevicePool& pool, ThreadDeviceState& st) {
  if (is_main_thread()) {
    st.assigned = 0;
  } else if (tls_exiting) {
    // Device use from a thread_local destructor: no lease can be returned any more, so share.
    return Stream(pool.device, pool.next_round_robin());
  } else {
    bool leased = false;
    st.assigned = static_cast<std::int32_t>(pool.acquire(pool_exhausted_policy(), leased));
    st.leased = leased;
    if (leased) tls_exit_hook.arm();
  }
  return Stream(pool.device, static_cast<std::uint32_t>(st.assigned));
}

std::mutex policy_mu;               // guards policy_override, policy_overridden
PoolExhaustedSetting policy_override;
bool policy_overridden = false;

}  // namespace
}  // namespace detail

using namespace detail;

detail::CaptureStreamScope::CaptureStreamScope(const Device& device)
    : pool_(device_pool(device)), id_(pool_.acquire_capture_stream()), previous_override_(state_for(device).override_id) {
  try {
    impl_ = &pool_.impl(id_);
  } catch (...) {
    pool_.release_capture_stream(id_);
    throw;
  }
  state_for(device).override_id = static_cast<std::int32_t>(id_);
}

detail::CaptureStreamScope::~CaptureStreamScope() {
  state_for(pool_.device).override_id = previous_override_;
  pool_.release_capture_stream(id_);
}

std::optional<Stream> detail::current_stream_if_set(const Device& device) {
  if (device.index < 0 || device.index >= kMaxDevicesPerKind) return std::nullopt;
  const ThreadDeviceState& st = state_for(device);
  if (st.override_id >= 0) return Stream(device, static_cast<std::uint32_t>(st.override_id));
  if (st.assigned >= 0) return Stream(device, static_cast<std::uint32_t>(st.assigned));
  if (is_main_thread()) return Stream(device, 0);
  return std::nullopt;
}

Stream current_stream(const Device& device) {
  DevicePool& pool = device_pool(device);
  ThreadDeviceState& st = state_for(device);
  if (st.override_id >= 0) return Stream(device, static_cast<std::uint32_t>(st.override_id));
  if (st.assigned >= 0) return Stream(device, static_cast<std::uint32_t>(st.assigned));
  return assign_stream(pool, st);
}

void set_current_stream(const Stream& stream) {
  DevicePool& pool = device_pool(stream.device());
  if (stream.id() >= static_cast<std::uint32_t>(pool.size)) {
    throw InvalidArgument("set_current_stream: " + stream.str() + " does not exist (" +
                          std::to_string(pool.size) + " streams per device)");
  }
  state_for(stream.device()).override_id = static_cast<std::int32_t>(stream.id());
}

Stream stream_from_pool(const Device& device) {
  DevicePool& pool = device_pool(device);
  return Stream(device, pool.next_round_robin());
}

Stream default_stream(const Device& device) {
  (void)device_pool(device);
  return Stream(device, 0);
}

void release_current_thread_stream() {
  check_not_forked();
  release_all_leases();
}

int streams_per_device() { return settings().streams_per_device; }

int leased_stream_count(const Device& device) { return device_pool(device).leased_count(); }

PoolExhaustedSetting pool_exhausted_policy() {
  std::lock_guard<std::mutex> lock(policy_mu);
  return policy_overridden ? policy_override : settings().pool_exhausted;
}

void set_pool_exhausted_policy(PoolExhaustedSetting setting) {
  if (setting.policy != ExhaustedPolicy::wait) setting.wait_ms = -1;
  std::lock_guard<std::mutex> lock(policy_mu);
  policy_override = setting;
  policy_overridden = true;
}

void synchronize(const Device& device) {
  DevicePool& pool = device_pool(device);
  // Record a point on every stream first, then wait: work submitted after the call is never
  // waited for, and no submitter is blocked (recording takes only each stream's own queue lock).
  std::vector<std::unique_ptr<EventImpl>> points;
  for (int id = 0; id < pool.size; ++id) {
    if (StreamImpl* s = pool.created(static_cast<std::uint32_t>(id))) {
      points.push_back(pool.backend.create_event(device, false));
      points.back()->record(*s);
    }
  }
  std::exception_ptr first;
  for (auto& p : points) {
    try {
      p->synchronize();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

StreamGuard::StreamGuard(const Stream& stream)
    : original_(current_stream(stream.device())), current_(stream), had_override_(false) {
  ThreadDeviceState& st = state_for(stream.device());
  had_override_ = st.override_id >= 0;
  set_current_stream(stream);
}

StreamGuard::~StreamGuard() {
  ThreadDeviceState& st = state_for(current_.device());
  st.override_id = had_override_ ? static_cast<std::int32_t>(original_.id()) : -1;
}

}  // namespace streampool
