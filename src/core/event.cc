#include "streampool/event.h"

#include "core/fork_guard.h"
#include "core/runtime.h"
#include "streampool/error.h"

namespace streampool {

Event::Event(bool enable_timing) : timing_(enable_timing) {}
Event::~Event() = default;

Event::Event(Event&& other) noexcept : timing_(other.timing_) {
  std::lock_guard<std::mutex> lock(other.mu_);
  impl_ = std::move(other.impl_);
}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    std::scoped_lock lock(mu_, other.mu_);
    timing_ = other.timing_;
    impl_ = std::move(other.impl_);
  }
  return *this;
}

void Event::record(const Stream& stream) {
  detail::StreamImpl& s = detail::stream_impl(stream);
  std::lock_guard<std::mutex> lock(mu_);
  if (!impl_) {
    impl_ = detail::device_pool(stream.device()).backend.create_event(stream.device(), timing_);
  } else if (impl_->device != stream.device()) {
    throw InvalidArgument("Event::record: event belongs to " + impl_->device.str() + ", cannot record it on " +
                          stream.str());
  }
  impl_->record(s);
}

bool Event::query() const {
  detail::check_not_forked();
  auto e = impl();
  return !e || e->query();
}

void Event::synchronize() const {
  detail::check_not_forked();
  if (auto e = impl()) e->synchronize();
}

double Event::elapsed_ms(const Event& end) const {
  detail::check_not_forked();
  auto a = impl();
  auto b = end.impl();
  if (!timing_ || !end.timing_) throw InvalidArgument("Event::elapsed_ms: both events need enable_timing=true");
  if (!a || !b) throw InvalidArgument("Event::elapsed_ms: both events must have been recorded");
  if (a->device != b->device) {
    throw InvalidArgument("Event::elapsed_ms: events on different devices (" + a->device.str() + ", " +
                          b->device.str() + ")");
  }
  return a->elapsed_ms(*b);
}

std::optional<Device> Event::device() const {
  auto e = impl();
  if (!e) return std::nullopt;
  return e->device;
}

std::shared_ptr<detail::EventImpl> Event::impl() const {
  std::lock_guard<std::mutex> lock(mu_);
  return impl_;
}

}  // namespace streampool
