"""`make lab` as a newcomer meets it: JupyterLab starts (as root too), runs labkit in a kernel, renders a notebook."""
from __future__ import annotations

import html.parser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest
import websocket  # websocket-client, a dependency of jupyter_server

from labkit import lab as labmod

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "00_welcome.ipynb"
READY_TIMEOUT_S = 60.0  # ready in ~5 s on 2 busy cores; the bound only turns a hang into a failure
CELL_TIMEOUT_S = 30.0
BROWSER_TIMEOUT_S = 90.0
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it listens and the token it accepts."""

    url: str
    token: str
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


def make_lab_argv() -> list[str]:
    """The Makefile's `lab` recipe as an argv, with $(VENV) set to the environment running these tests."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^lab:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, "the Makefile has no `lab:` target"
    lines = [line.strip() for line in match.group(1).splitlines()]
    assert len(lines) == 1, f"`lab` should be one command so this test runs exactly it: {lines}"
    return shlex.split(lines[0].replace("$(VENV)", sys.prefix))


def headless_flags(port: int, token: str) -> list[str]:
    """What the test adds to `make lab`: no browser, loopback only, a fixed port and token."""
    return ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(lab: Lab, method: str, path: str, body: dict | None = None, auth: bool = True) -> tuple[int, bytes]:
    """One request to the server: (status, body); HTTP errors are returned, not raised."""
    headers = {"Authorization": f"token {lab.token}"} if auth else {}
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(lab.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=CELL_TIMEOUT_S) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(lab: Lab, proc: subprocess.Popen) -> None:
    """Poll /api/status until the server answers, fails, or READY_TIMEOUT_S passes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`make lab` exited with {proc.returncode}:\n{lab.log_tail()}")
        try:
            if http(lab, "GET", "/api/status")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"JupyterLab not ready after {READY_TIMEOUT_S:.0f} s:\n{lab.log_tail()}")


def stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group (the server shuts its kernels down), then SIGKILL whatever is left."""
    try:
        family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    with_signal(lambda: os.killpg(proc.pid, signal.SIGTERM))
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    with_signal(lambda: os.killpg(proc.pid, signal.SIGKILL))
    for pid in family:  # kernels run in their own sessions, outside the server's group
        with_signal(lambda pid=pid: os.kill(pid, signal.SIGKILL))
    proc.wait(timeout=grace_s)


def with_signal(send) -> None:
    """Send a signal, ignoring a process (group) that is already gone."""
    try:
        send()
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab started exactly as `make lab` does, headless on a free loopback port; always stopped."""
    tmp = tmp_path_factory.mktemp("lab")
    port, token = free_port(), uuid.uuid4().hex
    server = Lab(f"http://127.0.0.1:{port}", token, tmp / "jupyter.log")
    # Runtime files and workspaces go to tmp so a test run leaves nothing in ~/.local or ~/.jupyter.
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
    argv = [*make_lab_argv(), "--", *headless_flags(port, token)]
    with server.log.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_ready(server, proc)
        yield server
    finally:
        stop_group(proc)


def execute_request(code: str) -> dict:
    """A Jupyter messaging-protocol execute_request for the shell channel."""
    header = {"msg_id": uuid.uuid4().hex, "session": uuid.uuid4().hex, "username": "test_lab",
              "msg_type": "execute_request", "version": "5.3", "date": ""}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": "shell", "buffers": []}


def run_cell(lab: Lab, kernel_id: str, code: str) -> str:
    """Run `code` in the kernel over the server's websocket; return its stdout, fail on an error."""
    url = f"{lab.url.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(url, header=[f"Authorization: token {lab.token}"], timeout=CELL_TIMEOUT_S)
    try:
        request = execute_request(code)
        ws.send(json.dumps(request))
        stdout, reply, idle = [], None, False
        deadline = time.monotonic() + CELL_TIMEOUT_S
        while (reply is None or not idle) and time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                pytest.fail("cell raised:\n" + "\n".join(content["traceback"]))
            elif kind == "execute_reply":
                reply = content
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
    assert reply is not None and idle, f"no reply within {CELL_TIMEOUT_S:.0f} s"
    assert reply["status"] == "ok", reply
    return "".join(stdout)


def test_allow_root_is_passed_only_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labmod, "running_as_root", lambda: True)
    as_root = labmod.lab_argv(["--no-browser"])
    monkeypatch.setattr(labmod, "running_as_root", lambda: False)
    as_user = labmod.lab_argv(["--no-browser"])
    assert "--allow-root" in as_root and "--allow-root" not in as_user
    assert as_user[1:4] == ["-m", "jupyterlab", str(ROOT / "notebooks")] and as_user[-1] == "--no-browser"


def test_make_lab_serves_jupyterlab_and_runs_labkit_in_a_kernel(lab: Lab) -> None:
    status, page = http(lab, "GET", "/lab")
    assert status == 200 and b"JupyterLab" in page, (status, page[:300])
    assert http(lab, "GET", "/api/kernels", auth=False)[0] == 403  # the token is in force
    status, body = http(lab, "POST", "/api/kernels", {"name": "python3"})
    assert status == 201, (status, body, lab.log_tail())
    kernel_id = json.loads(body)["id"]
    try:
        printed = run_cell(lab, kernel_id, "import labkit; print(labkit.__file__)")
    finally:
        deleted = http(lab, "DELETE", f"/api/kernels/{kernel_id}")[0]
    assert deleted == 204
    assert Path(printed.strip()).resolve() == (ROOT / "labkit" / "__init__.py").resolve()
    running = [k["id"] for k in json.loads(http(lab, "GET", "/api/kernels")[1])]
    assert kernel_id not in running


class _Headings(html.parser.HTMLParser):
    """Collects the text of every <h1> in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.h1: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "h1":
            self._depth += 1
            self.h1.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.h1[-1] += data


def notebook_title(path: Path) -> str:
    """The `# ` heading of a notebook's first markdown cell."""
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    return next(line[2:].strip() for line in first.source.splitlines() if line.startswith("# "))


def browser_dom(browser: str, url: str, profile: Path) -> str:
    """The DOM of `url` after headless Chromium let the page's scripts run (virtual time, bounded)."""
    # JupyterLab renders client-side; --virtual-time-budget waits for the page to settle (~5 s real here).
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--window-size=1280,900", "--virtual-time-budget=30000",
            "--dump-dom", url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    finally:
        with_signal(lambda: os.killpg(proc.pid, signal.SIGKILL))
        proc.wait()
    return out.decode(errors="replace")


def test_make_lab_renders_a_course_notebook_in_a_browser(lab: Lab, tmp_path: Path) -> None:
    browser = next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)
    if browser is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium); "
                    "the in-browser rendering check needs a headless browser")
    title = notebook_title(NOTEBOOK)
    checkpoints = NOTEBOOK.parent / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    try:
        dom = browser_dom(browser, f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}", tmp_path / "profile")
    finally:
        if not had_checkpoints:  # opening a notebook makes a checkpoint copy; leave the tree as found
            shutil.rmtree(checkpoints, ignore_errors=True)
    parser = _Headings()
    parser.feed(dom)
    # The title as a rendered <h1> proves JupyterLab loaded, fetched the notebook and rendered markdown.
    assert any(title in heading for heading in parser.h1), (title, parser.h1, len(dom), lab.log_tail())
