#pragma once
// Test support: real work on a stream and the devices the suites run on.

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "streampool/streampool.h"

namespace streampool::test {

// The device of a parameterized suite: "cpu" or "cuda" (cuda:0).
Device device_for(const std::string& name);
// Skips the current test where `name`'s device is not usable here.
bool skip_unless_available(const std::string& name);
inline std::string param_name(const testing::TestParamInfo<std::string>& info) { return info.param; }
#define STREAMPOOL_DEVICES testing::Values(std::string("cpu"), std::string("cuda"))

// Suites parameterized over STREAMPOOL_DEVICES: skips where the device is not usable here.
class DeviceTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (skip_unless_available(GetParam())) GTEST_SKIP() << GetParam() << " not available";
    device = device_for(GetParam());
  }
  Device device;
};

// A device buffer of `n` floats; submit() fills it with out[i] = i * scale + shift on the
// stream (a kernel on CUDA, a host task on the CPU) and copies it back; check() waits for
// the stream and verifies every element. Each Work owns its memory, so threads never share.
class Work {
 public:
  Work(const Device& device, std::size_t n = 1 << 14);
  ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  void submit(const Stream& stream, float scale, float shift = 1.0f);
  // Returns the number of wrong elements after synchronizing `stream`.
  std::size_t check(const Stream& stream, float scale, float shift = 1.0f);
  // submit + check on the calling thread's current stream.
  std::size_t run_once(float scale);

 private:
  Device device_;
  std::size_t n_;
  float* dev_;
  std::vector<float> host_;
};

// Raw device memory of `n` floats (the backend's, beside the caching allocator), for tests that
// need to see exactly what one stream's work left there.
class DeviceBuffer {
 public:
  DeviceBuffer(const Device& device, std::size_t n);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* data() const { return ptr_; }
  std::size_t size() const { return n_; }
  // Sets every element to `value` and waits for it (on a stream of its own).
  void fill_now(float value);
  // Copies the buffer to the host in `stream`'s order and waits for that stream.
  std::vector<float> read(const Stream& stream) const;

 private:
  Device device_;
  std::size_t n_;
  float* ptr_;
};

// Copies n floats at `p` (device memory) to the host in `stream`'s order and waits for that stream.
std::vector<float> read_floats(const Stream& stream, const float* p, std::size_t n);

// A slow producer on `stream`: waits `spin_us` microseconds there (a kernel spinning on the GPU's
// clock; a host task on the CPU), then sets out[0..n) to `value`. A consumer on another stream
// that does not wait for it reads what was there before.
void slow_fill(const Stream& stream, float* out, std::size_t n, float value, int spin_us);

// Scale value unique to (thread, iteration), exact in float.
inline float unique_scale(int thread, int iteration) { return static_cast<float>(thread * 1000 + iteration + 1) / 64.0f; }

// Restores the exhaustion policy at scope exit.
class PolicyScope {
 public:
  explicit PolicyScope(PoolExhaustedSetting s) : saved_(pool_exhausted_policy()) { set_pool_exhausted_policy(s); }
  ~PolicyScope() { set_pool_exhausted_policy(saved_); }

 private:
  PoolExhaustedSetting saved_;
};

// Runs the helper program with `args` (and `env`, "NAME=VALUE" words); returns its exit status
// (-signal when killed by a signal) and its standard output.
struct HelperResult {
  int status;
  std::string output;
};
// The repository root: the configured source directory, or (when the build tree moved to
// another machine) three levels above the test binary (build/<preset>/tests).
std::string source_dir();

// Path of the helper program (streampool_test_helper).
const char* helper_path();
HelperResult run_helper(const std::string& args, const std::string& env = "");

}  // namespace streampool::test
