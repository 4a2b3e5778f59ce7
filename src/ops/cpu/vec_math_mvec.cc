// vec_math.h through glibc's libmvec: the x86-64 vector ABI's 4-float SSE entry points, which
// glibc resolves at load time to the best code the CPU runs (SSE4.1, AVX2 or AVX-512).

#include <immintrin.h>

#include <algorithm>

#include "ops/cpu/vec_math.h"

extern "C" {
__m128 _ZGVbN4v_erff(__m128);
__m128 _ZGVbN4v_expf(__m128);
__m128 _ZGVbN4v_tanhf(__m128);
}

namespace streampool::detail::cpu {

namespace {
template <__m128 (*F)(__m128)>
void map4(float* y, const float* x, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(y + i, F(_mm_loadu_ps(x + i)));
  if (i < n) {  // the tail through the same call: the same value, the same result
    alignas(16) float in[4] = {0, 0, 0, 0}, out[4];
    std::copy(x + i, x + n, in);
    _mm_store_ps(out, F(_mm_load_ps(in)));
    std::copy(out, out + (n - i), y + i);
  }
}
}  // namespace

void erf_n(float* y, const float* x, std::int64_t n) { map4<_ZGVbN4v_erff>(y, x, n); }
void exp_n(float* y, const float* x, std::int64_t n) { map4<_ZGVbN4v_expf>(y, x, n); }
void tanh_n(float* y, const float* x, std::int64_t n) { map4<_ZGVbN4v_tanhf>(y, x, n); }

}  // namespace streampool::detail::cpu
