// Interop with other libraries' memory and streams (include/streampool/interop.h).

#include "streampool/interop.h"

#include <string>
#include <utility>

#include "core/runtime.h"
#include "streampool/allocator.h"
#include "streampool/error.h"
#include "tensor/tensor_impl.h"

namespace streampool {

Tensor from_external(void* data, const Shape& shape, const Shape& strides, DType dtype, const Device& device,
                     std::shared_ptr<void> owner) {
  const std::size_t esize = dtype_size(dtype);
  for (std::int64_t d : shape)
    if (d < 0) throw InvalidArgument("from_external: negative size in shape " + shape_str(shape));
  const std::int64_t n = shape_numel(shape);
  Shape st = strides.empty() ? detail::contiguous_strides(shape) : strides;
  if (st.size() != shape.size()) {
    throw InvalidArgument("from_external: " + std::to_string(st.size()) + " strides for shape " + shape_str(shape));
  }
  // The extent in elements the view reaches: the memory must hold it (its owner's promise).
  std::int64_t extent = n > 0 ? 1 : 0;
  for (std::size_t i = 0; i < st.size(); ++i) {
    if (st[i] < 0) throw InvalidArgument("from_external: negative strides are not supported (" + shape_str(st) + ")");
    if (n > 0) extent += (shape[i] - 1) * st[i];
  }
  if (n > 0 && !data) throw InvalidArgument("from_external: null data pointer for shape " + shape_str(shape));
  Stream s = current_stream(device);
  (void)detail::stream_impl(s);  // validates the device
  auto t = std::make_shared<detail::TensorImpl>();
  t->storage = std::make_shared<detail::Storage>();
  t->storage->data = external_data(data, static_cast<std::size_t>(extent) * esize, device, s, std::move(owner));
  t->shape = shape;
  t->strides = std::move(st);
  t->dtype = dtype;
  t->device = device;
  return Tensor(std::move(t));
}

void wait_native_stream(const Stream& stream, std::uintptr_t native) {
  detail::StreamImpl& s = detail::stream_impl(stream);
  detail::backend(stream.device().kind).wait_native(s, native);
}

void native_stream_wait(std::uintptr_t native, const Stream& stream) {
  detail::StreamImpl& s = detail::stream_impl(stream);
  detail::backend(stream.device().kind).native_wait(native, s);
}

}  // namespace streampool
