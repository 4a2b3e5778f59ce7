#include "streampool/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "backend/launch.h"
#include "core/runtime.h"
#include "memory/pinned_staging.h"
#include "streampool/error.h"
#include "streampool/event.h"
#include "streampool/stream_pool.h"
#include "tensor/tensor_impl.h"

namespace streampool {

using detail::TensorImpl;

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t s : shape) {
    if (s < 0) throw InvalidArgument("negative dimension in shape " + shape_str(shape));
    if (s != 0 && n > std::numeric_limits<std::int64_t>::max() / s) {
      throw InvalidArgument("shape " + shape_str(shape) + " has too many elements");
    }
    n *= s;
  }
  return n;
}

namespace detail {

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    st[i] = s;
    s *= std::max<std::int64_t>(shape[i], 1);
  }
  return st;
}

}  // namespace detail

namespace {

std::shared_ptr<const TensorImpl> make_view(const TensorImpl& base, Shape shape, Shape strides, std::int64_t offset) {
  auto t = std::make_shared<TensorImpl>();
  t->storage = base.storage;
  t->shape = std::move(shape);
  t->strides = std::move(strides);
  t->offset = offset;
  t->dtype = base.dtype;
  t->device = base.device;
  return t;
}

std::int64_t wrap_dim(std::int64_t d, std::int64_t ndim, const char* op) {
  if (d < -ndim || d >= std::max<std::int64_t>(ndim, 1)) {
    throw InvalidArgument(std::string(op) + ": dimension " + std::to_string(d) + " out of range for a " +
                          std::to_string(ndim) + "-d tensor");
  }
  return d < 0 ? d + ndim : d;
}


detail::StridedCopy describe(const TensorImpl& dst, const TensorImpl& src) {
  if (dst.shape.size() > static_cast<std::size_t>(detail::kMaxDims)) {
    throw InvalidArgument("tensors of more than " + std::to_string(detail::kMaxDims) + " dimensions are not supported");
  }
  detail::StridedCopy c;
  c.ndim = static_cast<int>(dst.shape.size());
  c.numel = shape_numel(dst.shape);
  for (int k = 0; k < c.ndim; ++k) {
    c.shape[k] = dst.shape[k];
    c.src_strides[k] = src.strides[k];
    c.dst_strides[k] = dst.strides[k];
  }
  c.src_dtype = src.dtype;
  c.dst_dtype = dst.dtype;
  c.src = static_cast<const char*>(src.storage->data.get()) + src.offset * dtype_size(src.dtype);
  c.dst = static_cast<char*>(dst.storage->data.get()) + dst.offset * dtype_size(dst.dtype);
  return c;
}

// Elementwise copy on one device, on its current stream.
void copy_same_device(const TensorImpl& dst, const TensorImpl& src) {
  detail::StridedCopy c = describe(dst, src);
  if (c.numel == 0) return;
  // No reference to the storages is kept: as on a GPU, memory freed while queued work still
  // uses it is protected by stream order and record_stream (Note [Stream-ordered reuse]).
  detail::launch(
      "copy", dst.device, [c] { detail::cpu_copy_strided(c); },
      [&](void* stream) { detail::cuda_copy_strided(c, stream); });
}

bool dense(const TensorImpl& t) { return t.strides == detail::contiguous_strides(t.shape); }

}  // namespace

// ---- accessors ----

const TensorImpl& Tensor::impl() const {
  if (!impl_) throw InvalidArgument("use of an undefined Tensor (default-constructed or moved-from)");
  return *impl_;
}

const Shape& Tensor::shape() const { return impl().shape; }
const Shape& Tensor::strides() const { return impl().strides; }
std::int64_t Tensor::dim() const { return static_cast<std::int64_t>(impl().shape.size()); }
std::int64_t Tensor::size(std::int64_t d) const { return impl().shape[wrap_dim(d, dim(), "size")]; }
std::int64_t Tensor::numel() const { return shape_numel(impl().shape); }
std::int64_t Tensor::offset() const { return impl().offset; }
DType Tensor::dtype() const { return impl().dtype; }
Device Tensor::device() const { return impl().device; }
std::size_t Tensor::nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype()); }
bool Tensor::is_contiguous() const {
  const TensorImpl& t = impl();
  std::int64_t expected = 1;
  for (std::size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] != 1 && t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor(undefined)";
  return "Tensor(" + std::string(dtype_name(dtype())) + ", " + shape_str(shape()) + ", " + device().str() + ")";
}

void* Tensor::data_ptr() const {
  const TensorImpl& t = impl();
  return static_cast<char*>(t.storage->data.get()) + t.offset * static_cast<std::int64_t>(dtype_size(t.dtype));
}

void Tensor::check_dtype(DType expected, const char* op) const {
  if (dtype() != expected) {
    throw InvalidArgument(std::string(op) + ": " + str() + " is not " + std::string(dtype_name(expected)));
  }
}

// ---- views ----

Tensor Tensor::view(const Shape& shape) const {
  const TensorImpl& t = impl();
  if (!is_contiguous()) throw InvalidArgument("view " + shape_str(shape) + " of a non-contiguous " + str() + "; use reshape");
  Shape s = shape;
  std::int64_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) throw InvalidArgument("view " + shape_str(shape) + ": only one dimension can be -1");
      infer = static_cast<int>(i);
    } else if (s[i] < 0) {
      throw InvalidArgument("view " + shape_str(shape) + ": negative dimension");
    } else {
      known *= s[i];
    }
  }
  const std::int64_t n = numel();
  if (infer >= 0) {
    if (known == 0 || n % known != 0) throw InvalidArgument("view " + shape_str(shape) + " does not fit " + str());
    s[infer] = n / known;
  }
  if (shape_numel(s) != n) throw InvalidArgument("view " + shape_str(shape) + " does not fit " + str());
  return Tensor(make_view(t, s, detail::contiguous_strides(s), t.offset));
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::slice(std::int64_t d, std::int64_t start, std::int64_t end, std::int64_t step) const {
  const TensorImpl& t = impl();
  d = wrap_dim(d, dim(), "slice");
  if (step <= 0) throw InvalidArgument("slice: step must be positive");
  const std::int64_t n = t.shape[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<std::int64_t>(start, 0, n);
  end = std::clamp<std::int64_t>(end, start, n);
  Shape shape = t.shape, strides = t.strides;
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return Tensor(make_view(t, shape, strides, t.offset + start * t.strides[d]));
}

Tensor Tensor::select(std::int64_t d, std::int64_t index) const {
  const TensorImpl& t = impl();
  d = wrap_dim(d, dim(), "select");
  const std::int64_t n = t.shape[d];
  if (index < -n || index >= n) {
    throw InvalidArgument("select: index " + std::to_string(index) + " out of range for dimension " +
                          std::to_string(d) + " of " + str());
  }
  if (index < 0) index += n;
  Shape shape = t.shape, strides = t.strides;
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return Tensor(make_view(t, shape, strides, t.offset + index * t.strides[d]));
}

Tensor Tensor::transpose(std::int64_t d0, std::int64_t d1) const {
  const TensorImpl& t = impl();
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  Shape shape = t.shape, strides = t.strides;
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  return Tensor(make_view(t, shape, strides, t.offset));
}

Tensor Tensor::permute(const std::vector<std::int64_t>& dims) const {
  const TensorImpl& t = impl();
  if (static_cast<std::int64_t>(dims.size()) != dim()) {
    throw InvalidArgument("permute: " + std::to_string(dims.size()) + " dimensions given for " + str());
  }
  std::vector<bool> seen(dims.size(), false);
  Shape shape(dims.size()), strides(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    std::int64_t d = wrap_dim(dims[i], dim(), "permute");
    if (seen[d]) throw InvalidArgument("permute: dimension " + std::to_string(d) + " repeated");
    seen[d] = true;
    shape[i] = t.shape[d];
    strides[i] = t.strides[d];
  }
  return Tensor(make_view(t, shape, strides, t.offset));
}

Tensor Tensor::unsqueeze(std::int64_t d) const {
  const TensorImpl& t = impl();
  const std::int64_t nd = dim() + 1;
  if (d < -nd || d >= nd) throw InvalidArgument("unsqueeze: dimension out of range for " + str());
  if (d < 0) d += nd;
  Shape shape = t.shape, strides = t.strides;
  std::int64_t st = d < dim() ? t.strides[d] * t.shape[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, st);
  return Tensor(make_view(t, shape, strides, t.offset));
}

// ---- copies ----

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(const Device& d) const {
  if (d == device()) return *this;
  Tensor out = empty(shape(), dtype(), d);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), dt, device());
  out.copy_from(*this);
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  const TensorImpl& d = impl();
  const TensorImpl& s = src.impl();
  if (d.shape != s.shape) {
    throw InvalidArgument("copy_from: shape mismatch, destination " + str() + ", source " + src.str());
  }
  if (d.device == s.device) {
    if (d.dtype == s.dtype && dense(d) && dense(s)) {
      if (nbytes() == 0) return;
      detail::StreamImpl& st = detail::current_impl(d.device);
      detail::device_pool(d.device).backend.copy_async(data_ptr(), src.data_ptr(), nbytes(), st);
      return;
    }
    copy_same_device(d, s);
    return;
  }
  // Across devices: bring the source to a dense tensor of its own dtype, move the bytes, then
  // convert or scatter on the destination device if needed.
  Tensor dense_src = dense(s) ? src : src.clone();
  const bool direct = dense(d) && d.dtype == s.dtype;
  Tensor landing = direct ? *this : empty(shape(), s.dtype, d.device);
  const std::size_t bytes = dense_src.nbytes();
  if (bytes > 0) {
    detail::StreamImpl& src_stream = detail::current_impl(s.device);
    detail::StreamImpl& dst_stream = detail::current_impl(d.device);
    if (s.device.kind == DeviceKind::cpu || d.device.kind == DeviceKind::cpu) {
      // One side is host memory: the CPU stream's work must be done before the CUDA copy reads
      // or writes it, and a copy to the host is complete when this returns.
      detail::StreamImpl& cpu = s.device.kind == DeviceKind::cpu ? src_stream : dst_stream;
      detail::StreamImpl& gpu = s.device.kind == DeviceKind::cpu ? dst_stream : src_stream;
      cpu.synchronize();
      detail::Backend& gb = detail::device_pool(gpu.stream.device()).backend;
      const bool staged = s.device.kind == DeviceKind::cpu
                              ? detail::staged_upload(gb, landing.data_ptr(), dense_src.data_ptr(), bytes, gpu)
                              : detail::staged_download(gb, landing.data_ptr(), dense_src.data_ptr(), bytes, gpu);
      if (!staged) gb.copy_async(landing.data_ptr(), dense_src.data_ptr(), bytes, gpu);
      if (d.device.kind == DeviceKind::cpu) gpu.synchronize();
    } else {
      Event ready;
      ready.record(src_stream.stream);
      dst_stream.stream.wait(ready);
      dense_src.record_stream(dst_stream.stream);
      detail::device_pool(d.device).backend.copy_async(landing.data_ptr(), dense_src.data_ptr(), bytes, dst_stream);
    }
  }
  if (!direct) copy_same_device(d, landing.impl());
}

void Tensor::fill_(double value) {
  const TensorImpl& t = impl();
  if (!dense(t)) {
    Tensor tmp = full(shape(), value, dtype(), device());
    copy_from(tmp);
    return;
  }
  const std::int64_t n = numel();
  if (n == 0) return;
  void* p = data_ptr();
  const DType dt = t.dtype;
  detail::launch(
      "fill", t.device, [p, dt, n, value] { detail::cpu_fill(p, dt, n, value); },
      [&](void* stream) { detail::cuda_fill(p, dt, n, value, stream); });
}

void Tensor::copy_to_host(void* dst, std::size_t bytes) const {
  if (bytes != nbytes()) {
    throw InvalidArgument("copy_to_host: " + std::to_string(bytes) + " bytes given for " + str() + ", which has " +
                          std::to_string(nbytes()));
  }
  Tensor c = contiguous();
  detail::StreamImpl& s = detail::current_impl(device());
  detail::Backend& b = detail::device_pool(device()).backend;
  if (bytes > 0 && !(device().kind != DeviceKind::cpu && detail::staged_download(b, dst, c.data_ptr(), bytes, s))) {
    b.copy_async(dst, c.data_ptr(), bytes, s);
  }
  s.synchronize();
}

std::vector<float> Tensor::to_float_vector() const {
  Tensor f = to(DType::float32);
  return f.to_vector<float>();
}

void Tensor::record_stream(const Stream& stream) const { streampool::record_stream(impl().storage->data, stream); }

Stream Tensor::allocation_stream() const { return impl().storage->data.stream(); }

// ---- factories ----

Tensor empty(const Shape& shape, DType dtype, const Device& device) {
  const std::int64_t n = shape_numel(shape);
  auto t = std::make_shared<TensorImpl>();
  t->storage = std::make_shared<detail::Storage>();
  const std::size_t esize = dtype_size(dtype);
  if (n > 0 && static_cast<std::uint64_t>(n) > (std::uint64_t{1} << 62) / esize) {
    throw InvalidArgument("empty: shape " + shape_str(shape) + " is too large");
  }
  t->storage->data = allocate(device, static_cast<std::size_t>(n) * esize);
  t->shape = shape;
  t->strides = detail::contiguous_strides(shape);
  t->dtype = dtype;
  t->device = device;
  return Tensor(std::move(t));
}

Tensor zeros(const Shape& shape, DType dtype, const Device& device) { return full(shape, 0.0, dtype, device); }

Tensor full(const Shape& shape, double value, DType dtype, const Device& device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor from_host(const void* data, std::size_t bytes, const Shape& shape, DType dtype, const Device& device) {
  const std::size_t need = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  if (bytes != need) {
    throw InvalidArgument("from_host: " + std::to_string(bytes) + " bytes given for shape " + shape_str(shape) + " of " +
                          std::string(dtype_name(dtype)) + ", which needs " + std::to_string(need));
  }
  if (need > 0 && !data) throw InvalidArgument("from_host: null data pointer");
  Tensor t = empty(shape, dtype, device);
  if (need == 0) return t;
  detail::StreamImpl& s = detail::current_impl(device);
  if (device.kind == DeviceKind::cpu) {
    // The block may still be read by earlier work of this stream (it was freed and cached
    // here), so the write must be stream-ordered; the caller's buffer is copied first because
    // it is free to reuse when we return.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(data), static_cast<const char*>(data) + need);
    void* dst = t.data_ptr();
    s.enqueue_host("from_host", [staged, dst] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    // Large copies go through a pinned buffer (Note [Pinned staging]); a pageable
    // host-to-device copy also returns only once the source has been staged.
    detail::Backend& b = detail::device_pool(device).backend;
    if (!detail::staged_upload(b, t.data_ptr(), data, need, s)) b.copy_async(t.data_ptr(), data, need, s);
  }
  return t;
}

namespace {

// splitmix64: a tiny, well-mixed generator whose output is the same on every platform.
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
};

Tensor from_doubles(const std::vector<double>& v, const Shape& shape, DType dtype, const Device& device) {
  std::vector<char> bytes(v.size() * dtype_size(dtype));
  detail::StridedCopy c;
  c.ndim = 1;
  c.numel = static_cast<std::int64_t>(v.size());
  c.shape[0] = c.numel;
  c.src_strides[0] = c.dst_strides[0] = 1;
  std::vector<float> f(v.begin(), v.end());
  c.src_dtype = DType::float32;
  c.dst_dtype = dtype;
  c.src = f.data();
  c.dst = bytes.data();
  detail::cpu_copy_strided(c);
  return from_host(bytes.data(), bytes.size(), shape, dtype, device);
}

}  // namespace

Tensor rand(const Shape& shape, DType dtype, const Device& device, std::uint64_t seed, double low, double high) {
  SplitMix g{seed};
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (double& x : v) x = low + (high - low) * g.uniform();
  return from_doubles(v, shape, dtype, device);
}

Tensor randn(const Shape& shape, DType dtype, const Device& device, std::uint64_t seed, double mean, double std) {
  SplitMix g{seed};
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); i += 2) {
    // Box-Muller: two normals from two uniforms.
    double u1 = std::max(g.uniform(), 1e-300), u2 = g.uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    v[i] = mean + std * r * std::cos(2 * M_PI * u2);
    if (i + 1 < v.size()) v[i + 1] = mean + std * r * std::sin(2 * M_PI * u2);
  }
  return from_doubles(v, shape, dtype, device);
}

void detail::gather_bytes(const Device& device, void* dst, const std::vector<GatherPiece>& pieces) {
  for (std::size_t first = 0; first < pieces.size(); first += kGatherPieces) {
    auto g = std::make_shared<GatherArgs>();
    g->dst = dst;
    g->n = static_cast<int>(std::min<std::size_t>(kGatherPieces, pieces.size() - first));
    std::copy(pieces.begin() + static_cast<std::ptrdiff_t>(first), pieces.begin() + static_cast<std::ptrdiff_t>(first) + g->n,
              g->piece);
    detail::launch(
        "gather", device, [g] { cpu_gather(*g); }, [&](void* stream) { cuda_gather(*g, stream); });
  }
}

void hand_over(const Tensor& t, const Stream& consumer) {
  if (consumer.device() != t.device()) {
    throw InvalidArgument("hand_over: " + t.str() + " cannot be handed to " + consumer.str() + " on another device");
  }
  // The producer is the stream that made the tensor (its storage's allocation stream) or the
  // calling thread's current stream, which may have written it since: the consumer waits for
  // both, so the call is right from the producer's thread and from the consumer's thread alike
  // (called on the consumer's thread, the current stream is the consumer itself).
  const Stream made_by = t.allocation_stream();
  const Stream current = current_stream(t.device());
  auto wait_for = [&](const Stream& producer) {
    Event ready;
    ready.record(producer);
    consumer.wait(ready);
  };
  if (made_by != consumer) wait_for(made_by);
  if (current != consumer && current != made_by) wait_for(current);
  t.record_stream(consumer);
}

}  // namespace streampool
