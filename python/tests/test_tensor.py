"""Tensors: NumPy round trips, DLPack both ways without copies, lifetimes, dtypes."""

import gc

import numpy as np
import pytest

import streampool as sp


def test_numpy_round_trip_keeps_values_and_dtype(device):
    rng = np.random.default_rng(1)
    for dt in ["float32", "float16", "int64", "int32", "uint8", "bool"]:
        a = (rng.standard_normal((3, 5)) * 10).astype(dt)
        t = sp.tensor(a, device=device)
        assert t.shape == (3, 5) and t.dtype == ("bool" if dt == "bool" else dt)
        assert str(t.device) == ("cpu" if device == "cpu" else "cuda:0")
        b = t.numpy()
        assert b.dtype == a.dtype and np.array_equal(a, b)


def test_asarray_copies_and_errors_name_the_package(device):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = sp.tensor(a, device=device)
    b = np.asarray(t)
    assert b.dtype == np.float32 and np.array_equal(a, b)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert sp.InvalidArgument.__module__ == "streampool" and sp.Error.__module__ == "streampool"


def test_float64_becomes_float32():
    t = sp.tensor(np.arange(4, dtype=np.float64))
    assert t.dtype == "float32" and t.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_to_dtype_and_device(device):
    a = np.linspace(-3, 3, 11, dtype=np.float32)
    t = sp.tensor(a).to(device).to("float16").to("float32").to("cpu")
    assert t.dtype == "float32" and str(t.device) == "cpu"
    np.testing.assert_allclose(t.numpy(), a.astype(np.float16).astype(np.float32))


def test_bfloat16_numpy_says_what_to_do():
    t = sp.tensor(np.ones(3, np.float32), dtype="bfloat16")
    with pytest.raises(sp.InvalidArgument, match="NumPy has no bfloat16"):
        t.numpy()
    assert t.to("float32").numpy().tolist() == [1.0, 1.0, 1.0]


def test_numpy_views_streampool_memory_without_copy():
    t = sp.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    v = np.from_dlpack(t)
    assert v.ctypes.data == t.data_ptr
    assert v.tolist() == [[0, 1, 2], [3, 4, 5]]
    del t
    gc.collect()
    assert v.tolist() == [[0, 1, 2], [3, 4, 5]], "the capsule keeps the memory alive"


def test_streampool_views_numpy_memory_without_copy():
    a = np.arange(8, dtype=np.int32)
    t = sp.from_dlpack(a)
    assert t.data_ptr == a.ctypes.data and t.dtype == "int32"
    a[0] = 42  # the same memory: streampool sees the write
    assert t.numpy()[0] == 42
    del a
    gc.collect()
    assert t.numpy().tolist() == [42, 1, 2, 3, 4, 5, 6, 7], "the view keeps NumPy's memory alive"


def test_strided_numpy_view_is_honoured():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    t = sp.from_dlpack(a)
    assert t.shape == (3, 2)
    assert t.numpy().tolist() == a.tolist()


def test_capsule_consumed_once():
    t = sp.tensor(np.ones(2, np.float32))
    cap = t.__dlpack__()
    u = sp.from_dlpack(cap)
    assert u.numpy().tolist() == [1.0, 1.0]
    with pytest.raises(sp.InvalidArgument, match="already consumed"):
        sp.from_dlpack(cap)


def test_dlpack_device_and_stream_arguments(device):
    t = sp.zeros([2], device=device)
    kind, index = t.__dlpack_device__()
    assert (kind, index) == ((1, 0) if device == "cpu" else (2, 0))
    if device == "cpu":
        with pytest.raises(sp.InvalidArgument, match="stream=None"):
            t.__dlpack__(stream=5)
    else:
        with pytest.raises(sp.InvalidArgument, match="ambiguous"):
            t.__dlpack__(stream=0)


def test_not_a_producer():
    with pytest.raises(sp.InvalidArgument, match="has no __dlpack__"):
        sp.from_dlpack(object())


def test_torch_round_trip_shares_memory(device):
    torch = pytest.importorskip("torch")
    dev = "cpu" if device == "cpu" else "cuda:0"
    x = torch.arange(10, dtype=torch.float32, device=dev) * 3
    t = sp.from_dlpack(x)
    assert t.data_ptr == x.data_ptr()
    y = torch.from_dlpack(t)
    assert y.data_ptr() == x.data_ptr()
    assert torch.equal(y, x)
    b = torch.from_dlpack(sp.tensor(np.ones((2, 2), np.float32), device=device).to("bfloat16"))
    assert b.dtype == torch.bfloat16 and b.float().sum().item() == 4.0


def test_consumer_stream_sees_the_producers_writes():
    torch = pytest.importorskip("torch")
    if not sp.is_available("cuda"):
        pytest.skip("no CUDA device visible")
    # A slow producer on a torch stream, then streampool reads on its own stream: the import
    # must order our stream after torch's (one event, no device synchronize).
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.zeros(1 << 20, device="cuda")
        torch.cuda._sleep(50_000_000)
        x.fill_(7.0)
        t = sp.from_dlpack(x)
    assert float(t.numpy().min()) == 7.0
    # And the other way: torch reads what our stream wrote.
    u = sp.tensor(np.full(1 << 20, 3.0, np.float32), device="cuda")
    y = torch.from_dlpack(u)
    assert float(y.min().item()) == 3.0
