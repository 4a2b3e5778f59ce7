#pragma once
// Environment settings (STREAMPOOL_*), read once at first use. A bad value throws ConfigError
// naming the variable, at every use until it is fixed.

#include <string>
#include <vector>

#include "streampool/stream_pool.h"

namespace streampool {

struct Settings {
  int streams_per_device = 32;            // STREAMPOOL_STREAMS_PER_DEVICE, 1..1024
  PoolExhaustedSetting pool_exhausted;    // STREAMPOOL_POOL_EXHAUSTED: share | wait | wait:MS | error
};

const Settings& settings();

struct SettingReport {
  std::string name;
  std::string value;   // the value in effect
  bool from_environment = false;
  std::string help;
};
// Every STREAMPOOL_* setting with its value in effect and where it came from.
std::vector<SettingReport> settings_report();

// Parses a STREAMPOOL_POOL_EXHAUSTED value; throws ConfigError.
PoolExhaustedSetting parse_pool_exhausted(const std::string& text);
std::string to_string(const PoolExhaustedSetting& setting);

}  // namespace streampool
