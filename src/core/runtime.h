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

  // The stream's backend object, created at first use.
  StreamImpl& impl(std::uint32_t id);
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

  mutable std::mutex lease_mu_;       // guards leased_, leased_count_
  std::condition_variable lease_cv_;  // signalled when a lease returns
  std::vector<bool> leased_;
  int leased_count_ = 0;
  std::atomic<std::uint32_t> round_robin_{0};  // lock-free counter for shared picks
};

// The pool of `device`; throws ForkedChildError in a forked child, DeviceError for a device that
// does not exist.
DevicePool& device_pool(const Device& device);
// A test hook: tests/support/work.cc submits real work to a stream through it.
STREAMPOOL_TEST_HOOK StreamImpl& stream_impl(const Stream& stream);
// The calling thread's current stream of `device`, as its backend object.
inline StreamImpl& current_impl(const Device& device) { return stream_impl(current_stream(device)); }

}  // namespace streampool::detail
