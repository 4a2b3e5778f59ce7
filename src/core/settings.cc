#include "streampool/settings.h"

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <mutex>

#include "streampool/error.h"

namespace streampool {
namespace {

constexpr const char* kStreamsVar = "STREAMPOOL_STREAMS_PER_DEVICE";
constexpr const char* kExhaustedVar = "STREAMPOOL_POOL_EXHAUSTED";

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

// Strict decimal parse: digits only, in [lo, hi].
bool parse_int(const std::string& s, long long lo, long long hi, long long& out) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  out = std::stoll(s);
  return out >= lo && out <= hi;
}

Settings load() {
  Settings s;
  if (const char* v = env(kStreamsVar)) {
    long long n = 0;
    if (!parse_int(v, 1, 1024, n))
      throw ConfigError(std::string(kStreamsVar) + "='" + v +
                        "' is not an integer from 1 to 1024 (streams per device, default 32)");
    s.streams_per_device = static_cast<int>(n);
  }
  if (const char* v = env(kExhaustedVar)) s.pool_exhausted = parse_pool_exhausted(v);
  return s;
}

}  // namespace

PoolExhaustedSetting parse_pool_exhausted(const std::string& text) {
  PoolExhaustedSetting out;
  long long ms = 0;
  if (text == "share") {
    out.policy = ExhaustedPolicy::share;
  } else if (text == "error") {
    out.policy = ExhaustedPolicy::error;
  } else if (text == "wait") {
    out.policy = ExhaustedPolicy::wait;
  } else if (text.rfind("wait:", 0) == 0 &&
             parse_int(text.substr(5), 0, std::numeric_limits<int>::max(), ms)) {
    out.policy = ExhaustedPolicy::wait;
    out.wait_ms = ms;
  } else {
    throw ConfigError(std::string(kExhaustedVar) + "='" + text +
                      "' is not one of: share, wait, wait:MS (MS a whole number of milliseconds), error");
  }
  return out;
}

std::string to_string(const PoolExhaustedSetting& s) {
  switch (s.policy) {
    case ExhaustedPolicy::share:
      return "share";
    case ExhaustedPolicy::error:
      return "error";
    case ExhaustedPolicy::wait:
      return s.wait_ms < 0 ? "wait" : "wait:" + std::to_string(s.wait_ms);
  }
  return "?";
}

const Settings& settings() {
  // Read once; a bad value throws here at every call (call_once retries after a throw), so the
  // error reaches each caller rather than a default silently taking its place.
  static std::once_flag once;
  static Settings* loaded = nullptr;  // process lifetime, written once under `once`
  std::call_once(once, [] { loaded = new Settings(load()); });
  return *loaded;
}

std::vector<SettingReport> settings_report() {
  const Settings& s = settings();
  return {
      {kStreamsVar, std::to_string(s.streams_per_device), env(kStreamsVar) != nullptr,
       "streams per device: the default stream plus the pool (1..1024)"},
      {kExhaustedVar, to_string(pool_exhausted_policy()), env(kExhaustedVar) != nullptr,
       "when every pool stream is leased: share | wait | wait:MS | error"},
  };
}

}  // namespace streampool
