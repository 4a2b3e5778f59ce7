"""python -m streampool.bench: requests/s of streampool modules called from N Python threads.

Each thread has its own input and its own expected output (one call before the timed run);
each request is one forward call followed by a synchronize of the thread's own stream (the GIL
released in both), and every thread's last output is checked bitwise against its expectation.
Prints one JSON object per (model, threads) line; compare with ../shared/anchors/torch_threads.py
run in the same call.
"""

import argparse
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


def run(model, shape, device, threads, seconds, seed):
    rng = np.random.default_rng(seed)
    inputs = [sp.tensor(rng.standard_normal(shape).astype(np.float32), device=device, dtype=model.dtype)
              for _ in range(threads)]
    expected = [model(x).to("float32").numpy() for x in inputs]
    counts, wrong, errors = [0] * threads, [], []
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(i):
        try:
            s = sp.current_stream(device)
            start.wait()
            y = None
            while not stop.is_set():
                y = model(inputs[i])
                s.synchronize()
                counts[i] += 1
            if y is not None and not np.array_equal(y.to("float32").numpy(), expected[i]):
                wrong.append(i)
        except Exception as e:
            errors.append(repr(e))
            stop.set()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    return sum(counts) / wall, wrong, errors


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m streampool.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if sp.is_available("cuda") else "cpu")
    p.add_argument("--models", default="mlp,encoder")
    p.add_argument("--threads", default="1,2,4,8,16")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", help="append the lines to this file too")
    a = p.parse_args(argv)
    ok = True
    for name in a.models.split(","):
        if name not in MODELS:
            p.error(f"unknown model {name!r} (one of {', '.join(MODELS)})")
        make, shape = MODELS[name]
        model = make()
        rng = np.random.default_rng(0)
        model.load_state_dict({n: rng.standard_normal(s).astype(np.float32) * 0.05 for n, s in model.parameters()},
                              device=a.device, dtype=a.dtype)
        for n in (int(t) for t in a.threads.split(",")):
            rps, wrong, errors = run(model, shape, a.device, n, a.seconds, seed=n)
            line = {"bench": "python_threads", "model": name, "device": a.device, "dtype": a.dtype, "threads": n,
                    "requests_per_s": round(rps, 1), "wrong": len(wrong), "errors": errors[:3]}
            ok &= not wrong and not errors
            print(json.dumps(line), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(line) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
