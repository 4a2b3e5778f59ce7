#include "support/work.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <thread>

#include "core/backend_interface.h"
#include "core/runtime.h"

#ifdef STREAMPOOL_WITH_CUDA
#include <cuda_runtime.h>
namespace streampool::detail {
cudaError_t launch_self_test_kernel(float* out, int n, float scale, float shift, cudaStream_t stream);
}
namespace streampool::test {
cudaError_t launch_slow_fill(float* out, int n, float value, int spin_us, cudaStream_t stream);  // kernels.cu
}
#endif

namespace streampool::test {

Device device_for(const std::string& name) { return Device::parse(name); }

bool skip_unless_available(const std::string& name) {
  Device d = device_for(name);
  if (!is_compiled(d.kind)) return true;
  return device_count(d.kind) <= d.index;
}

Work::Work(const Device& device, std::size_t n)
    : device_(device), n_(n), host_(n, -1.0f) {
  dev_ = static_cast<float*>(detail::backend(device.kind).allocate(device, n * sizeof(float)));
}

Work::~Work() { detail::backend(device_.kind).deallocate(device_, dev_); }

void Work::submit(const Stream& stream, float scale, float shift) {
  std::fill(host_.begin(), host_.end(), -1.0f);
  detail::StreamImpl& s = detail::stream_impl(stream);
  if (device_.kind == DeviceKind::cpu) {
    float* out = dev_;
    std::size_t n = n_;
    s.enqueue_host("test_fill", [out, n, scale, shift] {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(i) * scale + shift;
    });
  } else {
#ifdef STREAMPOOL_WITH_CUDA
    cudaError_t st = detail::launch_self_test_kernel(dev_, static_cast<int>(n_), scale, shift,
                                                     static_cast<cudaStream_t>(s.native_handle()));
    if (st != cudaSuccess) throw Error(std::string("test kernel launch: ") + cudaGetErrorString(st));
#endif
  }
  detail::backend(device_.kind).copy_async(host_.data(), dev_, n_ * sizeof(float), s);
}

std::size_t Work::check(const Stream& stream, float scale, float shift) {
  stream.synchronize();
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n_; ++i) wrong += host_[i] != static_cast<float>(i) * scale + shift;
  return wrong;
}

std::size_t Work::run_once(float scale) {
  Stream s = current_stream(device_);
  submit(s, scale);
  return check(s, scale);
}

DeviceBuffer::DeviceBuffer(const Device& device, std::size_t n) : device_(device), n_(n) {
  ptr_ = static_cast<float*>(detail::backend(device.kind).allocate(device, n * sizeof(float)));
}

DeviceBuffer::~DeviceBuffer() { detail::backend(device_.kind).deallocate(device_, ptr_); }

void DeviceBuffer::fill_now(float value) {
  std::vector<float> host(n_, value);
  Stream s = stream_from_pool(device_);
  detail::backend(device_.kind).copy_async(ptr_, host.data(), n_ * sizeof(float), detail::stream_impl(s));
  s.synchronize();
}

std::vector<float> DeviceBuffer::read(const Stream& stream) const { return read_floats(stream, ptr_, n_); }

std::vector<float> read_floats(const Stream& stream, const float* p, std::size_t n) {
  std::vector<float> host(n, -1.0f);
  detail::backend(stream.device().kind).copy_async(host.data(), p, n * sizeof(float), detail::stream_impl(stream));
  stream.synchronize();
  return host;
}

void slow_fill(const Stream& stream, float* out, std::size_t n, float value, int spin_us) {
  detail::StreamImpl& s = detail::stream_impl(stream);
  if (stream.device().kind == DeviceKind::cpu) {
    s.enqueue_host("test_slow_fill", [out, n, value, spin_us] {
      std::this_thread::sleep_for(std::chrono::microseconds(spin_us));
      for (std::size_t i = 0; i < n; ++i) out[i] = value;
    });
    return;
  }
#ifdef STREAMPOOL_WITH_CUDA
  cudaError_t st = launch_slow_fill(out, static_cast<int>(n), value, spin_us, static_cast<cudaStream_t>(s.native_handle()));
  if (st != cudaSuccess) throw Error(std::string("slow_fill launch: ") + cudaGetErrorString(st));
#else
  throw Error("slow_fill: this build has no CUDA");
#endif
}

namespace {
std::string exe_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string exe(buf, static_cast<std::size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}
}  // namespace

std::string source_dir() {
  static const std::string dir = [] {
    std::string configured = STREAMPOOL_TEST_SOURCE_DIR;
    if (access((configured + "/tests/data/golden/manifest.json").c_str(), R_OK) == 0) return configured;
    return exe_dir() + "/../../..";
  }();
  return dir;
}

const char* helper_path() {
  // Beside the running test binary, so a build tree still works after it moved (it travels to
  // the GPU machine); the configured path is the fallback.
  static const std::string path = [] {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
      std::string exe(buf, static_cast<std::size_t>(n));
      std::string candidate = exe.substr(0, exe.rfind('/') + 1) + "streampool_test_helper";
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return std::string(STREAMPOOL_TEST_HELPER_PATH);
  }();
  return path.c_str();
}

HelperResult run_helper(const std::string& args, const std::string& env) {
  std::string cmd = (env.empty() ? "" : "env " + env + " ") + helper_path() + " " + args + " 2>&1";
  HelperResult r{-1, {}};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 512> buf;
  while (std::fgets(buf.data(), buf.size(), p)) r.output += buf.data();
  int st = pclose(p);
  if (WIFEXITED(st)) r.status = WEXITSTATUS(st);
  else if (WIFSIGNALED(st)) r.status = -WTERMSIG(st);
  return r;
}

}  // namespace streampool::test
