"""Fault injection for a running model server: error bursts, added latency, a serving-side
preprocessing skew, switched on over HTTP.

Mounted through the server's extension hook, so the server code stays untouched:

    ServerProcess(ServeConfig(extensions="labkit.monitor.faults:routes"))
    set_fault(server.url, error_rate=0.5)      # half the requests now fail with a 500
    set_fault(server.url)                      # back to normal

The hook wraps Service.infer: a faulty request raises (the server counts it as outcome="error" and answers
500, exactly like a failed forward) or sleeps `delay_ms` first (it shows up in the latency histogram).
Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Fault:
    """The fault now active on one server (all zero = healthy)."""
    error_rate: float = 0.0   # fraction of predict requests that fail with a 500
    delay_ms: float = 0.0     # extra latency added to every predict request
    skew: float = 0.0         # 1 = serving "cleans" text differently from training: drops negation words


NEGATIONS = frozenset({"not", "no", "never", "n't"})


def skewed_text(text: str) -> str:
    """A serving-side preprocessing bug: stop-word removal that training never did (it drops negations)."""
    return " ".join(w for w in text.split() if w.lower() not in NEGATIONS) or text


class InjectedFault(RuntimeError):
    """Raised inside a request the fault injector chose to fail."""


def wrap_infer(service, fault: Fault, rng: random.Random) -> None:
    """Replace service.infer by a version that obeys `fault` (the instance attribute shadows the method)."""
    infer = service.infer

    async def faulty_infer(inputs: list, deadline_ms: float | None):
        if fault.delay_ms > 0:
            await asyncio.sleep(fault.delay_ms / 1e3)
        if fault.error_rate > 0 and rng.random() < fault.error_rate:
            raise InjectedFault(f"injected fault (error_rate {fault.error_rate:g})")
        if fault.skew > 0:
            inputs = [skewed_text(x) if isinstance(x, str) else x for x in inputs]
        return await infer(inputs, deadline_ms)

    service.infer = faulty_infer


def routes(service) -> list[Route]:
    """The extension hook: GET/POST /fault reads or sets this server's Fault (JSON body, missing keys -> 0)."""
    fault = Fault()
    wrap_infer(service, fault, random.Random(0))

    async def endpoint(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = json.loads(await request.body() or b"{}")
            new = Fault(**{k: float(body.get(k, 0.0)) for k in asdict(fault)})
            if not 0 <= new.error_rate <= 1 or new.delay_ms < 0:
                return JSONResponse({"error": "need 0 <= error_rate <= 1 and delay_ms >= 0"}, 400)
            for name, value in asdict(new).items():
                setattr(fault, name, value)
        return JSONResponse(asdict(fault))

    return [Route("/fault", endpoint, methods=["GET", "POST"])]


def set_fault(url: str, error_rate: float = 0.0, delay_ms: float = 0.0, skew: bool = False) -> dict:
    """Set the fault on the server at `url` (no arguments: heal it); returns what the server now applies."""
    body = json.dumps({"error_rate": error_rate, "delay_ms": delay_ms, "skew": float(skew)}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/fault", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())
