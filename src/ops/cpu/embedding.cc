// CPU embedding: rows of the table copied by id.

#include <cstring>

#include "ops/cpu/kernels.h"

namespace streampool::detail::cpu {

void embedding(float* out, const std::int64_t* ids, std::int64_t count, const float* weight, std::int64_t num,
               std::int64_t dim, bool* out_of_range) {
  for (std::int64_t i = 0; i < count; ++i) {
    std::int64_t id = ids[i];
    if (id < 0 || id >= num) {
      *out_of_range = true;
      std::memset(out + i * dim, 0, sizeof(float) * dim);
      continue;
    }
    std::memcpy(out + i * dim, weight + id * dim, sizeof(float) * dim);
  }
}

}  // namespace streampool::detail::cpu
