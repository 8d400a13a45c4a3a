"""`labkit serve`: run the model server on uvicorn (uvloop + httptools, access log off, one process).

Taught in 09_async_serving.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from labkit.serve.config import ServeConfig, add_config_arguments
from labkit.serve.process import exit_with_parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ServeConfig flag plus --host, --port, --replicas and --log-level."""
    add_config_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=1, help="> 1: replicas behind a balancer (issue 7)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    config = ServeConfig.from_args(args)
    if args.replicas < 1:
        raise ValueError(f"replicas must be >= 1; got {args.replicas}")
    if args.replicas > 1:
        from labkit.serve.replicas import serve_replicas

        return serve_replicas(config, replicas=args.replicas, host=args.host, port=args.port) or 0
    return serve(config, args.host, args.port, args.log_level)


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; in-flight requests are answered before the process exits. 1 if loading failed."""
    import torch
    import uvicorn

    from labkit.serve.app import create_app
    from labkit.serve.transport import Gate, GateConfig, gated_protocol

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Loading checks the model's held-out accuracy: on the default intra-op threads (one per core), OpenMP's
    # idle threads spin, and servers started together burn each other's cores (4 at once on 2 cores: 9.1 s and
    # 19 CPU-s to come up, against 2.5 s and 6 CPU-s on the server's own thread count).
    torch.set_num_threads(config.threads)
    failures: list[BaseException] = []
    holder: list[uvicorn.Server] = []

    def on_fatal(err: BaseException) -> None:
        failures.append(err)
        holder[0].should_exit = True

    if config.json_logs:
        from labkit.monitor.logs import json_logger

        json_logger("labkit.serve.access", sys.stderr)
    app = create_app(config, on_fatal=on_fatal)
    service = app.state.service

    class DrainingServer(uvicorn.Server):
        """Drains the service (503 on /health and /predict, held requests answered) the moment a stop signal
        arrives, and exits 0 after a clean drain (uvicorn re-raises the signal: exit status 143)."""

        def handle_exit(self, sig, frame) -> None:
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(service.drain)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    exit_with_parent()
    gate = Gate(service.admission_limit, service.metrics.outcome["queue_full"].inc, service.next_id,
                GateConfig(max_hold_ms=config.max_hold_ms, header_timeout_s=config.header_timeout_s,
                           max_header_bytes=config.max_header_bytes), service.metrics.outcome["bad_input"].inc)
    service.gate = gate
    uconfig = uvicorn.Config(app, host=host, port=port, loop="uvloop", http=gated_protocol(gate), lifespan="on",
                             access_log=False, log_level=log_level, workers=1, backlog=4096,
                             timeout_graceful_shutdown=config.body_timeout_s + 5)
    holder.append(DrainingServer(uconfig))
    holder[0].run(sockets=[reuse_port_socket(host, port)] if config.reuse_port else None)
    return 1 if failures else 0


def reuse_port_socket(host: str, port: int, backlog: int = 4096):
    """A listening socket with SO_REUSEPORT: every process that binds the same port this way gets its own accept
    queue, and the kernel hashes each new connection to one of them (no balancer process, no extra hop)."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock
