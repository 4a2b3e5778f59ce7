#pragma once
// Counting GPUs without initializing the CUDA driver. Internal.

namespace streampool::detail {

// The number of GPUs visible to CUDA, from NVML (loaded with dlopen) and CUDA_VISIBLE_DEVICES,
// or -1 where that cannot tell (no NVML, or device UUIDs in CUDA_VISIBLE_DEVICES). NVML, unlike
// cuInit, leaves a later fork() free to use CUDA in the child.
int nvml_visible_device_count();

}  // namespace streampool::detail
