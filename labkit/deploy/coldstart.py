"""The cold start of one replica, broken down: process start, imports, model load, engine export, first forward.

A fresh Python process runs the phases a model server runs before it can answer, and times each; the export
cache of the weights is removed first, so the export is paid as a new version pays it. The sum is what a
scale-up or an update waits before the new replica takes traffic. Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("process_start_s", "import_torch_s", "import_server_s", "model_load_s", "engine_export_s",
          "first_forward_s")

_CHILD = r"""
import json, os, sys, time
mark = [float(os.environ["LABKIT_T0"])]
out = {}
def lap(name):
    now = time.time(); out[name] = now - mark[0]; mark[0] = now
lap("process_start_s")
import torch
lap("import_torch_s")
import labkit.serve.app, labkit.serve.engines, labkit.serve.lifecycle
lap("import_server_s")
model, weights, engine = sys.argv[1], sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
loaded = labkit.serve.lifecycle.load_model(model, weights, evaluate=False)
lap("model_load_s")
forward = labkit.serve.engines.make_forward(model, loaded.model, loaded.weights, engine, 1)
lap("engine_export_s")
example = "the food was good" if model == "text" else [[[0.0] * 32] * 32] * 3
forward(loaded.preprocess([example]))
lap("first_forward_s")
print(json.dumps(out))
"""


def measure_cold_start(model: str, weights: str | Path, engine: str = "onnx", fresh_export: bool = True,
                       timeout_s: float = 300.0) -> dict[str, float]:
    """Seconds of each phase in a fresh process (PHASES), plus "total_s"; fresh_export drops the cached graph."""
    if engine == "onnx" and fresh_export:
        from labkit.serve.engines import onnx_file

        onnx_file(model, weights).unlink(missing_ok=True)
    env = {**os.environ, "LABKIT_T0": repr(time.time())}
    proc = subprocess.run([sys.executable, "-c", _CHILD, model, str(weights), engine], env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    phases = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**{k: phases.get(k, 0.0) for k in PHASES}, "total_s": sum(phases.values())}


def reaction_time_s(cold_start_s: float, health_interval_s: float, scaler_interval_s: float) -> float:
    """Worst-case seconds from a load step to a new replica taking traffic: decide + start + be seen healthy."""
    if min(cold_start_s, health_interval_s, scaler_interval_s) < 0:
        raise ValueError("times must be >= 0")
    return scaler_interval_s + cold_start_s + health_interval_s


def package_size_mb(name: str) -> float:
    """Disk size (MB) of an installed package's directory: what a container image layer carries for it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not an installed package")
    root = Path(list(spec.submodule_search_locations)[0])
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
