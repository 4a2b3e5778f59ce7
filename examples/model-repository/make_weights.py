#!/usr/bin/env python3
"""Writes random weights (fixed seeds) for every model of this repository, as model.safetensors
beside its config.json: python3 examples/model-repository/make_weights.py [REPOSITORY]

The parameter names and shapes come from streampool itself (PYTHONPATH=build/default/python), or
from a parameters.json beside config.json ([[name, shape], ...]) where that exists, so a machine
without the Python module can write them too; the file is written with NumPy alone (safetensors: an 8-byte little-endian header length, the
JSON header, then the tensors' bytes)."""
import json
import pathlib
import struct
import sys

import numpy as np


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main(root):
    for seed, cfg_path in enumerate(sorted(pathlib.Path(root).glob("*/config.json"))):
        cfg = json.loads(cfg_path.read_text())
        listed = cfg_path.parent / "parameters.json"
        if listed.exists():
            params = json.loads(listed.read_text())
        else:
            import streampool as sp
            params = sp.nn.make(cfg["module"], **cfg["config"]).parameters()
        rng = np.random.default_rng(seed)
        tensors = {}
        for name, shape in params:
            if name.endswith("weight") and len(shape) == 1:  # layer norms: near 1
                tensors[name] = 1 + 0.1 * rng.standard_normal(shape)
            else:
                tensors[name] = 0.1 * rng.standard_normal(shape)
        out = cfg_path.parent / cfg.get("weights", "model.safetensors")
        write_safetensors(out, tensors)
        print(f"{out}: {len(tensors)} tensors, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent)
