"""ServeConfig: every lever of the model server, as one frozen dataclass and one flag each.

Taught in 09_async_serving.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

MODELS = ("text", "image")
WORKER_MODES = ("inline", "thread", "process")
ENGINES = ("torch", "onnx", "onnx-int8")  # labkit.serve.engines


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs; each field is also a `labkit serve` flag (underscores -> dashes)."""
    model: str = "text"              # "text" (GRU classifier: batching buys ~6-10x) | "image" (small CNN: ~2x)
    batching: bool = True            # dynamic batching; off = one forward per request (the naive server)
    max_batch: int = 64              # rows per forward; on 2 cores the GRU's throughput flattens near 64
    max_wait_ms: float = 2.0         # how long the oldest queued request may wait for the batch to fill
    cache: bool = False              # LRU cache of per-input results
    cache_size: int = 4096           # entries in the cache
    workers: str = "thread"          # where the forward runs: "inline" (event loop), "thread", "process"
    engine: str = "torch"            # what runs the forward: "torch" (eager) | "onnx" (ONNX Runtime, GIL-free)
                                     # | "onnx-int8" (the ONNX graph with dynamic INT8 weights: measure accuracy)
    threads: int = 1                 # intra-op threads per worker
    num_workers: int = 1             # forwards that may run at once (threads or processes in the pool)
    queue_limit: int = 256           # admitted-but-unanswered requests; beyond it -> 429 + Retry-After
    adaptive_limit: bool = True      # admit fewer when latency says requests queue (labkit.serve.adaptive)
    max_hold_ms: float = 5.0         # saturated: a new request waits unread this long, then 429 (0: refuse new ones
                                     # at once; a resend of the same request within 20 ms still waits up to 0.25 s)
    body_timeout_s: float = 10.0     # a body not complete within this -> 408 (slow clients hold no slot meanwhile)
    header_timeout_s: float = 10.0   # request line + headers not complete within this -> 408, connection closed
    max_header_bytes: int = 65_536   # request line + headers beyond this -> 431, connection closed
    max_items: int = 64              # inputs per request
    max_body_bytes: int = 1_000_000  # request body limit (-> 413)
    gc_freeze: bool = True           # after start-up, hide its objects from the garbage collector (short GC pauses)
    no_model: bool = False           # fixed answer, no model: measures the HTTP bound
    slow_ms: float = 0.0             # extra sleep per forward (a deliberately slow replica)
    checkpoint: str | None = None    # weights to load; None = train once, then reuse the cached weights
    extensions: str = ""             # extra endpoints: comma-separated "module:function", each (Service) -> [Route]
    json_logs: bool = False          # one JSON line per /predict on stderr (request id, outcome, status, latency)
    reuse_port: bool = False         # SO_REUSEPORT: several processes on one port, the kernel spreads connections

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}; got {self.model!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}; got {self.engine!r}")
        if self.workers not in WORKER_MODES:
            raise ValueError(f"workers must be one of {WORKER_MODES}; got {self.workers!r}")
        for name in ("max_batch", "cache_size", "threads", "num_workers", "queue_limit", "max_items", "max_header_bytes",
                     "max_body_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        for name in ("body_timeout_s", "header_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        for name in ("max_wait_ms", "slow_ms", "max_hold_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")

    def replace(self, **changes) -> ServeConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_args(self) -> list[str]:
        """The `labkit serve` flags that reproduce this config (only fields that differ from the defaults)."""
        args: list[str] = []
        for f in dataclasses.fields(self):
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if value == f.default:
                continue
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args

    @classmethod
    def from_args(cls, namespace: argparse.Namespace) -> ServeConfig:
        """Build from parsed flags; attributes the namespace lacks keep their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(namespace).items() if k in names and v is not None})


HELP = {
    "model": "text: GRU classifier (default; batching pays) | image: small 32x32 CNN",
    "batching": "dynamic batching (off: one forward per request, the naive server)",
    "max_batch": "rows per forward", "max_wait_ms": "how long the oldest queued request waits for a fuller batch",
    "cache": "LRU cache of per-input results", "cache_size": "cache entries",
    "workers": "where the forward runs", "threads": "intra-op threads per worker",
    "engine": "what runs the forward: eager PyTorch, or the exported graph on ONNX Runtime (releases the GIL); "
              "onnx-int8: that graph with dynamic INT8 weights (measure its accuracy)",
    "num_workers": "forwards that may run at once (threads or processes)",
    "queue_limit": "admitted-but-unanswered requests; beyond it 429 + Retry-After",
    "adaptive_limit": "learn a lower admission limit from latency (gradient limit; never above --queue-limit)",
    "reuse_port": "listen with SO_REUSEPORT: start N servers on the same --port and the kernel spreads the "
                  "connections over them (replicas on one machine without a balancer hop)",
    "max_hold_ms": "while saturated, a new request waits unread this long before its 429 (0: refuse new requests at "
                   "once; the same request resent within 20 ms of its 429 still waits up to 0.25 s)",
    "body_timeout_s": "seconds a request body may take to arrive (408 after)",
    "header_timeout_s": "seconds the request line and headers may take to arrive (408 and close after)",
    "max_header_bytes": "request line + headers limit (431 and close beyond)",
    "max_items": "inputs per request", "max_body_bytes": "request body limit (413 beyond)",
    "slow_ms": "extra sleep per forward (a deliberately slow replica)",
    "gc_freeze": "after start-up, gc.freeze() its objects so full collections stay short",
    "json_logs": "one JSON access-log line per /predict request on stderr, carrying its request id (12 §7)",
    "extensions": "extra endpoints, comma-separated module:function names, each taking the Service and "
                  "returning Starlette routes (e.g. labkit.serve.explaining:routes)",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ServeConfig field; booleans get --x / --no-x."""
    for f in dataclasses.fields(ServeConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "no_model":  # BooleanOptionalAction would read "--no-model" as model=False
            parser.add_argument(flag, action="store_true", help="fixed answers, no model (the HTTP bound)")
        elif f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=HELP[f.name])
        elif f.name == "checkpoint":
            parser.add_argument(flag, default=None, help="weights file (default: train once and cache)")
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            choices = {"model": MODELS, "workers": WORKER_MODES, "engine": ENGINES}.get(f.name)
            parser.add_argument(flag, type=kind, default=f.default, choices=choices,
                                help=HELP[f.name] + " (default: %(default)s)")
