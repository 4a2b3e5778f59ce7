// The backends this build has (Note [Backend registry]).

#include "backend/registry.h"

namespace streampool::detail {

Backend* find_backend(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::cpu:
      return &cpu_backend();
    case DeviceKind::cuda:
      return cuda_backend_if_built();
  }
  return nullptr;
}

}  // namespace streampool::detail
