#pragma once
// Environment settings (STREAMPOOL_*), read once at first use. A bad value throws ConfigError
// naming the variable, at every use until it is fixed.

#include <cstddef>
#include <string>
#include <vector>

#include "streampool/stream_pool.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

// What a compiled module does (graph.h): capture and replay where it can, falling back to eager
// with a warning (automatic); capture or fail (always); run eagerly (never).
enum class GraphMode { automatic, always, never };

// Which library computes the CPU's float32 GEMMs (README, "CPU GEMM").
enum class CpuGemm { onednn, openblas };

// A memory cap: absolute bytes, or a fraction of the device's total memory.
struct MemoryLimitSetting {
  bool set = false;
  bool is_fraction = false;
  std::size_t bytes = 0;
  double fraction = 0;  // in (0, 1]
};

struct Settings {
  int streams_per_device = 32;            // STREAMPOOL_STREAMS_PER_DEVICE, 1..1024
  PoolExhaustedSetting pool_exhausted;    // STREAMPOOL_POOL_EXHAUSTED: share | wait | wait:MS | error
  MemoryLimitSetting memory_limit;        // STREAMPOOL_MEMORY_LIMIT: "8GiB", "512MB", "90%"
  bool no_caching = false;                // STREAMPOOL_NO_CACHING=1: every allocation goes to the device
  bool allocator_log = false;             // STREAMPOOL_ALLOCATOR_LOG=1: a stderr line per segment taken from the device
  int cpu_threads = 1;                    // STREAMPOOL_CPU_THREADS (or the older STREAMPOOL_CPU_BLAS_THREADS): threads per CPU op
  CpuGemm cpu_gemm = CpuGemm::onednn;     // STREAMPOOL_CPU_GEMM: onednn | openblas (openblas where oneDNN is not built)
  bool allow_tf32 = false;                // STREAMPOOL_ALLOW_TF32=1: float32 GEMMs may use TF32 on CUDA
  bool gemm_tuning = true;                // STREAMPOOL_GEMM_TUNING=0: CUDA GEMMs keep cuBLASLt's first choice, untimed
  GraphMode graph = GraphMode::automatic; // STREAMPOOL_GRAPH: auto | always | never
  int graph_cache_size = 64;              // STREAMPOOL_GRAPH_CACHE_SIZE: input signatures kept per compiled module
  int wait_spin_us = 50;                  // STREAMPOOL_WAIT_SPIN_US: a BatchFuture wait spins this long, then sleeps
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
// Parses a STREAMPOOL_MEMORY_LIMIT value ("8GiB", "8GB", "512MiB", "1048576", "90%"); throws ConfigError.
MemoryLimitSetting parse_memory_limit(const std::string& text);
std::string to_string(const MemoryLimitSetting& setting);
// Parses a STREAMPOOL_GRAPH value (auto, always, never); throws ConfigError.
GraphMode parse_graph_mode(const std::string& text);
std::string to_string(GraphMode mode);
// Parses a STREAMPOOL_CPU_GEMM value (onednn, openblas); throws ConfigError, also for onednn
// in a build without it.
CpuGemm parse_cpu_gemm(const std::string& text);
std::string to_string(CpuGemm gemm);
// "1.50 GiB"
std::string format_bytes(std::size_t bytes);

}  // namespace streampool
STREAMPOOL_API_END
