#pragma once
// Every failure streampool reports is an exception derived from streampool::Error.

#include <exception>
#include <stdexcept>
#include <string>

#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Bad input from the caller: wrong shape, dtype, device, argument value.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// A device that does not exist, or a backend this build does not have.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A STREAMPOOL_* environment variable holds a value that cannot be used.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Device use in a child created by fork() after the parent used a device.
class ForkedChildError : public Error {
 public:
  using Error::Error;
};

// Every pool stream is leased and STREAMPOOL_POOL_EXHAUSTED is `error` or `wait:MS` timed out.
class PoolExhaustedError : public Error {
 public:
  using Error::Error;
};

// The caching allocator could not satisfy a request even after freeing its cache; the message
// gives the request, the device's total and free memory, the limit, and what the allocator holds.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

// A file (safetensors, ...) is malformed; the message says where and why.
class FormatError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime call failed; names the call and the device.
class CudaError : public Error {
 public:
  CudaError(const std::string& what, int code) : Error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// A module could not be captured into a graph, or a graph could not run (graph.h): names the
// module, the input signature and the reason (an op that cannot be captured, a CUDA error).
class GraphError : public Error {
 public:
  using Error::Error;
};

// BatchQueue (batch_queue.h): a request whose deadline passed before it ran (it was not run).
class TimeoutError : public Error {
 public:
  using Error::Error;
};

// BatchQueue: the queue is full and its policy rejects (at once, or after the block timeout).
class QueueFullError : public Error {
 public:
  using Error::Error;
};

// BatchQueue: the request was cancelled before it ran.
class CancelledError : public Error {
 public:
  using Error::Error;
};

// BatchQueue: submit() after close(), or in a process forked from the one that made the queue.
class QueueClosedError : public Error {
 public:
  using Error::Error;
};

// Work that ran asynchronously on a stream failed. Raised where someone waits on that stream
// (or on an event recorded after the failure); `op()` names the op, `cause()` is the original.
class AsyncError : public Error {
 public:
  AsyncError(const std::string& what, std::string op, std::exception_ptr cause)
      : Error(what), op_(std::move(op)), cause_(std::move(cause)) {}
  const std::string& op() const noexcept { return op_; }
  std::exception_ptr cause() const noexcept { return cause_; }

 private:
  std::string op_;
  std::exception_ptr cause_;
};

}  // namespace streampool
STREAMPOOL_API_END
