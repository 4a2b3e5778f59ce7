"""Modules from Python: outputs against NumPy (and PyTorch where importable), safetensors,
compile, many Python threads on one module, errors with their types and messages."""

import json
import struct
import threading

import numpy as np
import pytest

import streampool as sp


def linear_ref(x, w, b):
    return x @ w.T + b


def make_linear(device, rng, n_in=16, n_out=8):
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    m = sp.nn.make("linear", in_features=n_in, out_features=n_out)
    m.load_state_dict({"weight": w, "bias": b}, device=device)
    return m, w, b


def test_linear_matches_numpy(device):
    rng = np.random.default_rng(2)
    m, w, b = make_linear(device, rng)
    x = rng.standard_normal((5, 16)).astype(np.float32)
    np.testing.assert_allclose(m(x).numpy(), linear_ref(x, w, b), rtol=1e-5, atol=1e-5)
    assert m.parameters() == [("weight", (8, 16)), ("bias", (8,))]


def test_mlp_matches_numpy(device):
    rng = np.random.default_rng(3)
    m = sp.nn.make("mlp", sizes=[8, 32, 4], activation="relu")
    state = {name: rng.standard_normal(shape).astype(np.float32) * 0.3 for name, shape in m.parameters()}
    m.load_state_dict(state, device=device)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    names = [n for n, _ in m.parameters()]
    w0, b0, w1, b1 = (state[n] for n in names)
    ref = np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    np.testing.assert_allclose(m(x).numpy(), ref, rtol=1e-4, atol=1e-5)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        data = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_from_safetensors(tmp_path, device):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    path = tmp_path / "linear.safetensors"
    write_safetensors(path, {"weight": w, "bias": b})
    m = sp.nn.from_safetensors("linear", str(path), device=device, in_features=4, out_features=3)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(m(x).numpy(), linear_ref(x, w, b), rtol=1e-5, atol=1e-5)


def test_hostile_safetensors_is_a_format_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    m = sp.nn.make("linear", in_features=4, out_features=3)
    with pytest.raises(sp.FormatError):
        m.load_safetensors(str(path))


def test_errors_keep_their_type_and_message(device):
    rng = np.random.default_rng(5)
    m, _, _ = make_linear(device, rng)
    with pytest.raises(sp.InvalidArgument, match="in_features 16") as e:
        m(np.ones((2, 3), np.float32))
    assert isinstance(e.value, ValueError) and isinstance(e.value, sp.Error)
    with pytest.raises(sp.InvalidArgument):
        sp.Device("tpu:0")
    with pytest.raises(sp.InvalidArgument):
        sp.nn.make("no_such_kind")
    unloaded = sp.nn.make("linear", in_features=2, out_features=2)
    with pytest.raises(sp.Error, match="load"):
        unloaded(np.ones((1, 2), np.float32))


def test_compiled_module_matches_eager(device):
    rng = np.random.default_rng(6)
    m, w, b = make_linear(device, rng)
    c = sp.compile(m)
    for rows in (1, 3, 3, 7):
        x = rng.standard_normal((rows, 16)).astype(np.float32)
        np.testing.assert_array_equal(c(x).numpy(), m(x).numpy())
    assert c.stats()["instances"] >= 3


def test_call_with_synchronize_leaves_the_stream_idle(device):
    # synchronize=True waits for the thread's stream in the same GIL release: right after the
    # call the stream has nothing left (an encoder at batch 64 takes milliseconds on a GPU, so a
    # call that only queued the work would leave the stream busy).
    m = sp.nn.make("transformer_encoder_layer", d_model=256, nhead=4, dim_feedforward=1024, batch_first=True)
    rng = np.random.default_rng(8)
    m.load_state_dict({n: rng.standard_normal(s).astype(np.float32) * 0.05 for n, s in m.parameters()}, device=device)
    x = sp.tensor(rng.standard_normal((64, 128, 256)).astype(np.float32), device=device)
    want = m(x).numpy()
    for call in (m, sp.compile(m)):
        y = call(x, synchronize=True)
        assert sp.current_stream(device).query()
        np.testing.assert_array_equal(y.numpy(), want)


def test_sixteen_python_threads_on_one_module(device):
    # Each thread has its own input and its own expected output (one thread computed it first);
    # every result must be bitwise equal to it.
    rng = np.random.default_rng(7)
    m, _, _ = make_linear(device, rng, 64, 32)
    inputs = [rng.standard_normal((4, 64)).astype(np.float32) for _ in range(16)]
    expected = [m(x).numpy() for x in inputs]
    wrong, errors = [], []

    def work(i):
        try:
            for _ in range(50):
                if not np.array_equal(m(inputs[i]).numpy(), expected[i]):
                    wrong.append(i)
        except Exception as e:  # reported below, with its type
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


def test_threads_get_their_own_streams(device):
    seen, lock = set(), threading.Lock()
    barrier = threading.Barrier(8)

    def work():
        s = sp.current_stream(device)
        barrier.wait()  # all alive at once: each holds its own lease
        with lock:
            seen.add(s.id)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8


def test_thread_churn(device):
    rng = np.random.default_rng(8)
    m, w, b = make_linear(device, rng, 8, 4)
    bad = []
    for round_ in range(20):
        xs = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(4)]
        refs = [m(x).numpy() for x in xs]

        def work(i):
            if not np.array_equal(m(xs[i]).numpy(), refs[i]):
                bad.append((round_, i))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert bad == []


def test_stream_guard_and_events(device):
    s = sp.stream_from_pool(device)
    with sp.StreamGuard(s) as entered:
        assert entered == s and sp.current_stream(device) == s
        t = sp.tensor(np.ones(4, np.float32), device=device)
        e = sp.Event()
        e.record(s)
    e.synchronize()
    assert e.query()
    assert sp.current_stream(device) != s
    assert t.numpy().tolist() == [1.0] * 4


def test_encoder_matches_torch(device):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    m = sp.nn.make("transformer_encoder_layer", d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    m.load_state_dict({k: v.detach() for k, v in ref.state_dict().items()}, device=device)
    x = torch.randn(3, 10, 32)
    with torch.no_grad():
        want = ref(x).numpy()
    np.testing.assert_allclose(m(x.numpy()).numpy(), want, rtol=1e-4, atol=1e-4)


def test_out_of_memory_is_a_memory_error_with_the_allocators_message(device):
    sp.empty_cache(device)
    before = sp.memory_limit(device)
    sp.set_memory_limit(device, 1 << 20)
    try:
        with pytest.raises(sp.OutOfMemoryError, match="out of memory") as e:
            sp.zeros([1 << 20], device=device)  # 4 MiB under a 1 MiB cap
        assert isinstance(e.value, MemoryError)
    finally:
        sp.set_memory_limit(device, before)
    assert sp.zeros([4], device=device).numpy().tolist() == [0.0] * 4


def test_hugging_face_bert_state_dict_through_safetensors(tmp_path, device):
    """A Hugging Face BertModel's own state dict, saved as safetensors, gives its outputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    st = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=64)
    ref = transformers.BertModel(transformers.BertConfig(**fields, hidden_dropout_prob=0.0,
                                                         attention_probs_dropout_prob=0.0)).eval()
    path = tmp_path / "bert.safetensors"
    st.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    m = sp.nn.from_safetensors("bert", str(path), device=device, **fields)
    ids = torch.randint(1, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.int64)
    mask[1, 7:] = 0
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask)
    hidden, pooled = m(ids.numpy(), attention_mask=mask.numpy())
    real = mask.numpy().astype(bool)
    np.testing.assert_allclose(hidden.numpy()[real], out.last_hidden_state.numpy()[real], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pooled.numpy(), out.pooler_output.numpy(), rtol=1e-4, atol=1e-4)
