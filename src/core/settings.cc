#include "streampool/settings.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>

#include "streampool/error.h"

namespace streampool {
namespace {

constexpr const char* kStreamsVar = "STREAMPOOL_STREAMS_PER_DEVICE";
constexpr const char* kExhaustedVar = "STREAMPOOL_POOL_EXHAUSTED";
constexpr const char* kMemoryLimitVar = "STREAMPOOL_MEMORY_LIMIT";
constexpr const char* kNoCachingVar = "STREAMPOOL_NO_CACHING";
constexpr const char* kAllocatorLogVar = "STREAMPOOL_ALLOCATOR_LOG";
constexpr const char* kCpuThreadsVar = "STREAMPOOL_CPU_THREADS";
constexpr const char* kBlasThreadsVar = "STREAMPOOL_CPU_BLAS_THREADS";  // the older name
constexpr const char* kCpuGemmVar = "STREAMPOOL_CPU_GEMM";
constexpr const char* kTf32Var = "STREAMPOOL_ALLOW_TF32";
constexpr const char* kGemmTuningVar = "STREAMPOOL_GEMM_TUNING";
constexpr const char* kGraphVar = "STREAMPOOL_GRAPH";
constexpr const char* kGraphCacheVar = "STREAMPOOL_GRAPH_CACHE_SIZE";
constexpr const char* kWaitSpinVar = "STREAMPOOL_WAIT_SPIN_US";

bool parse_flag(const char* var, const char* v) {
  std::string t(v);
  if (t == "1" || t == "true") return true;
  if (t == "0" || t == "false") return false;
  throw ConfigError(std::string(var) + "='" + t + "' is not one of: 0, 1, false, true");
}

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
  if (const char* v = env(kMemoryLimitVar)) s.memory_limit = parse_memory_limit(v);
  if (const char* v = env(kNoCachingVar)) s.no_caching = parse_flag(kNoCachingVar, v);
  if (const char* v = env(kAllocatorLogVar)) s.allocator_log = parse_flag(kAllocatorLogVar, v);
  if (const char* v = env(kTf32Var)) s.allow_tf32 = parse_flag(kTf32Var, v);
  if (const char* v = env(kGemmTuningVar)) s.gemm_tuning = parse_flag(kGemmTuningVar, v);
  for (const char* var : {kBlasThreadsVar, kCpuThreadsVar}) {  // the newer name wins
    const char* v = env(var);
    if (!v) continue;
    long long n = 0;
    if (!parse_int(v, 1, 256, n)) {
      throw ConfigError(std::string(var) + "='" + v + "' is not an integer from 1 to 256 (threads per CPU op)");
    }
    s.cpu_threads = static_cast<int>(n);
  }
#ifndef STREAMPOOL_HAVE_ONEDNN
  s.cpu_gemm = CpuGemm::openblas;
#endif
  if (const char* v = env(kCpuGemmVar)) s.cpu_gemm = parse_cpu_gemm(v);
  if (const char* v = env(kGraphVar)) s.graph = parse_graph_mode(v);
  if (const char* v = env(kGraphCacheVar)) {
    long long n = 0;
    if (!parse_int(v, 1, 1 << 20, n)) {
      throw ConfigError(std::string(kGraphCacheVar) + "='" + v + "' is not an integer from 1 to 1048576");
    }
    s.graph_cache_size = static_cast<int>(n);
  }
  if (const char* v = env(kWaitSpinVar)) {
    long long n = 0;
    if (!parse_int(v, 0, 1000000, n)) {
      throw ConfigError(std::string(kWaitSpinVar) + "='" + v + "' is not an integer from 0 to 1000000 (microseconds)");
    }
    s.wait_spin_us = static_cast<int>(n);
  }
  return s;
}

}  // namespace

CpuGemm parse_cpu_gemm(const std::string& text) {
  if (text == "openblas") return CpuGemm::openblas;
  if (text == "onednn") {
#ifdef STREAMPOOL_HAVE_ONEDNN
    return CpuGemm::onednn;
#else
    throw ConfigError(std::string(kCpuGemmVar) + "='onednn' but this build has no oneDNN (CMake option STREAMPOOL_ONEDNN, "
                      "Debian's libdnnl-dev); use openblas");
#endif
  }
  throw ConfigError(std::string(kCpuGemmVar) + "='" + text + "' is not one of: onednn, openblas");
}

std::string to_string(CpuGemm gemm) { return gemm == CpuGemm::onednn ? "onednn" : "openblas"; }

GraphMode parse_graph_mode(const std::string& text) {
  if (text == "auto") return GraphMode::automatic;
  if (text == "always") return GraphMode::always;
  if (text == "never") return GraphMode::never;
  throw ConfigError(std::string(kGraphVar) + "='" + text + "' is not one of: auto, always, never");
}

std::string to_string(GraphMode mode) {
  switch (mode) {
    case GraphMode::automatic: return "auto";
    case GraphMode::always: return "always";
    case GraphMode::never: return "never";
  }
  return "?";
}

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

MemoryLimitSetting parse_memory_limit(const std::string& text) {
  auto bad = [&] {
    return ConfigError(std::string(kMemoryLimitVar) + "='" + text +
                       "' is not a size (e.g. 8GiB, 512MB, 1048576) or a percentage of device memory (e.g. 90%)");
  };
  MemoryLimitSetting out;
  out.set = true;
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0 || text.find('.') != text.rfind('.')) throw bad();
  double number = std::stod(text.substr(0, i));
  std::string unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit == "%") {
    if (!(number > 0 && number <= 100)) throw bad();
    out.is_fraction = true;
    out.fraction = number / 100.0;
    return out;
  }
  double scale = 0;
  if (unit.empty() || unit == "b") scale = 1;
  else if (unit == "kb" || unit == "k") scale = 1e3;
  else if (unit == "mb" || unit == "m") scale = 1e6;
  else if (unit == "gb" || unit == "g") scale = 1e9;
  else if (unit == "tb" || unit == "t") scale = 1e12;
  else if (unit == "kib") scale = 1024.0;
  else if (unit == "mib") scale = 1024.0 * 1024;
  else if (unit == "gib") scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else throw bad();
  double bytes = number * scale;
  if (!(bytes >= 1) || bytes > 1e18) throw bad();
  out.bytes = static_cast<std::size_t>(bytes);
  return out;
}

std::string format_bytes(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

std::string to_string(const MemoryLimitSetting& s) {
  if (!s.set) return "none";
  if (s.is_fraction) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g%%", s.fraction * 100);
    return buf;
  }
  return format_bytes(s.bytes);
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
      {kMemoryLimitVar, to_string(s.memory_limit), env(kMemoryLimitVar) != nullptr,
       "cap on memory the allocator reserves per device: size (8GiB, 512MB) or percentage (90%)"},
      {kNoCachingVar, s.no_caching ? "1" : "0", env(kNoCachingVar) != nullptr,
       "1: bypass the caching allocator (every allocation and free goes to the device)"},
      {kAllocatorLogVar, s.allocator_log ? "1" : "0", env(kAllocatorLogVar) != nullptr,
       "1: one line on stderr for each segment the allocator takes from the device, and why the cache could not serve it"},
      {kCpuThreadsVar, std::to_string(s.cpu_threads), env(kCpuThreadsVar) != nullptr || env(kBlasThreadsVar) != nullptr,
       "threads per CPU op (GEMM, attention, softmax, layer norm, elementwise), while cores are idle; "
       "STREAMPOOL_CPU_BLAS_THREADS is the older name"},
      {kCpuGemmVar, to_string(s.cpu_gemm), env(kCpuGemmVar) != nullptr,
       "library of the CPU's float32 GEMMs: onednn | openblas"},
      {kTf32Var, s.allow_tf32 ? "1" : "0", env(kTf32Var) != nullptr,
       "1: float32 GEMMs on CUDA may use TF32 tensor cores (default: true float32)"},
      {kGemmTuningVar, s.gemm_tuning ? "1" : "0", env(kGemmTuningVar) != nullptr,
       "1: a half-precision CUDA GEMM's first call times cuBLASLt's first choices for 32, 4, 1 and 0 MiB of workspace and keeps the "
       "fastest; 0: cuBLASLt's first choice for 32 MiB, untimed"},
      {kGraphVar, to_string(s.graph), env(kGraphVar) != nullptr,
       "compiled modules: auto (capture, else eager with a warning) | always (capture or fail) | never (eager)"},
      {kGraphCacheVar, std::to_string(s.graph_cache_size), env(kGraphCacheVar) != nullptr,
       "input signatures a compiled module keeps graphs for (least recently used evicted)"},
      {kWaitSpinVar, std::to_string(s.wait_spin_us), env(kWaitSpinVar) != nullptr,
       "microseconds a BatchFuture wait and a BatchQueue worker spin before they sleep (0: sleep at once)"},
  };
}

}  // namespace streampool
