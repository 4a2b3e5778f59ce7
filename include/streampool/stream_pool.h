#pragma once
// The per-device stream pool and each thread's current stream.
//
// Note [Stream pool leasing]
// Each device has N streams (STREAMPOOL_STREAMS_PER_DEVICE, default 32): id 0 is the default
// stream, used by the main thread; ids 1..N-1 form the pool. The first device use of any other
// thread leases a free pool stream: it is that thread's alone until the thread exits (or calls
// release_current_thread_stream), then it returns to the pool, so thread churn reuses streams
// and any number of sequential threads works. When every pool stream is leased,
// STREAMPOOL_POOL_EXHAUSTED decides: `share` shares pool streams round-robin (never blocks),
// `wait` blocks until a lease returns, `wait:MS` blocks at most MS milliseconds then throws
// PoolExhaustedError, `error` throws at once. Streams are created lazily and never destroyed.

#include <chrono>
#include <cstdint>

#include "streampool/device.h"
#include "streampool/stream.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

enum class ExhaustedPolicy : std::uint8_t { share, wait, error };

struct PoolExhaustedSetting {
  ExhaustedPolicy policy = ExhaustedPolicy::share;
  // For `wait`: negative waits forever; otherwise the time limit in milliseconds.
  std::int64_t wait_ms = -1;
};

// The calling thread's current stream on `device` (leasing a pool stream at a worker thread's
// first use of the device).
Stream current_stream(const Device& device);
// Makes `stream` the calling thread's current stream on its device; prefer StreamGuard.
void set_current_stream(const Stream& stream);
// A pool stream (round-robin), not leased: use it when you manage ordering yourself.
Stream stream_from_pool(const Device& device);
// The device's default stream (id 0).
Stream default_stream(const Device& device);
// Returns the calling thread's leased streams (all devices) to the pool now rather than at
// thread exit; the thread's next device use leases again.
void release_current_thread_stream();

// Total streams per device (default + pool), from STREAMPOOL_STREAMS_PER_DEVICE.
int streams_per_device();
// Pool streams leased right now on `device` (for diagnostics and tests).
int leased_stream_count(const Device& device);

// The exhaustion policy in effect; starts from STREAMPOOL_POOL_EXHAUSTED, changeable at run time.
PoolExhaustedSetting pool_exhausted_policy();
void set_pool_exhausted_policy(PoolExhaustedSetting setting);

// Waits for all work submitted to every stream of `device` before the call. Other threads
// may keep submitting meanwhile: they are never blocked, and later work is not waited for.
// Raises the first asynchronous error found (after waiting for every stream).
void synchronize(const Device& device);

}  // namespace streampool
STREAMPOOL_API_END
