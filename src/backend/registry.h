#pragma once
// The backend objects, one per kind, never destroyed (Note [Process lifetime]). Internal.

#include "core/backend_interface.h"

namespace streampool::detail {

Backend& cpu_backend();
// The CUDA backend, or nullptr in a build without it (backend/no_cuda/).
Backend* cuda_backend_if_built();

}  // namespace streampool::detail
