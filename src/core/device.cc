#include "streampool/device.h"

#include <charconv>

#include "core/fork_guard.h"
#include "core/runtime.h"
#include "streampool/error.h"
#include "streampool/stream_pool.h"

namespace streampool {

std::string_view to_string(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::cpu:
      return "cpu";
    case DeviceKind::cuda:
      return "cuda";
  }
  return "?";
}

Device Device::parse(std::string_view text) {
  auto bad = [&](const char* why) {
    return InvalidArgument("cannot parse device '" + std::string(text) + "': " + why +
                           " (expected cpu, cuda, or cuda:N)");
  };
  std::string_view name = text.substr(0, text.find(':'));
  DeviceKind kind;
  if (name == "cpu") {
    kind = DeviceKind::cpu;
  } else if (name == "cuda") {
    kind = DeviceKind::cuda;
  } else {
    throw bad("unknown device kind");
  }
  int index = 0;
  if (name.size() < text.size()) {
    std::string_view num = text.substr(name.size() + 1);
    if (num.empty() || num.size() > 4) throw bad("bad index");
    auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), index);
    if (ec != std::errc() || ptr != num.data() + num.size() || index < 0) throw bad("bad index");
  }
  if (kind == DeviceKind::cpu && index != 0) throw bad("the CPU is device cpu:0 only");
  return Device(kind, index);
}

std::string Device::str() const {
  // "cpu" for the one CPU device; any other index is spelled out, so a message about a
  // nonexistent cpu:1 says so.
  if (kind == DeviceKind::cpu && index == 0) return "cpu";
  return std::string(to_string(kind)) + ":" + std::to_string(index);
}

std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

bool is_compiled(DeviceKind kind) { return detail::find_backend(kind) != nullptr; }

int device_count(DeviceKind kind) {
  if (kind == DeviceKind::cpu) return 1;
  detail::check_not_forked();
  detail::Backend* b = detail::find_backend(kind);
  return b ? std::min(b->device_count(), detail::kMaxDevicesPerKind) : 0;
}

void check_device(const Device& device) { (void)detail::device_pool(device); }

DeviceProperties device_properties(const Device& device) {
  return detail::device_pool(device).backend.properties(device.index);
}

BackendVersions backend_versions(DeviceKind kind) {
  detail::Backend* b = detail::find_backend(kind);
  return b ? b->versions() : BackendVersions{};
}

void self_test(const Device& device) {
  detail::DevicePool& pool = detail::device_pool(device);
  Stream s = stream_from_pool(device);
  pool.backend.self_test(pool.impl(s.id()));
}

}  // namespace streampool
