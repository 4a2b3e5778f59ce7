#pragma once
// Device: which processor runs the work. A plain value: {kind, index}.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

enum class DeviceKind : std::uint8_t { cpu = 0, cuda = 1 };
inline constexpr int kNumDeviceKinds = 2;

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceKind k, int i = 0) : kind(k), index(i) {}
  // Parses "cpu", "cpu:0", "cuda", "cuda:1"; throws InvalidArgument otherwise.
  static Device parse(std::string_view text);

  std::string str() const;  // "cpu" (cpu:0), "cuda:1"; other indices spelled out ("cpu:1")
  // Spelled out (not defaulted) so CUDA sources, compiled as C++17, can include this header.
  friend constexpr bool operator==(const Device& a, const Device& b) { return a.kind == b.kind && a.index == b.index; }
  friend constexpr bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

std::ostream& operator<<(std::ostream& os, const Device& d);
std::string_view to_string(DeviceKind kind);

// Whether this build has the backend at all.
bool is_compiled(DeviceKind kind);

// Number of visible devices of a kind: 1 for the CPU; for CUDA 0 where no GPU or driver is
// visible. Asking does not initialize the CUDA driver where NVML can answer, so a process that
// only asked may still fork children that use CUDA.
int device_count(DeviceKind kind);

// Throws DeviceError unless `device` exists in this build and process.
void check_device(const Device& device);

struct DeviceProperties {
  std::string name;
  std::size_t total_memory = 0;  // bytes
  std::size_t free_memory = 0;   // bytes, at the time of the call
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;  // CUDA SMs; logical cores for the CPU
};
DeviceProperties device_properties(const Device& device);

struct BackendVersions {
  int runtime = 0;  // e.g. 13000 for CUDA 13.0; 0 where not applicable
  int driver = 0;   // highest CUDA version the driver supports; 0 where no driver
};
BackendVersions backend_versions(DeviceKind kind);

// Runs a small computation on a pool stream of `device` and checks its result; throws on failure.
void self_test(const Device& device);

}  // namespace streampool

template <>
struct std::hash<streampool::Device> {
  std::size_t operator()(const streampool::Device& d) const noexcept {
    return (static_cast<std::size_t>(d.kind) << 16) ^ static_cast<std::size_t>(d.index);
  }
};
STREAMPOOL_API_END
