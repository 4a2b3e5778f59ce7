#include "backend/cuda/nvml_count.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace streampool::detail {

int nvml_visible_device_count() {
  // CUDA_VISIBLE_DEVICES, as the CUDA runtime reads it: entries up to the first invalid one.
  std::vector<int> visible;
  bool restricted = false;
  if (const char* env = std::getenv("CUDA_VISIBLE_DEVICES")) {
    restricted = true;
    std::string s(env);
    std::size_t pos = 0;
    while (pos <= s.size()) {
      std::size_t end = s.find(',', pos);
      std::string item = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      while (!item.empty() && item.front() == ' ') item.erase(item.begin());
      if (item.empty()) break;
      if (item.rfind("GPU-", 0) == 0 || item.rfind("MIG-", 0) == 0) return -1;  // UUIDs: ask CUDA
      char* endp = nullptr;
      long v = std::strtol(item.c_str(), &endp, 10);
      if (endp == item.c_str() || v < 0) break;
      visible.push_back(static_cast<int>(v));
      if (end == std::string::npos) break;
      pos = end + 1;
    }
    if (visible.empty()) return 0;
  }

  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return -1;
  using InitFn = int (*)();
  using CountFn = int (*)(unsigned*);
  auto init = reinterpret_cast<InitFn>(dlsym(lib, "nvmlInit_v2"));
  auto count = reinterpret_cast<CountFn>(dlsym(lib, "nvmlDeviceGetCount_v2"));
  auto shutdown = reinterpret_cast<InitFn>(dlsym(lib, "nvmlShutdown"));
  int result = -1;
  if (init && count && shutdown && init() == 0) {
    unsigned n = 0;
    if (count(&n) == 0) {
      result = static_cast<int>(n);
      if (restricted) {
        int k = 0;
        for (int v : visible) {
          if (v >= result) break;  // the runtime stops at the first ordinal out of range
          ++k;
        }
        result = k;
      }
    }
    shutdown();
  }
  // The library stays loaded: unloading NVML while another thread uses it is not safe.
  return result;
}

}  // namespace streampool::detail
