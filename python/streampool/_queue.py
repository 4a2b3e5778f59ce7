"""BatchQueue and its futures, and the completion thread (Note [Python threads] in python/src/bindings.h).

A finished request is announced by a C++ worker thread through a C++ queue; this module's one
daemon thread waits on that queue with the GIL released and fulfils the Future in Python, so no
Python object is ever touched on a stream's worker thread. The same thread releases memory that
NumPy or PyTorch lent us (from_dlpack) once our streams are done with it.
"""

import asyncio
import atexit
import concurrent.futures
import itertools
import threading

from . import _core

_lock = threading.Lock()  # guards _pending
_pending = {}             # token -> Future waiting for its request
_tokens = itertools.count(1)
_stopping = False


class Future(concurrent.futures.Future):
    """A BatchQueue request: a concurrent.futures.Future (result, exception, add_done_callback,
    concurrent.futures.wait / as_completed) that can also be awaited from asyncio."""

    def __init__(self, request):
        super().__init__()
        self._request = request

    def cancel(self):
        """Removes the request if it has not started running; True if it was removed."""
        if self._request.cancel():
            return super().cancel()
        return False

    def status(self):
        """'queued', 'running', 'done', 'failed', 'cancelled' or 'timed_out'."""
        return self._request.status()

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


def _loop():
    while True:
        tokens = _core._next_completions()
        if _stopping:
            return
        for token in tokens:
            with _lock:
                fut = _pending.pop(token, None)
            if fut is None or fut.cancelled():
                continue
            try:
                fut.set_result(fut._request.get())
            except BaseException as e:  # the request's own error, with its type
                fut.set_exception(e)


def _stop():
    # Runs on the finalizing thread after Python joined the non-daemon threads (Note [Python
    # exit] in python/src/exit.cc): the completion thread ends first, while it still may retake
    # the GIL; then the gate closes for every other thread.
    global _stopping
    _stopping = True
    _core._stop_completions()
    _thread.join(timeout=5)
    _core._begin_exit()


_thread = threading.Thread(target=_loop, name="streampool-completions", daemon=True)
_thread.start()
atexit.register(_stop)


class BatchQueue:
    """Dynamic batching: submit() from any thread returns a Future; requests are concatenated
    along dimension 0 into batches of at most max_batch_size rows (C++ BatchQueue, batch_queue.h).
    Times are in seconds."""

    def __init__(self, model, *, max_batch_size=64, max_delay=0.0, num_workers=1, max_queue=0,
                 full_policy="block", full_timeout=0.0, default_timeout=0.0, length_buckets=(),
                 output_device=None, pipeline_depth=2, graph=False, name="default"):
        self._q = _core._BatchQueue(model, max_batch_size, max_delay, num_workers, max_queue, full_policy,
                                    full_timeout, default_timeout, list(length_buckets), output_device,
                                    pipeline_depth, graph, name)

    def submit(self, x, *, key_padding_mask=None, attention_mask=None, token_type_ids=None, priority=0,
               timeout=None) -> Future:
        request = self._q._submit(x, key_padding_mask, attention_mask, token_type_ids, priority, timeout)
        fut = Future(request)
        token = next(_tokens)
        with _lock:
            _pending[token] = fut
        request._watch(token)  # after registering: the completion may come at once
        return fut

    def run(self, x, *, key_padding_mask=None, attention_mask=None, token_type_ids=None, priority=0, timeout=None):
        """Submits and waits for the result (raising the request's error) with the GIL released
        once: the form for a thread per request, cheaper than submit(...).result()."""
        return self._q._run(x, key_padding_mask, attention_mask, token_type_ids, priority, timeout)

    def close(self):
        """Runs every accepted request, then refuses new ones (QueueClosedError)."""
        self._q.close()

    @property
    def closed(self):
        return self._q.closed

    def metrics_text(self):
        return self._q.metrics_text()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
