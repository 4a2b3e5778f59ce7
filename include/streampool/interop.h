#pragma once
// Interop with other libraries' memory and streams (PyTorch, NumPy, CuPy: DLPack's two halves).
//
// Note [Native streams]
// Another library's CUDA stream is named by its cudaStream_t as an integer, as DLPack and the
// array API do: 1 is the legacy default stream, 2 the per-thread default stream, any other
// non-zero value a stream handle. Ordering with such a stream is by one event, recorded on one
// side and waited for on the other: never a device-wide synchronize. The CPU has no native
// streams: its interop is synchronous (the producer's stream is synchronized before export).

#include <cstdint>
#include <memory>

#include "streampool/stream.h"
#include "streampool/tensor.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

// A tensor over memory that streampool does not own: `data` on `device` with `shape` and
// `strides` (in elements; empty: contiguous). `owner` is kept alive as long as any tensor views
// the memory and released (on whichever thread drops the last view) after that. Nothing is
// copied. Throws InvalidArgument for a null pointer with elements, negative strides or sizes.
Tensor from_external(void* data, const Shape& shape, const Shape& strides, DType dtype, const Device& device,
                     std::shared_ptr<void> owner);

// `stream`'s later work waits for the work submitted to the native stream until now.
void wait_native_stream(const Stream& stream, std::uintptr_t native);
// The native stream's later work waits for the work submitted to `stream` until now.
void native_stream_wait(std::uintptr_t native, const Stream& stream);

}  // namespace streampool
STREAMPOOL_API_END
