#pragma once
// Stream: an ordered queue of work on one device. A cheap value (device + id) over a static
// pool; copying a Stream never creates or destroys anything.

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "streampool/device.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

class Event;

class Stream {
 public:
  // Id 0 is the device's default stream (the main thread's); ids 1..N-1 are pool streams.
  constexpr Stream(Device device, std::uint32_t id) : device_(device), id_(id) {}

  constexpr Device device() const { return device_; }
  constexpr std::uint32_t id() const { return id_; }
  constexpr bool is_default() const { return id_ == 0; }

  // True when all work submitted so far has finished. Does not raise pending errors.
  bool query() const;
  // Waits for all work submitted before the call; raises (and clears) the first error of the
  // stream's asynchronous work as AsyncError or CudaError.
  void synchronize() const;
  // Work submitted to this stream after the call waits until `event` has completed.
  // An event that was never recorded is complete.
  void wait(const Event& event) const;
  // Runs `task` on the host in stream order: after all earlier work of the stream, before all
  // later work. Exceptions it throws become the stream's asynchronous error; `op` names it.
  void enqueue_host(const char* op, std::function<void()> task) const;
  // cudaStream_t for CUDA streams, nullptr for CPU streams.
  void* native_handle() const;

  std::string str() const;  // "cuda:0/stream3"
  friend constexpr bool operator==(const Stream& a, const Stream& b) { return a.device_ == b.device_ && a.id_ == b.id_; }
  friend constexpr bool operator!=(const Stream& a, const Stream& b) { return !(a == b); }

 private:
  Device device_;
  std::uint32_t id_;
};

std::ostream& operator<<(std::ostream& os, const Stream& s);

}  // namespace streampool

template <>
struct std::hash<streampool::Stream> {
  std::size_t operator()(const streampool::Stream& s) const noexcept {
    return std::hash<streampool::Device>{}(s.device()) * 1000003u ^ s.id();
  }
};
STREAMPOOL_API_END
