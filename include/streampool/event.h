#pragma once
// Event: a point in a stream's work that other streams and the host can wait for.

#include <memory>
#include <mutex>
#include <optional>

#include "streampool/device.h"
#include "streampool/stream.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

namespace detail {
class EventImpl;
}

class Event {
 public:
  // `enable_timing` makes elapsed_ms() available (on CUDA it costs a little per record).
  explicit Event(bool enable_timing = false);
  ~Event();
  Event(Event&&) noexcept;
  Event& operator=(Event&&) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Marks the point after all work submitted to `stream` so far. The event binds to the
  // stream's device at its first record; recording it on another device throws.
  void record(const Stream& stream);
  // True once the work before the latest record has finished (or never recorded).
  bool query() const;
  // Waits for the latest record; raises the recording stream's asynchronous error if that
  // stream had failed before the record.
  void synchronize() const;
  // Milliseconds from this event's latest record to `end`'s; both need enable_timing and must
  // have completed.
  double elapsed_ms(const Event& end) const;

  std::optional<Device> device() const;
  bool enable_timing() const { return timing_; }

  // For backends and Stream::wait: the recorded state, or nullptr if never recorded.
  std::shared_ptr<detail::EventImpl> impl() const;

 private:
  bool timing_;
  mutable std::mutex mu_;                   // guards impl_: record may race with query/wait
  std::shared_ptr<detail::EventImpl> impl_;  // created at the first record
};

}  // namespace streampool
STREAMPOOL_API_END
