import os

import pytest

import streampool as sp

DEVICES = ["cpu"] + (["cuda"] if sp.is_available("cuda") else [])


def pytest_generate_tests(metafunc):
    # Every test taking `device` runs on the CPU and, where a GPU is visible, on cuda:0; the
    # CUDA case is reported as skipped elsewhere.
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", ["cpu", "cuda"])


@pytest.fixture(autouse=True)
def _skip_missing_device(request):
    dev = request.node.callspec.params.get("device") if hasattr(request.node, "callspec") else None
    if dev == "cuda" and "cuda" not in DEVICES:
        pytest.skip("no CUDA device visible")


def exit_runs():
    return int(os.environ.get("STREAMPOOL_PY_EXIT_RUNS", "200"))
