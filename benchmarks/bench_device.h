#pragma once
// The device of the Google Benchmark programs: STREAMPOOL_BENCH_DEVICE, else cuda:0 where
// usable, else the CPU.

#include <cstdlib>

#include "streampool/streampool.h"

inline streampool::Device bench_device() {
  using namespace streampool;
  if (const char* d = std::getenv("STREAMPOOL_BENCH_DEVICE")) return Device::parse(d);
  return is_compiled(DeviceKind::cuda) && device_count(DeviceKind::cuda) > 0 ? Device(DeviceKind::cuda, 0)
                                                                             : Device(DeviceKind::cpu);
}
