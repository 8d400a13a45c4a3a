"""Start and stop a real model server from a notebook or a test, and never leave one behind.

    with ServerProcess(ServeConfig(batching=False)) as server:
        ... requests to server.url ...

The server runs as `python -m labkit.serve` in a new process group on a free loopback port; start()
returns once GET /health answers 200. Stopping sends SIGTERM (the server answers what is in flight),
waits, then SIGKILLs the whole group. An atexit hook stops any server still running, and the server
itself exits if this process dies (LABKIT_PARENT_PID watchdog: exit_with_parent, called by the child).
Other long-running children (the balancer, any future sidecar) subclass ServerProcess and give their own
argv(): they share the launch, the health wait and the clean-up. Taught in 09_async_serving.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from labkit.serve.config import ServeConfig

PARENT_ENV = "LABKIT_PARENT_PID"  # the server exits when this process is no longer its parent
_RUNNING: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def exit_with_parent() -> None:
    """In a child started by ServerProcess: SIGTERM ourselves once that parent is gone (no orphaned servers)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="labkit-parent-watch", daemon=True).start()


class ServerProcess:
    """A `labkit serve` subprocess: start(), url, pid, alive, kill(), stop(); a context manager."""
    log_name = "serve"  # the log file is labkit-<log_name>-<port>-*.log

    def __init__(self, config: ServeConfig | None = None, port: int | None = None, env: dict | None = None,
                 startup_timeout_s: float = 60.0, host: str = "127.0.0.1", extra_args: tuple[str, ...] = ()):
        self.config, self.host, self.env = config or ServeConfig(), host, dict(env or {})
        self.startup_timeout_s, self.extra_args = startup_timeout_s, tuple(extra_args)
        self._fixed_port, self.port = port, port
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    # ------------------------------------------------------------------ properties
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the server and all its children (process-pool workers), in MB."""
        import psutil

        if not self.alive:
            return 0.0
        root = psutil.Process(self.proc.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:  # a child that just exited
                pass
        return total / 1e6

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote (stdout and stderr)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ start / stop
    def start(self) -> ServerProcess:
        """Launch and wait for /health == 200; RuntimeError with the log tail if it does not come up."""
        if self.alive:
            raise RuntimeError(f"server already running at {self.url} (pid {self.pid})")
        for attempt in range(3):  # a free port can be taken between free_port() and the server's bind
            self._launch()
            try:
                self._wait_healthy()
                return self
            except RuntimeError:
                tail = self.log_tail()
                self.stop()
                if self._fixed_port is None and "address already in use" in tail.lower() and attempt < 2:
                    continue
                raise
        raise AssertionError("unreachable")

    def argv(self) -> list[str]:
        """The command line of the child on self.host:self.port (a subclass runs another program here)."""
        return [sys.executable, "-m", "labkit.serve", "--host", self.host, "--port", str(self.port),
                *self.config.to_args(), *self.extra_args]

    def _launch(self) -> None:
        self.port = self._fixed_port or free_port(self.host)
        fd, path = tempfile.mkstemp(prefix=f"labkit-{self.log_name}-{self.port}-", suffix=".log")
        self.log_path = Path(path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()), **self.env}
        with os.fdopen(fd, "wb") as log:  # a file, not a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        _RUNNING.add(self)  # the atexit hook stops it if the caller forgets

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode} during start-up; "
                                   f"log tail:\n{self.log_tail()}")
            if self._health_status() == 200 and self._answered_by_me():
                return
            time.sleep(0.05)
        raise RuntimeError(f"server at {self.url} not healthy after {self.startup_timeout_s:.0f} s; "
                           f"log tail:\n{self.log_tail()}")

    def _answered_by_me(self) -> bool:
        """With reuse_port, several servers share the port and /health may come from another one: ready only
        when a 200 names this child's pid (each new connection is hashed to one of them, so it comes)."""
        if not getattr(self.config, "reuse_port", False):
            return True
        import json

        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return json.loads(response.read()).get("pid") == self.proc.pid
        except (OSError, ValueError):
            return False

    def _health_status(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code  # 503 while loading
        except OSError:
            return None  # not listening yet

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the server (it answers what is in flight), wait, then SIGKILL its whole process group."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group()
        self.proc.wait()
        _RUNNING.discard(self)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and its workers at once (a replica dying mid-request)."""
        if self.proc is not None:
            self._kill_group()
            self.proc.wait()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group: process-pool workers included
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"ServerProcess({self.url}, pid={self.pid}, {state})"
