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
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) return embedding(ids, weight.to(DType::float32)).to(dt);
  const Tensor idc = ids.dtype() == DType::int64 ? ids.contiguous() : ids.to(DType::int64);
  const Tensor wc = weight.contiguous();
  const std::int64_t num = weight.size(0), dim = weight.size(1), count = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = empty(out_shape, dt, dev);
  if (out.numel() == 0) return out;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const std::int64_t* ip = idc.data<std::int64_t>();
    const float* wp = wc.data<float>();
    float* op_ = out.data<float>();
    s.enqueue_host(op, [=] {
      bool bad = false;
      cpu::embedding(op_, ip, count, wp, num, dim, &bad);
      if (bad) throw InvalidArgument("embedding: an id is outside [0, " + std::to_string(num) + ")");
    });
    return out;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::embedding(out.data_ptr(), idc.data<std::int64_t>(), count, wc.data_ptr(), dt, num, dim, dev, s.native_handle());
#endif
  return out;
}

}  // namespace streampool
