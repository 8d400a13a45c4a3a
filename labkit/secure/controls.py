"""The serving controls of 09 and 10 seen as security controls: what a hostile client meets at the door.

`probe_server` sends a small battery of abusive requests to the in-process app (labkit.serve.app) and reports
each answer; `flood` shows a per-client token bucket (labkit.serve.flow) keeping one client's flood from
starving another; `sealed_loader` makes the server load its weights only from a sealed file (labkit.secure.crypto),
so a tampered or swapped file stops it from starting. Taught in 15_security_and_privacy.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Callable

from labkit.serve.config import ServeConfig
from labkit.serve.flow import FlowConfig, FlowController

GOOD_TEXT = "the food was not good"


def abusive_requests(max_items: int, max_body_bytes: int) -> list[tuple[str, bytes]]:
    """(what it tries, body): malformed, oversized, wrong types, extra fields, too many inputs, NaN deadline."""
    depth = max_body_bytes // 2 - 8  # deep enough to exhaust a recursive parser, small enough to pass the limit
    return [
        ("well-formed request (control)", json.dumps({"inputs": [GOOD_TEXT]}).encode()),
        ("not JSON", b"{'inputs': [oops"),
        (f"JSON nested {depth:,} deep", b"[" * depth + b"]" * depth),
        ("body over the byte limit", json.dumps({"inputs": ["a" * max_body_bytes]}).encode()),
        ("more inputs than allowed", json.dumps({"inputs": [GOOD_TEXT] * (max_items + 1)}).encode()),
        ("unknown field (a hidden option)", json.dumps({"inputs": [GOOD_TEXT], "debug": True}).encode()),
        ("wrong input type", json.dumps({"inputs": [{"$gt": ""}]}).encode()),
        ("NaN deadline", b'{"inputs": ["ok"], "deadline_ms": NaN}'),
    ]


async def probe_server(config: ServeConfig, loader: Callable | None = None, burst: int = 40) -> dict:
    """Send the abusive requests one by one, then `burst` at once; return each answer and the burst's codes."""
    import httpx

    from labkit.serve.app import create_app

    app = create_app(config, loader=loader)
    service = app.state.service
    await service.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe", timeout=60) as client:
            rows = []
            for what, body in abusive_requests(config.max_items, config.max_body_bytes):
                r = await client.post("/predict", content=body, headers={"Content-Type": "application/json"})
                rows.append({"request": what, "status": r.status_code, "code": r.json().get("code", "ok"),
                             "answer": r.json().get("error", "labels " + str(r.json().get("labels")))[:70]})
            good = json.dumps({"inputs": [GOOD_TEXT]}).encode()
            start = time.perf_counter()
            answers = await asyncio.gather(*(client.post("/predict", content=good) for _ in range(burst)))
            burst_s = time.perf_counter() - start
            after = (await client.post("/predict", content=good)).status_code
    finally:
        await service.stop()
    codes = [r.status_code for r in answers]
    return {"rows": rows, "burst_codes": codes, "burst_s": burst_s, "status_after_burst": after,
            "retry_after": [r.headers.get("retry-after") for r in answers if r.status_code == 429][:1]}


def flood(rate_per_s: float, burst: float, flood_rps: float, quiet_rps: float, seconds: float) -> dict:
    """Two clients on a fake clock through one FlowController: admitted share of each, per-client token buckets."""
    now = [0.0]
    controller = FlowController(FlowConfig(client_rate_per_s=rate_per_s, client_burst=burst), clock=lambda: now[0])
    arrivals = sorted([(i / flood_rps, "flooder") for i in range(int(seconds * flood_rps))]
                      + [(i / quiet_rps, "quiet") for i in range(int(seconds * quiet_rps))])
    sent = {"flooder": 0, "quiet": 0}
    admitted = {"flooder": 0, "quiet": 0}
    for t, client in arrivals:
        now[0] = t
        sent[client] += 1
        if controller.admit(client).admitted:
            admitted[client] += 1
            controller.release()
    return {client: {"sent": sent[client], "admitted": admitted[client],
                     "admitted_share": admitted[client] / sent[client]} for client in sent}


def sealed_loader(path: str | Path, key: bytes, name: str, version: str) -> Callable:
    """A server loader that builds the text model from a sealed file: a refused file means no server."""
    def load():
        from labkit.secure.crypto import unseal_file
        from labkit.serve.lifecycle import LoadedModel, build_model
        from labkit.serve.preprocessing import make_preprocessor

        start = time.perf_counter()
        state = unseal_file(path, key, name, version)  # raises a SecurityError before any weight is used
        preprocess = make_preprocessor("text")
        model = build_model("text", len(preprocess.vocab))
        model.load_state_dict(state)
        return LoadedModel("text", model.eval(), preprocess, Path(path), float("nan"), time.perf_counter() - start)
    return load
