// embedding: rows of a table picked by integer ids.

#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor embedding(const Tensor& ids, const Tensor& weight) {
  const char* op = "embedding";
  check_floating(op, weight, "weight");
  check_dim(op, weight, "weight", 2);
  if (!ids.defined()) op_error(op, "ids are undefined", {&weight});
  if (ids.dtype() != DType::int64 && ids.dtype() != DType::int32) op_error(op, "ids must be int64 or int32", {&ids});
  if (ids.device() != weight.device()) op_error(op, "ids and weight are on different devices", {&ids, &weight});
  const Device dev = weight.device();
  const DType dt = weight.dtype();
  if (cpu_widens(weight)) return embedding(ids, widened(weight)).to(dt);
  const Tensor idc = ids.dtype() == DType::int64 ? ids.contiguous() : ids.to(DType::int64);
  const Tensor wc = weight.contiguous();
  const std::int64_t num = weight.size(0), dim = weight.size(1), count = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = empty(out_shape, dt, dev);
  if (out.numel() == 0) return out;
  const std::int64_t* ip = idc.data<std::int64_t>();
  const void* wp = wc.data_ptr();
  void* outp = out.data_ptr();
  launch(
      op, dev,
      [=] {
        bool bad = false;
        cpu::embedding(static_cast<float*>(outp), ip, count, static_cast<const float*>(wp), num, dim, &bad);
        if (bad) throw InvalidArgument("embedding: an id is outside [0, " + std::to_string(num) + ")");
      },
      [&](void* stream) { cuda::embedding(outp, ip, count, wp, dt, num, dim, dev, stream); });
  return out;
}

}  // namespace streampool
