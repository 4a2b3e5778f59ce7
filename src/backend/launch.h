#pragma once
// launch(): the one seam every op and tensor kernel passes through. Internal.
//
// Note [One launch seam]
// Each op checks its arguments and then calls launch() once with two bodies: a host task for a
// CPU stream and a kernel launch for a CUDA stream. launch() picks the body by the device,
// takes the calling thread's current stream of it, names the op on the stream (the name an
// asynchronous failure reports) and opens the CUDA call scope (Note [Exit while threads
// work]) around the launch. What every op must do once per call goes here and nowhere else:
// the graph path's capture checks belong in this function.

#include <functional>
#include <utility>

#include "backend/cuda/exit_gate.h"
#include "core/runtime.h"

namespace streampool::detail {

// `on_cpu()` runs later on the CPU stream's worker, so it captures values, never references
// to the caller's locals. `on_cuda(stream)` runs now; `stream` is the stream's cudaStream_t.
template <typename OnCpu, typename OnCuda>
void launch(const char* op, const Device& device, OnCpu&& on_cpu, OnCuda&& on_cuda) {
  StreamImpl& s = current_impl(device);
  s.note_op(op);
  if (device.kind == DeviceKind::cpu) {
    s.enqueue_host(op, std::function<void()>(std::forward<OnCpu>(on_cpu)));
    return;
  }
  CudaCallScope scope;
  std::forward<OnCuda>(on_cuda)(s.native_handle());
}

}  // namespace streampool::detail
