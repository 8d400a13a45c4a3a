"""Model versions as weight files, and the server extension that says which version a replica serves.

`make_version` writes a new, genuinely different weights file (every weight rounded through float16), so a
rolling update has something to roll out; `routes` (ServeConfig(extensions="labkit.deploy.versions:routes"))
adds GET /version to a replica. Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

EXTENSION = "labkit.deploy.versions:routes"


def make_version(source: str | Path, target: str | Path, scale: float = 1.0) -> Path:
    """Copy a labkit checkpoint with every float weight times `scale`, rounded through float16 (a new version).

    The bytes depend only on the weights (not on the file name), so the same version always has the same
    ONNX export cache entry (labkit.serve.engines.onnx_file hashes the file)."""
    ckpt = torch.load(Path(source), map_location="cpu", weights_only=True)
    ckpt["model"] = {k: (v * scale).half().to(v.dtype) if v.is_floating_point() else v
                     for k, v in ckpt["model"].items()}
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)   # to a buffer: a file's name would end up inside the archive
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, target)
    return target


def version_of(service) -> str:
    """The weights file a running Service serves (its stem), or "loading" before it is loaded."""
    loaded = getattr(service, "loaded", None)
    return Path(loaded.weights).stem if loaded is not None else "loading"


def routes(service) -> list[Route]:
    """GET /version: {"version", "status", "in_flight", "pid"} of this replica."""
    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": version_of(service), "status": service.status,
                             "in_flight": service.in_flight, "pid": os.getpid()})
    return [Route("/version", version)]
