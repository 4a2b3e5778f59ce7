#pragma once
// The caching allocator: one per device, safe across streams, survives out-of-memory.
//
// Note [Stream-ordered reuse]
// A freed block is cached and handed out again only to allocations on the stream that
// allocated it: work on that stream is ordered, so the next user runs after the last one.
// If record_stream() marked other streams as users, the free records an event on each of
// them, and the block returns to the cache only once all those events have completed (polled
// without blocking at later allocations). Nothing else ever waits for a free. A miss may take
// a whole free segment of another stream, ordered by an event (Note [Cross-stream segments]).

#include <cstddef>
#include <cstdint>
#include <memory>

#include "streampool/device.h"
#include "streampool/stream.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

namespace detail {
struct Block;
}

// Owns one allocation; returns it to its device's allocator when destroyed. Move-only.
class DataPtr {
 public:
  DataPtr() = default;
  ~DataPtr();
  DataPtr(DataPtr&& other) noexcept;
  DataPtr& operator=(DataPtr&& other) noexcept;
  DataPtr(const DataPtr&) = delete;
  DataPtr& operator=(const DataPtr&) = delete;

  void* get() const { return ptr_; }
  std::size_t size() const { return size_; }  // bytes requested
  const Device& device() const { return device_; }
  // The stream that allocated it (its blocks are reused in that stream's order).
  Stream stream() const { return Stream(device_, stream_id_); }
  explicit operator bool() const { return ptr_ != nullptr; }

 private:
  friend DataPtr allocate(const Device&, std::size_t, const Stream*);
  friend void record_stream(const DataPtr&, const Stream&);
  friend DataPtr external_data(void*, std::size_t, const Device&, const Stream&, std::shared_ptr<void>);
  void* ptr_ = nullptr;
  std::size_t size_ = 0;
  Device device_;
  std::uint32_t stream_id_ = 0;
  detail::Block* block_ = nullptr;
  std::shared_ptr<void> owner_;  // memory of another library (interop.h): released with the DataPtr
};

// Memory that another library owns, held as long as the DataPtr lives (interop.h). record_stream
// is a no-op on it: its owner decides when the memory may be reused.
DataPtr external_data(void* ptr, std::size_t bytes, const Device& device, const Stream& stream,
                      std::shared_ptr<void> owner);

// `bytes` of device memory for use on `stream` (default: the calling thread's current stream
// on `device`). Throws OutOfMemoryError after the out-of-memory ladder: free cached blocks and
// retry; wait for pending frees and retry.
DataPtr allocate(const Device& device, std::size_t bytes, const Stream* stream = nullptr);

// Marks `stream` as a user of `ptr`: its memory is not reused until the work `stream` had
// submitted when `ptr` is freed has completed. A no-op for the allocating stream.
void record_stream(const DataPtr& ptr, const Stream& stream);

struct MemoryStats {
  std::size_t allocated_bytes = 0;   // handed out now (rounded sizes)
  std::size_t allocated_peak = 0;
  std::size_t reserved_bytes = 0;    // taken from the device (allocated + cached)
  std::size_t reserved_peak = 0;
  std::uint64_t allocations = 0;     // calls that succeeded
  std::uint64_t frees = 0;
  std::uint64_t device_allocations = 0;  // raw allocations from the device (cache misses)
  std::uint64_t retries = 0;         // allocations that needed the out-of-memory ladder
  std::uint64_t ooms = 0;            // OutOfMemoryError thrown
  std::uint64_t pending_frees = 0;   // blocks waiting for other streams' events
  std::uint64_t cross_stream_segments = 0;  // free segments moved to another stream on a miss
  std::uint64_t recycled_segments = 0;      // whole free segments given back to cover a larger miss
  std::size_t limit_bytes = 0;       // 0: no limit
};

MemoryStats memory_stats(const Device& device);
void reset_peak_stats(const Device& device);
// Returns every cached block that is free and not waiting on events to the device.
void empty_cache(const Device& device);
// Caps what the allocator reserves on `device` (0 removes the cap); starts from
// STREAMPOOL_MEMORY_LIMIT. A cap below what is reserved now only stops further growth.
void set_memory_limit(const Device& device, std::size_t bytes);
std::size_t memory_limit(const Device& device);

}  // namespace streampool
STREAMPOOL_API_END
