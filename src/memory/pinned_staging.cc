#include "memory/pinned_staging.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "streampool/error.h"

namespace streampool::detail {
namespace {

constexpr std::size_t kMinStaged = 1u << 20;   // below this the driver's own staging is as good
constexpr std::size_t kMaxCached = 512u << 20;  // pinned memory is a scarce system resource

struct Buffer {
  void* ptr = nullptr;
  std::size_t size = 0;
  std::shared_ptr<EventImpl> ready;  // the last transfer's completion, or null
};

class PinnedCache {
 public:
  // A buffer of at least `bytes` whose last transfer has completed, or {} where none can be had.
  Buffer get(Backend& b, std::size_t bytes) {
    std::size_t size = kMinStaged;
    while (size < bytes) size <<= 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->size != size) continue;
        bool done = true;
        try {
          done = !it->ready || it->ready->query();
        } catch (const std::exception&) {
          // The stream failed; its owner hears of it. The transfer is over either way.
        }
        if (!done) continue;
        Buffer out = *it;
        free_.erase(it);
        out.ready.reset();
        return out;
      }
      if (total_ + size > kMaxCached) return {};
      total_ += size;
    }
    Buffer out{b.allocate_pinned(size), size, nullptr};
    if (!out.ptr) {
      std::lock_guard<std::mutex> lock(mu_);
      total_ -= size;
      return {};
    }
    return out;
  }

  void put(Buffer buf) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(buf));
  }

 private:
  std::mutex mu_;              // guards free_, total_
  std::vector<Buffer> free_;
  std::size_t total_ = 0;      // pinned bytes ever allocated (they are never freed)
};

PinnedCache& cache() {
  static auto* c = new PinnedCache;  // Note [Process lifetime]
  return *c;
}

// Pinned ints handed out one at a time from page-sized chunks.
class PinnedWords {
 public:
  int* get(Backend& b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      constexpr std::size_t kPerChunk = 4096 / sizeof(int);
      auto* chunk = static_cast<int*>(b.allocate_pinned(kPerChunk * sizeof(int)));
      if (!chunk) throw Error("no page-locked host memory for a device flag");
      for (std::size_t i = 0; i < kPerChunk; ++i) free_.push_back(chunk + i);  // never freed
    }
    int* w = free_.back();
    free_.pop_back();
    return w;
  }
  void put(int* w) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(w);
  }

 private:
  std::mutex mu_;  // guards free_
  std::vector<int*> free_;
};

PinnedWords& words() {
  static auto* w = new PinnedWords;  // Note [Process lifetime]
  return *w;
}

}  // namespace

int* acquire_pinned_word(Backend& backend) { return words().get(backend); }
void release_pinned_word(int* word) { words().put(word); }

bool staged_upload(Backend& backend, void* dst, const void* src, std::size_t bytes, StreamImpl& stream) {
  if (bytes < kMinStaged) return false;
  Buffer buf = cache().get(backend, bytes);
  if (!buf.ptr) return false;
  std::memcpy(buf.ptr, src, bytes);
  bool queued = false;
  try {
    backend.copy_async(dst, buf.ptr, bytes, stream);
    queued = true;
    buf.ready = backend.create_event(stream.stream.device(), false);
    buf.ready->record(stream);
  } catch (...) {
    // A copy that never queued leaves the buffer free; one that queued without an event to
    // track it may still read it, so the buffer is given up rather than reused too early.
    if (!queued) cache().put(std::move(buf));
    throw;
  }
  cache().put(std::move(buf));
  return true;
}

bool staged_download(Backend& backend, void* dst, const void* src, std::size_t bytes, StreamImpl& stream) {
  if (bytes < kMinStaged) return false;
  Buffer buf = cache().get(backend, bytes);
  if (!buf.ptr) return false;
  try {
    backend.copy_async(buf.ptr, src, bytes, stream);
    stream.synchronize();
  } catch (...) {
    cache().put(std::move(buf));
    throw;
  }
  std::memcpy(dst, buf.ptr, bytes);
  cache().put(std::move(buf));
  return true;
}

}  // namespace streampool::detail
