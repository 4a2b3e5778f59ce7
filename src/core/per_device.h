#pragma once
// PerDevice<T>: one T per device, created at its first use, never destroyed. Internal.
//
// The stream pools, the caching allocators, the CUDA event pools and the cuBLASLt handle pools
// each keep one object per device. They are created on first use from any thread, read on
// every call without a lock, and never destroyed (Note [Process lifetime]); a PerDevice is
// itself allocated once and never destroyed by its owner.

#include <atomic>
#include <mutex>
#include <string>

#include "streampool/device.h"
#include "streampool/error.h"

namespace streampool::detail {

// Most devices of one kind this build addresses (CUDA ordinals beyond are refused clearly).
inline constexpr int kMaxDevicesPerKind = 64;

template <typename T>
class PerDevice {
 public:
  // The device's object, made by `make()` (returning a new T*) at the first call for it.
  template <typename Make>
  T& get(const Device& device, Make&& make) {
    std::atomic<T*>& slot = slots_[index(device)];
    if (T* p = slot.load(std::memory_order_acquire)) return *p;
    std::lock_guard<std::mutex> lock(create_mu_);
    if (T* p = slot.load(std::memory_order_relaxed)) return *p;
    T* p = make();
    slot.store(p, std::memory_order_release);
    return *p;
  }
  // The device's object if it was ever created, else nullptr (never creates).
  T* find(const Device& device) const { return slots_[index(device)].load(std::memory_order_acquire); }

 private:
  static int index(const Device& device) {
    const int kind = static_cast<int>(device.kind);
    if (kind < 0 || kind >= kNumDeviceKinds || device.index < 0 || device.index >= kMaxDevicesPerKind) {
      throw DeviceError("device " + device.str() + " is outside what this build addresses (" +
                        std::to_string(kMaxDevicesPerKind) + " devices per kind)");
    }
    return kind * kMaxDevicesPerKind + device.index;
  }

  std::atomic<T*> slots_[kNumDeviceKinds * kMaxDevicesPerKind] = {};  // each set once under create_mu_
  std::mutex create_mu_;                                               // guards creation only
};

}  // namespace streampool::detail
