#pragma once
// StreamGuard: sets the calling thread's current stream on a device for a scope.

#include "streampool/stream.h"
#include "streampool/stream_pool.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

  const Stream& original() const { return original_; }
  const Stream& current() const { return current_; }

 private:
  Stream original_;
  Stream current_;
  bool had_override_;
};

}  // namespace streampool
STREAMPOOL_API_END
