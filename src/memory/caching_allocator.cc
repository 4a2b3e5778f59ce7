// The caching allocator (include/streampool/allocator.h).
//
// Note [Allocator locking]
// Each device has its own DeviceAllocator with one mutex guarding its pools, pending frees,
// blocks and statistics. In front of it, each stream keeps up to 16 small blocks it freed
// (FrontCache, under the stream's own lock): a steady request loop allocates and frees the same
// sizes on its own stream and then never touches the device lock. The device lock is taken
// before a front-cache lock (flush), never after. Threads on different devices never contend; threads on one device
// hold the lock only for the bookkeeping of one allocate or free (a few set operations), plus
// the rare raw device allocation on a cache miss. Events recorded for record_stream and for
// segments moved between streams (Note [Cross-stream segments]) are created, queried and waited
// for (a stream's order_after) under the lock: each takes only a stream's own queue lock, and no
// stream worker ever takes an allocator lock while holding its queue lock, so no cycle exists.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "core/runtime.h"
#include "memory/graph_arena.h"
#include "streampool/allocator.h"
#include "streampool/error.h"
#include "streampool/settings.h"
#include "streampool/stream_pool.h"

namespace streampool {
namespace detail {

struct Pool;

struct Block {
  void* ptr = nullptr;
  std::size_t size = 0;       // bytes this block spans
  std::uint32_t stream_id = 0;  // allocation stream: reuse only in its order
  bool allocated = false;
  int pending_events = 0;     // events still to complete before the block is free again
  Block* prev = nullptr;      // neighbours inside one device segment (split / merge)
  Block* next = nullptr;
  Pool* pool = nullptr;
  std::vector<std::uint32_t> stream_uses;  // record_stream streams other than stream_id
  std::atomic<bool> has_uses{false};       // stream_uses is not empty (read by the fast free path)
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream_id != b->stream_id) return a->stream_id < b->stream_id;
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<std::uintptr_t>(a->ptr) < reinterpret_cast<std::uintptr_t>(b->ptr);
  }
};

struct Pool {
  bool small = false;
  std::set<Block*, BlockLess> free_blocks;
};

namespace {

constexpr std::size_t kRound = 512;                 // every size is a multiple of this
constexpr std::size_t kSmallSize = 1 << 20;         // requests up to 1 MiB use the small pool
constexpr std::size_t kSmallSegment = 2 << 20;      // small pool segments are 2 MiB
constexpr std::size_t kLargeSegment = 20 << 20;     // 1..10 MiB requests share 20 MiB segments
constexpr std::size_t kMinLargeAlloc = 10 << 20;
constexpr std::size_t kLargeRound = 2 << 20;        // larger requests round up to 2 MiB

std::size_t round_size(std::size_t bytes) {
  return bytes < kRound ? kRound : (bytes + kRound - 1) / kRound * kRound;
}

std::size_t segment_size(std::size_t size) {
  if (size <= kSmallSize) return kSmallSegment;
  if (size < kMinLargeAlloc) return kLargeSegment;
  return (size + kLargeRound - 1) / kLargeRound * kLargeRound;
}

}  // namespace

class DeviceAllocator {
 public:
  explicit DeviceAllocator(DevicePool& pool)
      : device_(pool.device),
        pool_(pool),
        front_(new FrontCache[static_cast<std::size_t>(pool.size + DevicePool::kCaptureStreams)]) {
    small_.small = true;
    const Settings& s = settings();
    no_caching_ = s.no_caching;
    log_ = s.allocator_log;
    if (s.memory_limit.set) {
      limit_ = s.memory_limit.is_fraction
                   ? static_cast<std::size_t>(s.memory_limit.fraction *
                                              static_cast<double>(pool.backend.properties(device_.index).total_memory))
                   : s.memory_limit.bytes;
    }
  }

  Block* allocate(std::size_t bytes, std::uint32_t stream_id) {
    if (!no_caching_ && bytes <= kSmallSize) {
      // Fast path: a block this stream freed recently, under the stream's own lock.
      const std::size_t size = round_size(bytes);
      FrontCache& fc = front_[stream_id];
      std::lock_guard<std::mutex> lock(fc.mu);
      for (std::size_t i = fc.blocks.size(); i-- > 0;) {
        if (fc.blocks[i]->size != size) continue;
        Block* b = fc.blocks[i];
        fc.blocks[i] = fc.blocks.back();
        fc.blocks.pop_back();
        count_alloc(b->size);
        return b;
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (bytes > (std::size_t{1} << 50)) {
      ++stats_.ooms;
      oom_throw(bytes, bytes, stream_id, "The request exceeds any device's memory");
    }
    const std::size_t size = round_size(bytes);
    process_events();
    Block* block = no_caching_ ? nullptr : take_free_block(size, stream_id);
    if (!block && !no_caching_) block = take_other_streams_segment(size, stream_id);
    if (!block && !no_caching_) {
      // Blocks parked in the streams' front caches keep their segments split: put them back
      // (merging what they free up) and look again before going to the device.
      flush_front();
      block = take_free_block(size, stream_id);
      if (!block) block = take_other_streams_segment(size, stream_id);
      if (!block) block = take_other_streams_segment(size, stream_id, /*any_size=*/true);
    }
    if (!block) {
      if (log_) log_miss(size, stream_id);
      const std::size_t seg = no_caching_ ? size : segment_size(size);
      // Under the memory limit a busy stream's whole segment, after its work, beats the ladder.
      if (!no_caching_ && limit_ != 0 && stats_.reserved_bytes + seg > limit_) {
        block = take_other_streams_segment(size, stream_id, /*any_size=*/true, /*allow_busy=*/true);
      }
      if (!block) {
        if (!no_caching_) recycle_for(lock, seg, size, stream_id);
        block = new_segment(lock, seg, bytes, size, stream_id);
      }
    }
    if (!no_caching_) block = split(block, size);
    block->allocated = true;
    count_alloc(block->size);
    return block;
  }

  void free(Block* block) {
    if (!no_caching_ && block->size <= kSmallSize && !block->has_uses.load(std::memory_order_acquire)) {
      // Fast path: keep it for this stream's next allocation of the same size. Reuse on the
      // allocating stream is ordered (Note [Stream-ordered reuse]); the block stays "in use" for
      // the pools until flushed (release_cached).
      FrontCache& fc = front_[block->stream_id];
      std::lock_guard<std::mutex> lock(fc.mu);
      if (fc.blocks.size() < kFrontMax) {
        fc.blocks.push_back(block);
        count_free(block->size);
        return;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    block->allocated = false;
    count_free(block->size);
    if (block->stream_uses.empty() && !no_caching_) {
      release_to_pool(block);
      return;
    }
    // Note [Stream-ordered reuse]: wait for the users' work submitted until now. Without
    // caching the memory goes back to the device, which any stream may then reuse, so the
    // allocating stream's own work must finish first too.
    std::vector<std::uint32_t> users = std::move(block->stream_uses);
    block->stream_uses.clear();
    block->has_uses.store(false, std::memory_order_relaxed);
    if (no_caching_) users.push_back(block->stream_id);
    for (std::uint32_t id : users) {
      std::shared_ptr<EventImpl> event = pool_.backend.create_event(device_, false);
      event->record(pool_.impl(id));
      pending_.push_back({std::move(event), block});
      ++block->pending_events;
    }
    ++stats_.pending_frees;
  }

  void record_stream(Block* block, std::uint32_t stream_id) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_id == block->stream_id) return;
    if (std::find(block->stream_uses.begin(), block->stream_uses.end(), stream_id) == block->stream_uses.end()) {
      block->stream_uses.push_back(stream_id);
      block->has_uses.store(true, std::memory_order_release);
    }
  }

  void empty_cache() {
    std::unique_lock<std::mutex> lock(mu_);
    process_events();
    release_cached(lock);
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    MemoryStats s = stats_;
    s.allocated_bytes = allocated_.load(std::memory_order_relaxed);
    s.allocated_peak = allocated_peak_.load(std::memory_order_relaxed);
    s.allocations = allocations_.load(std::memory_order_relaxed);
    s.frees = frees_.load(std::memory_order_relaxed);
    s.limit_bytes = limit_;
    return s;
  }

  void reset_peaks() {
    std::lock_guard<std::mutex> lock(mu_);
    allocated_peak_.store(allocated_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    stats_.reserved_peak = stats_.reserved_bytes;
  }

  void set_limit(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
  }
  std::size_t limit() {
    std::lock_guard<std::mutex> lock(mu_);
    return limit_;
  }

 private:
  struct Pending {
    std::shared_ptr<EventImpl> event;  // shared: a waiter may hold it while the lock is released
    Block* block;
  };

  // Small blocks freed without other streams' uses, kept per stream for its next allocation of
  // the same size, so the common allocate/free pair never takes the device lock.
  struct FrontCache {
    std::mutex mu;  // guards blocks; contended only when threads share a stream
    std::vector<Block*> blocks;
  };
  static constexpr std::size_t kFrontMax = 16;

  void count_alloc(std::size_t size) {
    const std::size_t now = allocated_.fetch_add(size, std::memory_order_relaxed) + size;
    std::size_t peak = allocated_peak_.load(std::memory_order_relaxed);
    while (now > peak && !allocated_peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    allocations_.fetch_add(1, std::memory_order_relaxed);
  }
  void count_free(std::size_t size) {
    allocated_.fetch_sub(size, std::memory_order_relaxed);
    frees_.fetch_add(1, std::memory_order_relaxed);
  }

  // Moves every stream's front cache back into the pools (device lock held).
  void flush_front() {
    for (int id = 0; id < pool_.size + DevicePool::kCaptureStreams; ++id) {
      std::vector<Block*> blocks;
      {
        std::lock_guard<std::mutex> lock(front_[id].mu);
        blocks.swap(front_[id].blocks);
      }
      for (Block* b : blocks) {
        b->allocated = false;
        release_to_pool(b);
      }
    }
  }

  Pool& pool_for(std::size_t size) { return size <= kSmallSize ? small_ : large_; }

  Block* take_free_block(std::size_t size, std::uint32_t stream_id) {
    Pool& pool = pool_for(size);
    Block key;
    key.stream_id = stream_id;
    key.size = size;
    auto it = pool.free_blocks.lower_bound(&key);
    if (it == pool.free_blocks.end() || (*it)->stream_id != stream_id) return nullptr;
    Block* b = *it;
    pool.free_blocks.erase(it);
    return b;
  }

  // Note [Cross-stream segments]
  // Free blocks are reused only on their own stream (Note [Stream-ordered reuse]), so with
  // many streams each one's cache would grow to its own peak for every workload it ever ran,
  // and a long mixed run would keep taking new segments while other streams sit on free ones.
  // Before asking the device, a miss takes the smallest whole free segment (no split
  // neighbours, so every block of a segment keeps one stream) of another pool stream that is
  // at most twice what a new segment would be, of a stream with no work queued; under the
  // memory limit also a busy stream's, ordered: an event recorded now on the old stream covers
  // the work queued there before the free, and the new stream waits for it unless it has already
  // completed (StreamImpl::order_after: the old stream's failure stays its own). Capture streams take no part: nothing may be recorded on, or waited for by, a
  // stream in capture. Before a new segment the front caches are flushed and both looks
  // repeated: parked small blocks may be all that keeps a segment split; the last look takes
  // a whole segment of any size (splitting a large one beats growing the reserve).
  Block* take_other_streams_segment(std::size_t size, std::uint32_t stream_id, bool any_size = false,
                                    bool allow_busy = false) {
    if (stream_id >= static_cast<std::uint32_t>(pool_.size)) return nullptr;
    const std::size_t most = any_size ? SIZE_MAX : 2 * segment_size(size);
    Pool& pool = pool_for(size);
    std::vector<Block*> fits;
    for (Block* b : pool.free_blocks) {
      if (b->prev || b->next || b->stream_id == stream_id || b->size < size || b->size > most) continue;
      if (b->stream_id >= static_cast<std::uint32_t>(pool_.size)) continue;
      fits.push_back(b);
    }
    std::sort(fits.begin(), fits.end(), [](const Block* a, const Block* b) { return a->size < b->size; });
    // The smallest segment of a stream with nothing queued; a busy stream's only under the
    // memory limit (allow_busy), ordered after its work: waiting for it would otherwise
    // serialize the two streams (two CPU threads running conv1d went from 1.9x one thread to
    // 1.1x, taking each other's 2 MiB column buffers in turn).
    Block* best = nullptr;
    bool idle = false;
    for (Block* b : fits) {
      if ((idle = stream_idle(b->stream_id))) {
        best = b;
        break;
      }
    }
    if (!best && allow_busy && !fits.empty()) best = fits.front();
    if (!best) return nullptr;
    if (!idle) {
      StreamImpl& to = pool_.impl(stream_id);
      std::shared_ptr<EventImpl> done = pool_.backend.create_event(device_, false);
      done->record(pool_.impl(best->stream_id));
      bool finished = false;
      try {
        finished = done->query();
      } catch (const std::exception&) {
        finished = true;  // a failed stream's work is over; its owner learns of the failure at their synchronize
      }
      if (!finished) to.order_after(*done);  // never hands the old stream's failure to this one
    }
    pool.free_blocks.erase(best);
    best->stream_id = stream_id;
    ++stats_.cross_stream_segments;
    return best;
  }

  // Whether a pool stream has nothing queued (a failed stream's work is over too; its owner
  // learns of the failure at their own synchronize).
  bool stream_idle(std::uint32_t id) {
    try {
      return pool_.impl(id).query();
    } catch (const std::exception&) {
      return true;
    }
  }

  // Note [Recycling segments]
  // A large-pool miss that no look could serve while whole free segments lie unused (each too
  // small for this request) gives back enough of them, smallest first, to cover the new
  // segment before it asks the device: a mixed workload's reserve then follows the sizes it
  // asks for now instead of growing by one segment for every size it ever met (a 10-minute soak
  // over four workloads grew ~100 MB after warm-up through three 32 MiB requests, each while
  // 400 MiB lay free in whole segments of at most 26 MiB). Only when the free whole segments
  // cover the new one: freeing less would trade growth for churn. Each victim's stream is waited
  // for first (release_segments), as when the cache is emptied; capture streams take no part.
  void recycle_for(std::unique_lock<std::mutex>& lock, std::size_t seg, std::size_t size, std::uint32_t stream_id) {
    if (size <= kSmallSize || stream_id >= static_cast<std::uint32_t>(pool_.size)) return;
    std::vector<Block*> whole;
    std::size_t total = 0;
    for (Block* b : large_.free_blocks) {
      if (b->prev || b->next || b->stream_id >= static_cast<std::uint32_t>(pool_.size)) continue;
      whole.push_back(b);
      total += b->size;
    }
    if (total < seg) return;
    std::sort(whole.begin(), whole.end(), [](const Block* a, const Block* b) { return a->size < b->size; });
    std::vector<Block*> victims;
    std::size_t freed = 0;
    for (Block* b : whole) {
      if (freed >= seg) break;
      large_.free_blocks.erase(b);
      victims.push_back(b);
      freed += b->size;
    }
    stats_.recycled_segments += victims.size();
    release_segments(lock, std::move(victims));
  }

  // STREAMPOOL_ALLOCATOR_LOG: why the cache could not serve a request (device lock held). The
  // free bytes of the request's pool and the largest free block and whole segment anywhere in
  // it tell fragmentation (plenty free, nothing whole) from a new peak (little free).
  void log_miss(std::size_t size, std::uint32_t stream_id) {
    const Pool& pool = pool_for(size);
    std::size_t free_bytes = 0, largest = 0, largest_whole = 0, own = 0;
    for (const Block* b : pool.free_blocks) {
      free_bytes += b->size;
      largest = std::max(largest, b->size);
      if (!b->prev && !b->next) largest_whole = std::max(largest_whole, b->size);
      if (b->stream_id == stream_id) own += b->size;
    }
    std::fprintf(stderr,
                 "streampool allocator: %s: new segment for %s on %s; %s pool free %s (this stream %s), largest free "
                 "block %s, largest whole free segment %s; reserved %s, allocated %s\n",
                 device_.str().c_str(), format_bytes(size).c_str(), Stream(device_, stream_id).str().c_str(),
                 pool.small ? "small" : "large", format_bytes(free_bytes).c_str(), format_bytes(own).c_str(),
                 format_bytes(largest).c_str(), format_bytes(largest_whole).c_str(),
                 format_bytes(stats_.reserved_bytes).c_str(), format_bytes(allocated_.load(std::memory_order_relaxed)).c_str());
  }

  // Asks the device for a segment, climbing the out-of-memory ladder if it must.
  Block* new_segment(std::unique_lock<std::mutex>& lock, std::size_t seg, std::size_t requested, std::size_t size,
                     std::uint32_t stream_id) {
    void* ptr = raw_allocate(seg);
    if (!ptr) {
      ++stats_.retries;
      release_cached(lock);  // rung 1: give the cache back to the device
      ptr = raw_allocate(seg);
    }
    if (!ptr && !pending_.empty()) {
      // Rung 2: wait for frees held by other streams' events. The lock is released while
      // waiting: the work being waited for may itself free memory.
      std::vector<std::shared_ptr<EventImpl>> waits;
      for (auto& p : pending_) waits.push_back(p.event);
      lock.unlock();
      for (auto& e : waits) {
        try {
          e->synchronize();
        } catch (const std::exception&) {
          // The stream's owner learns of its failure at its own synchronize.
        }
      }
      lock.lock();
      process_events();
      release_cached(lock);
      ptr = raw_allocate(seg);
    }
    if (!ptr && seg > size) ptr = raw_allocate(seg = size);  // rung 3: no slack
    if (!ptr) {
      ++stats_.ooms;
      oom_throw(requested, size, stream_id, nullptr);
    }
    ++stats_.device_allocations;
    stats_.reserved_bytes += seg;
    stats_.reserved_peak = std::max(stats_.reserved_peak, stats_.reserved_bytes);
    auto* b = new Block;
    b->ptr = ptr;
    b->size = seg;
    b->stream_id = stream_id;
    b->pool = &pool_for(size);  // a small request's 2 MiB segment serves the small pool
    return b;
  }

  void* raw_allocate(std::size_t bytes) {
    if (limit_ != 0 && stats_.reserved_bytes + bytes > limit_) return nullptr;
    return pool_.backend.try_allocate(device_, bytes);
  }

  Block* split(Block* b, std::size_t size) {
    const std::size_t rest = b->size - size;
    const bool worth = b->pool->small ? rest >= kRound : rest > kSmallSize;
    if (!worth) return b;
    auto* tail = new Block;
    tail->ptr = static_cast<char*>(b->ptr) + size;
    tail->size = rest;
    tail->stream_id = b->stream_id;
    tail->pool = b->pool;
    tail->prev = b;
    tail->next = b->next;
    if (b->next) b->next->prev = tail;
    b->next = tail;
    b->size = size;
    b->pool->free_blocks.insert(tail);
    return b;
  }

  // A block that is free for reuse: merge it with free neighbours, then cache or release it.
  void release_to_pool(Block* b) {
    if (no_caching_) {
      stats_.reserved_bytes -= b->size;
      pool_.backend.deallocate(device_, b->ptr);
      delete b;
      return;
    }
    for (Block* n : {b->prev, b->next}) {
      if (!n || n->allocated || n->pending_events > 0) continue;
      b->pool->free_blocks.erase(n);
      if (n == b->prev) {
        b->ptr = n->ptr;
        b->prev = n->prev;
        if (b->prev) b->prev->next = b;
      } else {
        b->next = n->next;
        if (b->next) b->next->prev = b;
      }
      b->size += n->size;
      delete n;
    }
    b->pool->free_blocks.insert(b);
  }

  void process_events() {
    for (auto it = pending_.begin(); it != pending_.end();) {
      bool done = false;
      try {
        done = it->event->query();
      } catch (const std::exception&) {
        // A stream failure does not keep memory hostage: the user learns of it at their own
        // synchronize; the block's users have finished or died either way.
        done = true;
      }
      if (!done) {
        ++it;
        continue;
      }
      Block* b = it->block;
      it = pending_.erase(it);
      if (--b->pending_events == 0) {
        --stats_.pending_frees;
        release_to_pool(b);
      }
    }
  }

  // Returns whole free segments (no split neighbours) to the device. A cached block may still
  // be in use by work of its stream queued before its free (reuse on that stream is ordered,
  // but the device is not), so each such stream is waited for first, with the lock released.
  void release_cached(std::unique_lock<std::mutex>& lock) {
    flush_front();
    std::vector<Block*> victims;
    for (Pool* pool : {&small_, &large_}) {
      for (auto it = pool->free_blocks.begin(); it != pool->free_blocks.end();) {
        Block* b = *it;
        if (b->prev || b->next) {
          ++it;
          continue;
        }
        it = pool->free_blocks.erase(it);
        victims.push_back(b);
      }
    }
    release_segments(lock, std::move(victims));
  }

  // Gives whole segments, already out of the pools, back to the device once the work their
  // streams queued until now is done (the lock is released while waiting).
  void release_segments(std::unique_lock<std::mutex>& lock, std::vector<Block*> victims) {
    if (victims.empty()) return;
    std::vector<std::uint32_t> streams;
    for (Block* b : victims) {
      stats_.reserved_bytes -= b->size;
      if (std::find(streams.begin(), streams.end(), b->stream_id) == streams.end()) streams.push_back(b->stream_id);
    }
    std::vector<std::unique_ptr<EventImpl>> marks;
    for (std::uint32_t id : streams) {
      marks.push_back(pool_.backend.create_event(device_, false));
      marks.back()->record(pool_.impl(id));
    }
    lock.unlock();
    for (auto& m : marks) {
      try {
        m->synchronize();
      } catch (const std::exception&) {
        // The stream's failure reaches its owner at their synchronize; its work is over.
      }
    }
    for (Block* b : victims) {
      pool_.backend.deallocate(device_, b->ptr);
      delete b;
    }
    lock.lock();
  }

  [[noreturn]] void oom_throw(std::size_t requested, std::size_t rounded, std::uint32_t stream_id, const char* why) {
    std::ostringstream msg;
    msg << device_.str() << " out of memory: tried to allocate " << format_bytes(requested);
    if (rounded != requested) msg << " (" << format_bytes(rounded) << " rounded)";
    msg << " on " << Stream(device_, stream_id).str() << ". ";
    if (why) msg << why << ". ";
    try {
      DeviceProperties p = pool_.backend.properties(device_.index);
      msg << "Device total " << format_bytes(p.total_memory) << ", free " << format_bytes(p.free_memory) << "; ";
    } catch (const std::exception&) {
    }
    const std::size_t allocated = allocated_.load(std::memory_order_relaxed);
    msg << "limit " << (limit_ ? format_bytes(limit_) + " (STREAMPOOL_MEMORY_LIMIT / set_memory_limit)" : "none")
        << "; this allocator holds " << format_bytes(allocated) << " allocated and "
        << format_bytes(stats_.reserved_bytes) << " reserved ("
        << format_bytes(stats_.reserved_bytes - std::min(stats_.reserved_bytes, allocated))
        << " cached or fragmented).";
    throw OutOfMemoryError(msg.str());
  }

  const Device device_;
  DevicePool& pool_;
  std::unique_ptr<FrontCache[]> front_;  // one per stream id (pool and capture), each with its own lock
  // Counters updated on the fast paths too, hence atomic rather than under mu_.
  std::atomic<std::size_t> allocated_{0}, allocated_peak_{0};
  std::atomic<std::uint64_t> allocations_{0}, frees_{0};
  std::mutex mu_;  // guards everything below: Note [Allocator locking]
  Pool small_, large_;
  std::deque<Pending> pending_;
  MemoryStats stats_;
  std::size_t limit_ = 0;
  bool no_caching_ = false;  // fixed at construction
  bool log_ = false;         // STREAMPOOL_ALLOCATOR_LOG, fixed at construction
};

namespace {

DeviceAllocator& allocator_for(const Device& device) {
  DevicePool& pool = device_pool(device);
  static auto* allocators = new PerDevice<DeviceAllocator>;  // Note [Process lifetime]
  return allocators->get(device, [&] { return new DeviceAllocator(pool); });
}

}  // namespace
}  // namespace detail

DataPtr allocate(const Device& device, std::size_t bytes, const Stream* stream) {
  detail::DeviceAllocator& a = detail::allocator_for(device);
  Stream s = stream ? *stream : current_stream(device);
  if (s.device() != device) {
    throw InvalidArgument("allocate: stream " + s.str() + " is not on " + device.str());
  }
  (void)detail::stream_impl(s);  // validates the stream id
  DataPtr out;
  if (detail::GraphArena* arena = detail::active_arena(device)) {
    if (void* p = arena->take(bytes)) {  // Note [Graph arenas]: owned by the arena, no block
      out.ptr_ = p;
      out.size_ = bytes;
      out.device_ = device;
      out.stream_id_ = s.id();
      return out;
    }
  }
  out.block_ = a.allocate(bytes, s.id());
  out.ptr_ = out.block_->ptr;
  out.size_ = bytes;
  out.device_ = device;
  out.stream_id_ = s.id();
  return out;
}

DataPtr::~DataPtr() {
  if (!block_) return;
  try {
    detail::allocator_for(device_).free(block_);
  } catch (...) {
    // Only in a forked child (ForkedChildError) or with a broken device: the memory belongs to
    // a state that no longer works, and a destructor must not throw.
  }
}

DataPtr::DataPtr(DataPtr&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)), device_(o.device_),
      stream_id_(o.stream_id_), block_(std::exchange(o.block_, nullptr)), owner_(std::move(o.owner_)) {}

DataPtr& DataPtr::operator=(DataPtr&& o) noexcept {
  if (this != &o) {
    DataPtr tmp(std::move(*this));
    ptr_ = std::exchange(o.ptr_, nullptr);
    size_ = std::exchange(o.size_, 0);
    device_ = o.device_;
    stream_id_ = o.stream_id_;
    block_ = std::exchange(o.block_, nullptr);
    owner_ = std::move(o.owner_);
  }
  return *this;
}

DataPtr external_data(void* ptr, std::size_t bytes, const Device& device, const Stream& stream, std::shared_ptr<void> owner) {
  if (stream.device() != device) {
    throw InvalidArgument("external_data: stream " + stream.str() + " is not on " + device.str());
  }
  DataPtr out;
  out.ptr_ = ptr;
  out.size_ = bytes;
  out.device_ = device;
  out.stream_id_ = stream.id();
  out.owner_ = std::move(owner);
  return out;
}

void record_stream(const DataPtr& ptr, const Stream& stream) {
  if (!ptr.ptr_) throw InvalidArgument("record_stream: empty DataPtr");
  if (!ptr.block_) return;  // arena memory lives as long as its graph (Note [Graph arenas]); external memory is its owner's
  if (stream.device() != ptr.device_) {
    throw InvalidArgument("record_stream: memory on " + ptr.device_.str() + " cannot be used by " + stream.str());
  }
  (void)detail::stream_impl(stream);  // validates the stream id
  detail::allocator_for(ptr.device_).record_stream(ptr.block_, stream.id());
}

MemoryStats memory_stats(const Device& device) { return detail::allocator_for(device).stats(); }
void reset_peak_stats(const Device& device) { detail::allocator_for(device).reset_peaks(); }
void empty_cache(const Device& device) { detail::allocator_for(device).empty_cache(); }
void set_memory_limit(const Device& device, std::size_t bytes) { detail::allocator_for(device).set_limit(bytes); }
std::size_t memory_limit(const Device& device) { return detail::allocator_for(device).limit(); }

}  // namespace streampool
