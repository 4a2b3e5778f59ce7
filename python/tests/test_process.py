"""Process lifetime from Python: fork refused in the child, interpreter exit with busy threads
(the MPS suite's test 21 crashed 20-40% of the time there)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import streampool as sp
from conftest import exit_runs


def test_fork_child_is_refused_parent_continues(device):
    m = sp.nn.make("linear", in_features=4, out_features=2)
    m.load_state_dict({"weight": np.ones((2, 4), np.float32), "bias": np.zeros(2, np.float32)}, device=device)
    x = np.ones((1, 4), np.float32)
    assert m(x).numpy().tolist() == [[4.0, 4.0]]
    pid = os.fork()
    if pid == 0:  # the child: streampool work must be refused with ForkedChildError
        code = 3
        try:
            m(x)
        except sp.ForkedChildError:
            code = 0
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert m(x).numpy().tolist() == [[4.0, 4.0]], "the parent goes on"


SCRIPT = textwrap.dedent("""
    import faulthandler, sys, threading, numpy as np, streampool as sp
    faulthandler.enable()  # a crash prints every thread's Python stack to stderr
    device, daemon = sys.argv[1], sys.argv[2] == "daemon"
    m = sp.nn.make("mlp", sizes=[64, 256, 64])
    rng = np.random.default_rng(0)
    m.load_state_dict({n: rng.standard_normal(s).astype(np.float32) * 0.1 for n, s in m.parameters()}, device=device)
    q = sp.BatchQueue(m, max_batch_size=8)
    started = threading.Barrier(9)
    stop = threading.Event()
    def work(i):
        x = rng.standard_normal((4, 64)).astype(np.float32)
        started.wait()
        while not stop.is_set():
            m(x)
            q.submit(x)
            if not daemon and i == 0:
                break
    threads = [threading.Thread(target=work, args=(i,), daemon=daemon) for i in range(8)]
    for t in threads: t.start()
    started.wait()
    if not daemon:
        stop.set()
    print("exiting", flush=True)
""")


@pytest.mark.parametrize("mode", ["daemon", "joined"])
def test_interpreter_exit_with_busy_threads_is_clean(device, mode):
    env = dict(os.environ)
    crashes = []
    for run in range(exit_runs()):
        p = subprocess.run([sys.executable, "-c", SCRIPT, device, mode], env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0 or "exiting" not in p.stdout:
            crashes.append((run, p.returncode, p.stderr[-2000:]))
    assert crashes == [], crashes[:3]
