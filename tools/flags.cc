// Flag values shared by the subcommands.

#include "commands.h"

#include <cstdio>
#include <sstream>

#include "streampool/error.h"
#include "streampool/settings.h"
#include "streampool/stream_pool.h"

namespace streampool::tools {

DType parse_float_dtype(const std::string& flag, const std::string& text) {
  DType t = DType::float32;
  try {
    t = parse_dtype(text);
  } catch (const InvalidArgument&) {
    t = DType::int64;  // reported below, with the one message
  }
  if (!is_floating(t)) throw InvalidArgument(flag + ": '" + text + "' is not float32, float16 or bfloat16");
  return t;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

void check_threads_fit_pool(int threads) {
  const int pool_streams = streams_per_device() - 1;
  const PoolExhaustedSetting policy = pool_exhausted_policy();
  if (policy.policy != ExhaustedPolicy::share && threads > pool_streams) {
    throw InvalidArgument("--threads " + std::to_string(threads) + " needs " + std::to_string(threads) +
                          " pool streams but each device has " + std::to_string(pool_streams) +
                          " (STREAMPOOL_STREAMS_PER_DEVICE=" + std::to_string(streams_per_device()) +
                          ") and STREAMPOOL_POOL_EXHAUSTED=" + to_string(policy) + " does not share them; use at most " +
                          std::to_string(pool_streams) + " threads, more streams, or the share policy");
  }
}

Device pick_device(const std::string& flag_value, const char* command) {
  Device dev;
  if (flag_value.empty()) {
    const bool gpu = is_compiled(DeviceKind::cuda) && device_count(DeviceKind::cuda) > 0;
    dev = gpu ? Device(DeviceKind::cuda, 0) : Device(DeviceKind::cpu);
    if (!gpu) std::fprintf(stderr, "%s: no usable GPU, running on the CPU\n", command);
  } else {
    dev = Device::parse(flag_value);
  }
  check_device(dev);
  return dev;
}

}  // namespace streampool::tools
