#pragma once
// Tensor: a view (shape, strides, offset, dtype) of device memory that views of it share.
//
// Copies of a Tensor share its memory, like shared_ptr; views (slice, select, view, transpose,
// permute) share it too and never copy. All device work runs on the calling thread's current
// stream of the tensor's device (Note [Stream pool leasing]); a tensor used on another stream
// is handed over with hand_over() (event + wait + record_stream).

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "streampool/allocator.h"
#include "streampool/device.h"
#include "streampool/dtype.h"
#include "streampool/stream.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& shape);  // "(2, 3)"
std::int64_t shape_numel(const Shape& shape);

namespace detail {
struct Storage;
struct TensorImpl;
}  // namespace detail

class Tensor {
 public:
  Tensor() = default;  // undefined: every use but defined() throws InvalidArgument

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;  // in elements
  std::int64_t dim() const;
  std::int64_t size(std::int64_t d) const;  // negative d counts from the end
  std::int64_t numel() const;
  std::int64_t offset() const;  // in elements, into the storage
  DType dtype() const;
  Device device() const;
  std::size_t nbytes() const;  // numel * element size
  bool is_contiguous() const;
  std::string str() const;  // "Tensor(float32, (2, 3), cuda:0)"

  // Device address of the first element. Use only in stream order on the tensor's device.
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    check_dtype(dtype_of<T>(), "data<T>()");
    return static_cast<T*>(data_ptr());
  }

  // ---- views: no copy ----
  Tensor view(const Shape& shape) const;  // contiguous tensors; one dimension may be -1
  Tensor reshape(const Shape& shape) const;  // view if possible, else a contiguous copy
  Tensor slice(std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step = 1) const;
  Tensor select(std::int64_t dim, std::int64_t index) const;
  Tensor transpose(std::int64_t d0, std::int64_t d1) const;
  Tensor permute(const std::vector<std::int64_t>& dims) const;
  Tensor unsqueeze(std::int64_t dim) const;

  // ---- copies: asynchronous on the current stream ----
  Tensor contiguous() const;   // itself if already contiguous
  Tensor clone() const;        // always a new contiguous tensor
  Tensor to(const Device& device) const;
  Tensor to(DType dtype) const;
  // Copies `src` (same shape; any dtype, strides or device) into this tensor.
  void copy_from(const Tensor& src);
  void fill_(double value);

  // ---- host read-back: waits for the tensor's device's current stream only ----
  void copy_to_host(void* dst, std::size_t bytes) const;
  template <typename T>
  std::vector<T> to_vector() const {
    check_dtype(dtype_of<T>(), "to_vector<T>()");
    if constexpr (std::is_same_v<T, bool>) {  // vector<bool> packs bits: go through bytes
      std::vector<std::uint8_t> raw(static_cast<std::size_t>(numel()));
      copy_to_host(raw.data(), raw.size());
      return std::vector<bool>(raw.begin(), raw.end());
    } else {
      std::vector<T> out(static_cast<std::size_t>(numel()));
      copy_to_host(out.data(), out.size() * sizeof(T));
      return out;
    }
  }
  // Any dtype, converted to float on the host.
  std::vector<float> to_float_vector() const;

  // Marks `stream` as a user of this tensor's memory (Note [Stream-ordered reuse]).
  void record_stream(const Stream& stream) const;
  // The stream that allocated the memory.
  Stream allocation_stream() const;

  // Internal: used by ops and factories.
  explicit Tensor(std::shared_ptr<const detail::TensorImpl> impl) : impl_(std::move(impl)) {}
  const detail::TensorImpl& impl() const;
  void check_dtype(DType expected, const char* op) const;

 private:
  std::shared_ptr<const detail::TensorImpl> impl_;
};

// ---- factories: memory from the caching allocator, work on the current stream ----
Tensor empty(const Shape& shape, DType dtype, const Device& device);
Tensor zeros(const Shape& shape, DType dtype, const Device& device);
Tensor full(const Shape& shape, double value, DType dtype, const Device& device);
// Copies `bytes` of host data (dtype's layout, contiguous); the host buffer is free to reuse
// when the call returns.
Tensor from_host(const void* data, std::size_t bytes, const Shape& shape, DType dtype, const Device& device);
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, const Device& device) {
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<std::uint8_t> raw(values.begin(), values.end());
    return from_host(raw.data(), raw.size(), shape, DType::boolean, device);
  } else {
    return from_host(values.data(), values.size() * sizeof(T), shape, dtype_of<T>(), device);
  }
}
// Uniform in [low, high) or normal(mean, std), from a seed: the same values on every device.
Tensor rand(const Shape& shape, DType dtype, const Device& device, std::uint64_t seed, double low = 0.0,
            double high = 1.0);
Tensor randn(const Shape& shape, DType dtype, const Device& device, std::uint64_t seed, double mean = 0.0,
             double std = 1.0);

// Safe hand-over of `t` to `consumer`: `consumer` waits (an event, not a host wait) for the
// stream that made `t` (its allocation stream) and for the calling thread's current stream on
// its device, and is marked as a user of the memory. Call it on the producer's thread before
// passing `t` on, or on the consumer's thread after receiving it: both are correct. A tensor
// written in place by a third stream (copy_from, fill_) must be handed over on that stream's
// thread.
void hand_over(const Tensor& t, const Stream& consumer);

}  // namespace streampool
STREAMPOOL_API_END
