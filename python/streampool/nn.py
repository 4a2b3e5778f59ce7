"""Modules by kind and fields, as in PyTorch: streampool.nn.make("linear", in_features=4, out_features=2)."""

import json

from . import _core

Module = _core.Module


def make(kind: str, **fields) -> "_core.Module":
    """A module of `kind` (streampool.module_kinds()) with PyTorch's field names; weights not loaded."""
    return _core._make_module(kind, json.dumps(fields))


def from_safetensors(kind: str, path: str, device="cpu", dtype="float32", **fields) -> "_core.Module":
    """make(kind, **fields), then load_safetensors(path, device, dtype)."""
    m = make(kind, **fields)
    m.load_safetensors(path, device=device, dtype=dtype)
    return m
