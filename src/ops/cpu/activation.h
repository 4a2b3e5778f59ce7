#pragma once
// One activation on one float: the CPU kernels' shared definition. Internal.

#include <cmath>

#include "streampool/ops.h"

namespace streampool::detail::cpu {

inline float act_one(float x, Activation act) {
  switch (act) {
    case Activation::none:
      return x;
    case Activation::relu:
      return x > 0 ? x : 0.0f;
    case Activation::gelu:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Activation::gelu_tanh: {
      const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(u));
    }
    case Activation::silu:
      return x / (1.0f + std::exp(-x));
    case Activation::tanh:
      return std::tanh(x);
  }
  return x;
}


}  // namespace streampool::detail::cpu
