"""python -m streampool.bench: requests/s of streampool modules called from N Python threads.

Each thread has its own input and its own expected output (one eager call before the timed
run). Modes (--modes):
  eager     model(x, synchronize=True): the forward and a synchronize of the thread's own stream
            in one release of the GIL; the last output is checked bitwise against the expectation.
  compiled  the same through streampool.compile(model) (the graph path); checked bitwise.
  batched   BatchQueue.run(x) from every thread into one queue (2 workers on a GPU, 1 on the CPU,
            max_batch_size 256 / 32, like `streampool bench --modes batched`); a batch's rows may
            round differently from one row's forward, so the check allows 1e-4 (float32) / 3e-2.
  futures   the same queue, each thread keeping --window requests in flight through submit()
            (a Future each, fulfilled by the completion thread), as an asyncio or threaded server
            with several requests per thread would; counted as each oldest Future is taken.
Prints one JSON object per (model, mode, threads) line; compare with
../shared/anchors/torch_threads.py and `streampool bench` (direct, graph, batched closed loop)
run in the same call.
"""

import argparse
import collections
import json
import sys
import threading
import time

import numpy as np

import streampool as sp

MODELS = {
    # ../shared/bench/WORKLOADS.md
    "mlp": (lambda: sp.nn.make("mlp", sizes=[256, 1024, 1024, 256], activation="gelu"), (1, 256)),
    "encoder": (lambda: sp.nn.make("transformer_encoder_layer", d_model=512, nhead=8, dim_feedforward=2048,
                                   batch_first=True), (1, 128, 512)),
}


def make_call(model, mode, device):
    if mode == "eager":
        return (lambda x: model(x, synchronize=True)), None
    if mode == "compiled":
        compiled = sp.compile(model)
        return (lambda x: compiled(x, synchronize=True)), None
    if mode in ("batched", "futures"):
        gpu = device != "cpu"
        queue = sp.BatchQueue(model, max_batch_size=256 if gpu else 32, num_workers=2 if gpu else 1)
        return (queue.run if mode == "batched" else (lambda x: queue.submit(x).result())), queue
    raise ValueError(f"unknown mode {mode!r} (eager, compiled, batched or futures)")


def run(model, mode, shape, device, threads, seconds, seed, window=4):
    rng = np.random.default_rng(seed)
    inputs = [sp.tensor(rng.standard_normal(shape).astype(np.float32), device=device, dtype=model.dtype)
              for _ in range(threads)]
    expected = [model(x).to("float32").numpy() for x in inputs]
    tol = 0.0 if mode in ("eager", "compiled") else (1e-4 if model.dtype == "float32" else 3e-2)
    call, queue = make_call(model, mode, device)
    counts, wrong, errors = [0] * threads, [], []
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(i):
        try:
            call(inputs[i])  # warm-up (a capture in compiled mode), not counted
            start.wait()
            y = None
            if mode == "futures":
                inflight = collections.deque(queue.submit(inputs[i]) for _ in range(window))
                while not stop.is_set():
                    y = inflight.popleft().result()
                    counts[i] += 1
                    inflight.append(queue.submit(inputs[i]))
                for f in inflight:
                    f.result()
            else:
                while not stop.is_set():
                    y = call(inputs[i])
                    counts[i] += 1
            got = y.to("float32").numpy()
            if got.shape != expected[i].shape or not np.max(np.abs(got - expected[i]), initial=0.0) <= tol:
                wrong.append(i)
        except Exception as e:
            errors.append(repr(e))
            stop.set()
            start.abort()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    if not errors:
        time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if queue is not None:
        queue.close()
    return sum(counts) / wall, wrong, errors


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m streampool.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if sp.is_available("cuda") else "cpu")
    p.add_argument("--models", default="mlp,encoder")
    p.add_argument("--modes", default="eager,compiled,batched,futures")
    p.add_argument("--window", type=int, default=4, help="futures mode: requests in flight per thread")
    p.add_argument("--threads", default="1,2,4,8,16")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", help="append the lines to this file too")
    a = p.parse_args(argv)
    for mode in a.modes.split(","):
        if mode not in ("eager", "compiled", "batched", "futures"):
            p.error(f"unknown mode {mode!r} (eager, compiled, batched or futures)")
    if a.window < 1:
        p.error("--window must be at least 1")
    ok = True
    for name in a.models.split(","):
        if name not in MODELS:
            p.error(f"unknown model {name!r} (one of {', '.join(MODELS)})")
        make, shape = MODELS[name]
        model = make()
        rng = np.random.default_rng(0)
        model.load_state_dict({n: rng.standard_normal(s).astype(np.float32) * 0.05 for n, s in model.parameters()},
                              device=a.device, dtype=a.dtype)
        for mode in a.modes.split(","):
            for n in (int(t) for t in a.threads.split(",")):
                rps, wrong, errors = run(model, mode, shape, a.device, n, a.seconds, seed=n, window=a.window)
                line = {"bench": "python_threads", "model": name, "mode": mode, "device": a.device,
                        "dtype": a.dtype, "threads": n, "window": a.window if mode == "futures" else 1,
                        "requests_per_s": round(rps, 1), "wrong": len(wrong),
                        "errors": errors[:3]}
                ok &= not wrong and not errors
                print(json.dumps(line), flush=True)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(json.dumps(line) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
