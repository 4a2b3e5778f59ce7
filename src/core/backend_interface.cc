#include "core/backend_interface.h"

#include <sstream>
#include <utility>

#include "streampool/error.h"

namespace streampool::detail {

void AsyncErrorSlot::set_if_empty(std::exception_ptr error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) return;
  error_ = std::move(error);
  pending_.store(true, std::memory_order_release);
}

std::exception_ptr AsyncErrorSlot::take() {
  if (!pending_.load(std::memory_order_acquire)) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  pending_.store(false, std::memory_order_relaxed);
  return std::exchange(error_, nullptr);
}

std::exception_ptr AsyncErrorSlot::peek() const {
  if (!pending_.load(std::memory_order_acquire)) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

std::exception_ptr make_async_error(const char* op, const Stream& stream, std::exception_ptr cause) {
  std::string reason = "unknown exception";
  try {
    std::rethrow_exception(cause);
  } catch (const std::exception& e) {
    reason = e.what();
  } catch (...) {
  }
  std::ostringstream msg;
  msg << "op '" << (op ? op : "?") << "' failed asynchronously on " << stream.str() << ": " << reason;
  return std::make_exception_ptr(AsyncError(msg.str(), op ? op : "?", std::move(cause)));
}

Backend& backend(DeviceKind kind) {
  if (Backend* b = find_backend(kind)) return *b;
  throw DeviceError(std::string("streampool was built without the ") + std::string(to_string(kind)) +
                    " backend (configure with a CUDA toolkit present, or -DSTREAMPOOL_CUDA=ON)");
}

}  // namespace streampool::detail
