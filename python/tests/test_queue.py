"""BatchQueue from Python: futures from many threads, asyncio, callbacks, cancel, deadlines."""

import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest

import streampool as sp


def linear(device, n_in=8, n_out=4, seed=0):
    rng = np.random.default_rng(seed)
    m = sp.nn.make("linear", in_features=n_in, out_features=n_out)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    m.load_state_dict({"weight": w, "bias": b}, device=device)
    return m, w, b


def test_requests_from_many_threads_get_their_own_rows(device):
    m, w, b = linear(device)
    rng = np.random.default_rng(1)
    with sp.BatchQueue(m, max_batch_size=16, max_delay=0.002, num_workers=2) as q:
        inputs = [rng.standard_normal((1 + i % 3, 8)).astype(np.float32) for i in range(64)]
        results = [None] * 64

        def client(k):
            for i in range(k, 64, 8):
                results[i] = q.submit(inputs[i])

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for x, fut in zip(inputs, results):
            np.testing.assert_allclose(fut.result(timeout=30).numpy(), x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_futures_work_with_concurrent_futures_and_callbacks(device):
    m, w, b = linear(device)
    x = np.ones((2, 8), np.float32)
    with sp.BatchQueue(m) as q:
        futs = [q.submit(x * i) for i in range(10)]
        done, not_done = concurrent.futures.wait(futs, timeout=30)
        assert not not_done
        called = threading.Event()
        futs[0].add_done_callback(lambda f: called.set())
        assert called.wait(5)
        assert isinstance(futs[0], concurrent.futures.Future) and futs[3].status() == "done"
        np.testing.assert_allclose(futs[3].result().numpy(), (x * 3) @ w.T + b, rtol=1e-5, atol=1e-5)


def test_run_from_many_threads_returns_each_its_own_rows_and_raises_its_errors(device):
    # run() is submit-and-wait in one release of the GIL: each thread's own input, own result.
    m, w, b = linear(device)
    rng = np.random.default_rng(11)
    inputs = [rng.standard_normal((1 + i % 4, 8)).astype(np.float32) for i in range(12)]
    wrong, errors = [], []
    with sp.BatchQueue(m, max_batch_size=16, max_delay=0.001, num_workers=2) as q:
        def client(i):
            try:
                for _ in range(20):
                    y = q.run(inputs[i]).numpy()
                    if y.shape != (inputs[i].shape[0], 4) or not np.allclose(y, inputs[i] @ w.T + b, rtol=1e-5, atol=1e-5):
                        wrong.append(i)
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(sp.InvalidArgument):
            q.run(np.ones((2, 5), np.float32))
        # A timeout past any clock (infinity, 1e300 s) is no deadline, not an expired one.
        for t in (float("inf"), 1e300):
            np.testing.assert_allclose(q.run(inputs[0], timeout=t).numpy(), inputs[0] @ w.T + b, rtol=1e-5, atol=1e-5)
    assert errors == [] and wrong == []
    with pytest.raises(sp.QueueClosedError):
        q.run(np.ones((1, 8), np.float32))


def test_await_from_asyncio(device):
    m, w, b = linear(device)
    xs = [np.full((1, 8), i, np.float32) for i in range(20)]

    async def main(q):
        outs = await asyncio.gather(*(q.submit(x) for x in xs))
        return [o.numpy() for o in outs]

    with sp.BatchQueue(m, max_batch_size=8, max_delay=0.001) as q:
        got = asyncio.run(main(q))
    for x, y in zip(xs, got):
        np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_errors_reach_the_future_with_their_type(device):
    m, _, _ = linear(device)
    with sp.BatchQueue(m) as q:
        with pytest.raises(sp.InvalidArgument):
            q.submit(np.ones((2, 5), np.float32)).result(timeout=30)
    with pytest.raises(sp.QueueClosedError):
        q.submit(np.ones((1, 8), np.float32))


def test_deadline_passed_is_a_timeout_error_and_cancel_removes(device):
    m, _, _ = linear(device)
    # One worker kept busy by a long delay: later requests wait in the queue.
    with sp.BatchQueue(m, max_batch_size=4, max_delay=0.3) as q:
        first = q.submit(np.ones((1, 8), np.float32))
        late = q.submit(np.ones((1, 8), np.float32), timeout=0.0001, priority=1)
        with pytest.raises(sp.TimeoutError) as e:
            late.result(timeout=30)
        assert isinstance(e.value, TimeoutError)
        victim = q.submit(np.ones((1, 8), np.float32))
        if victim.cancel():
            assert victim.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                victim.result()
        first.result(timeout=30)
        time.sleep(0)  # the completion thread may still be handing over the last ones


def test_lent_numpy_memory_is_released_on_a_python_thread(device):
    # A request's NumPy input is lent without a copy; the queue's C++ threads drop the last
    # view, but NumPy's deleter must run on the completion thread (never on a worker thread).
    import weakref
    m, _, _ = linear(device)
    released = []

    def lend(q, i):
        a = np.full((1, 8), i, np.float32)
        weakref.finalize(a, lambda: released.append(threading.current_thread().name))
        return q.submit(a)  # `a` is referenced by the DLPack capsule alone from here on

    with sp.BatchQueue(m, max_batch_size=4) as q:
        futs = [lend(q, i) for i in range(300)]
        for f in futs:
            f.result(timeout=30)
    deadline = time.time() + 10
    while len(released) < 300 and time.time() < deadline:
        time.sleep(0.01)
    assert len(released) == 300, "lent memory was not released"
    assert set(released) <= {"streampool-completions", threading.current_thread().name}, set(released)
