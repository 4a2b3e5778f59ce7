#pragma once
// Page-locked host memory: staging buffers for large transfers, words for device flags. Internal.
//
// Note [Pinned staging]
// A copy from pageable host memory makes the driver stage it through its own small pinned
// buffers, chunk by chunk, with the calling thread waiting. Large transfers instead copy once
// into a cached page-locked buffer and let the copy engine take it from there: an upload
// returns at once (the buffer goes back to the cache after an event on the stream completes),
// a download reads back at full speed. Buffers are cached by power-of-two size, up to a cap,
// under one mutex (taken once per large transfer only), and never returned to the system.

#include <cstddef>

#include "core/backend_interface.h"

namespace streampool::detail {

// Host `src` -> device `dst` in `stream` order; returns false (nothing done) where staging does
// not pay (small copies) or is unavailable, and the caller copies directly.
bool staged_upload(Backend& backend, void* dst, const void* src, std::size_t bytes, StreamImpl& stream);
// Device `src` -> host `dst`: waits for `stream`; returns false as above.
bool staged_download(Backend& backend, void* dst, const void* src, std::size_t bytes, StreamImpl& stream);

// One page-locked host int a kernel's flag is copied into and a later host task of the same
// stream reads (an op's on-device check). Taken from chunks of a page, never freed; throws
// Error where the backend has no pinned memory.
int* acquire_pinned_word(Backend& backend);
void release_pinned_word(int* word);

}  // namespace streampool::detail
