#include "streampool/stream.h"

#include "core/runtime.h"
#include "streampool/error.h"
#include "streampool/event.h"

namespace streampool {

bool Stream::query() const { return detail::stream_impl(*this).query(); }

void Stream::synchronize() const { detail::stream_impl(*this).synchronize(); }

void Stream::wait(const Event& event) const {
  detail::StreamImpl& self = detail::stream_impl(*this);
  std::shared_ptr<detail::EventImpl> e = event.impl();
  if (!e) return;  // never recorded: complete
  if (e->device.kind != device_.kind) {
    throw InvalidArgument("Stream::wait: " + str() + " cannot wait on an event recorded on " + e->device.str() +
                          " (events do not cross device kinds)");
  }
  self.wait(*e);
}

void Stream::enqueue_host(const char* op, std::function<void()> task) const {
  if (!task) throw InvalidArgument("Stream::enqueue_host: empty task for op '" + std::string(op ? op : "?") + "'");
  detail::stream_impl(*this).enqueue_host(op, std::move(task));
}

void* Stream::native_handle() const { return detail::stream_impl(*this).native_handle(); }

std::string Stream::str() const { return device_.str() + "/stream" + std::to_string(id_); }

std::ostream& operator<<(std::ostream& os, const Stream& s) { return os << s.str(); }

}  // namespace streampool
