#pragma once
// Process-lifetime runtime state: one DevicePool per device. Internal.
//
// Note [Process lifetime]
// Pools, streams, their worker threads and event pools are allocated once and never destroyed.
// Static destruction order across translation units and libraries is unspecified, and threads
// (ours and the user's) may still submit or wait while exit() runs destructors and atexit
// handlers; an object that is never destroyed cannot be used after its destruction. The
// operating system reclaims it all at process exit.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/backend_interface.h"
#include "core/per_device.h"
#include "streampool/stream_pool.h"

namespace streampool::detail {

class DevicePool {
 public:
  DevicePool(const Device& device, int streams, Backend& backend);
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  const Device device;
  const int size;  // streams in all: id 0 default, 1..size-1 pool
  Backend& backend;

  // The stream's backend object, created at first use: a pool stream (id < size) or a capture
  // stream (size <= id < size + kCaptureStreams).
  StreamImpl& impl(std::uint32_t id);
  // Capture streams: private to one graph capture at a time, never anyone's current stream
  // otherwise, so no other thread's work lands in a capture (graph.h). Throws Error when
  // kCaptureStreams captures run at once.
  static constexpr int kCaptureStreams = 64;
  std::uint32_t acquire_capture_stream();
  void release_capture_stream(std::uint32_t id);
  // The stream's backend object if it was ever created, else nullptr (never creates).
  StreamImpl* created(std::uint32_t id) const;

  // A stream for a worker thread's first use; sets `leased` when it is exclusive.
  std::uint32_t acquire(const PoolExhaustedSetting& policy, bool& leased);
  void release(std::uint32_t id);
  std::uint32_t next_round_robin();
  int leased_count() const;

 private:
  struct Slot {
    std::once_flag once;
    std::atomic<StreamImpl*> impl{nullptr};  // set once under `once`, read lock-free
  };
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<Slot[]> capture_slots_;

  mutable std::mutex lease_mu_;       // guards leased_, leased_count_
  std::condition_variable lease_cv_;  // signalled when a lease returns
  std::vector<bool> leased_;
  int leased_count_ = 0;
  std::vector<bool> capture_leased_;  // guarded by lease_mu_
  std::atomic<std::uint32_t> round_robin_{0};  // lock-free counter for shared picks
};

// The pool of `device`; throws ForkedChildError in a forked child, DeviceError for a device that
// does not exist.
DevicePool& device_pool(const Device& device);
// The calling thread's current stream of `device` if it has one (the main thread's default
// stream, a lease, an override), without leasing one: nullopt for a thread that never used it.
std::optional<Stream> current_stream_if_set(const Device& device);
// A test hook: tests/support/work.cc submits real work to a stream through it.
STREAMPOOL_TEST_HOOK StreamImpl& stream_impl(const Stream& stream);
// For its lifetime, the calling thread's current stream of `device` is a capture stream of its
// own (DevicePool::acquire_capture_stream), returned at the end.
class CaptureStreamScope {
 public:
  explicit CaptureStreamScope(const Device& device);
  ~CaptureStreamScope();
  CaptureStreamScope(const CaptureStreamScope&) = delete;
  CaptureStreamScope& operator=(const CaptureStreamScope&) = delete;
  StreamImpl& stream() const { return *impl_; }

 private:
  DevicePool& pool_;
  std::uint32_t id_;
  std::int32_t previous_override_;
  StreamImpl* impl_;
};

// The calling thread's current stream of `device`, as its backend object.
inline StreamImpl& current_impl(const Device& device) { return stream_impl(current_stream(device)); }

}  // namespace streampool::detail
