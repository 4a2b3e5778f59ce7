"""streampool: thread-safe parallel inference on CUDA GPUs and the CPU.

Every Python thread runs on its own pool stream with the GIL released, so threads scale;
tensors travel to and from NumPy and PyTorch without copies through DLPack.
"""

from . import _core
from ._core import (  # noqa: F401  (the public API)
    AsyncError, CancelledError, CompiledModule, ConfigError, CudaError, Device, DeviceError, Error, Event,
    ForkedChildError, FormatError, GraphError, InvalidArgument, Module, OutOfMemoryError, PoolExhaustedError,
    QueueClosedError, QueueFullError, Stream, StreamGuard, Tensor, TimeoutError, compile, current_stream,
    default_stream, device_count, empty_cache, from_dlpack, is_available, memory_limit, memory_stats, module_kinds,
    reset_peak_stats, set_memory_limit, settings,
    stream_from_pool, synchronize, tensor, zeros,
)
from ._queue import BatchQueue, Future  # noqa: F401
from . import nn  # noqa: F401

__all__ = [n for n in dir() if not n.startswith("_")]
