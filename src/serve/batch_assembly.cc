#include "serve/batch_assembly.h"

#include <cstring>

#include "streampool/error.h"

namespace streampool::detail {

Shape batch_shape(const BatchPlan& plan, std::int64_t seq_dim) {
  Shape s = plan.reqs.front()->in.x.shape();
  s[0] = plan.rows;
  if (seq_dim >= 1) s[static_cast<std::size_t>(seq_dim)] = plan.len;
  return s;
}

void gather_mask(const BatchPlan& plan, std::uint8_t* mask) {
  const std::int64_t L = plan.len;
  for (std::size_t i = 0; i < plan.reqs.size(); ++i) {
    const RequestState& r = *plan.reqs[i];
    for (std::int64_t row = 0; row < r.rows; ++row) {
      std::uint8_t* m = mask + (plan.offsets[i] + row) * L;
      if (r.padded.empty()) {
        std::memset(m, 0, static_cast<std::size_t>(r.len));
      } else {
        std::memcpy(m, r.padded.data() + row * r.len, static_cast<std::size_t>(r.len));
      }
      std::memset(m + r.len, 1, static_cast<std::size_t>(L - r.len));  // the padding: masked
    }
  }
}

void gather_host(const BatchPlan& plan, std::int64_t seq_dim, void* x, std::uint8_t* mask, std::int64_t* types) {
  const Tensor& first = plan.reqs.front()->in.x;
  const std::size_t es = dtype_size(first.dtype());
  // Bytes of one position along seq_dim (everything after it), or of one row without one.
  std::int64_t inner = 1;
  const std::int64_t from = seq_dim == 1 ? 2 : 1;
  for (std::int64_t d = from; d < first.dim(); ++d) inner *= first.size(d);
  const std::size_t pos_bytes = static_cast<std::size_t>(inner) * es;
  char* dst = static_cast<char*>(x);
  for (std::size_t i = 0; i < plan.reqs.size(); ++i) {
    const RequestState& r = *plan.reqs[i];
    const char* src = static_cast<const char*>(r.in.x.data_ptr());
    if (seq_dim != 1) {  // equal lengths (only padding modules batch unequal ones, along dimension 1)
      std::memcpy(dst + static_cast<std::size_t>(plan.offsets[i]) * pos_bytes, src, static_cast<std::size_t>(r.rows) * pos_bytes);
      continue;
    }
    for (std::int64_t row = 0; row < r.rows; ++row) {
      char* d = dst + static_cast<std::size_t>((plan.offsets[i] + row) * plan.len) * pos_bytes;
      const std::size_t real = static_cast<std::size_t>(r.len) * pos_bytes;
      std::memcpy(d, src + static_cast<std::size_t>(row) * real, real);
      std::memset(d + real, 0, static_cast<std::size_t>(plan.len - r.len) * pos_bytes);
    }
  }
  if (mask) gather_mask(plan, mask);
  if (types) {
    for (std::size_t i = 0; i < plan.reqs.size(); ++i) {
      const RequestState& r = *plan.reqs[i];
      const auto* t = r.in.token_type_ids.defined() ? r.in.token_type_ids.data<std::int64_t>() : nullptr;
      for (std::int64_t row = 0; row < r.rows; ++row) {
        std::int64_t* d = types + (plan.offsets[i] + row) * plan.len;
        if (t) {
          std::memcpy(d, t + row * r.len, static_cast<std::size_t>(r.len) * sizeof(std::int64_t));
        } else {
          std::memset(d, 0, static_cast<std::size_t>(r.len) * sizeof(std::int64_t));
        }
        std::memset(d + r.len, 0, static_cast<std::size_t>(plan.len - r.len) * sizeof(std::int64_t));
      }
    }
  }
}

}  // namespace streampool::detail
