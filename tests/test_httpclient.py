"""FastClient against a scripted raw HTTP/1.1 server (every edge it must survive), and against aiohttp as the
oracle on a real Starlette app."""
import asyncio
import json
import threading

import pytest

from labkit.serve.httpclient import FastClient


class RawServer:
    """asyncio server in a thread; the request path picks the behaviour; counts accepted connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                length = next(int(ln.split(":")[1]) for ln in lines if ln.lower().startswith("content-length"))
                body = await reader.readexactly(length)
                if path == "/drop":
                    break
                if path == "/garbage":
                    writer.write(b"this is not HTTP at all\r\n\r\n")
                    break
                if path == "/slow":
                    await asyncio.sleep(0.5)
                reply = json.dumps({"path": path, "echo": body.decode()}).encode()
                if path == "/chunked":
                    half = len(reply) // 2
                    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (reply[:half], reply[half:]))
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
                else:
                    status = b"429 Too Many Requests" if path == "/busy" else b"200 OK"
                    close = path == "/close"
                    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n%s\r\n" % (
                        len(reply), b"Connection: close\r\n" if close else b"") + reply)
                    if close:
                        await writer.drain()
                        break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)


@pytest.fixture(scope="module")
def raw():
    server = RawServer()
    yield server
    server.close()


def run(coro):
    return asyncio.run(coro)


def test_post_returns_status_and_body_over_one_kept_alive_connection(raw):
    async def go():
        async with FastClient(raw.url("/ok"), connections=1) as client:
            return [await client.post(b'{"n": %d}' % i) for i in range(20)]

    before = raw.connections
    answers = run(go())
    assert [s for s, _ in answers] == [200] * 20
    assert [json.loads(b)["echo"] for _, b in answers] == [f'{{"n": {i}}}' for i in range(20)]
    assert raw.connections - before == 1  # kept alive: 20 requests, one connection


def test_concurrent_callers_share_at_most_the_connection_limit(raw):
    async def go():
        async with FastClient(raw.url("/slow"), connections=3) as client:
            return await asyncio.gather(*(client.post(b"%d" % i) for i in range(6)))

    before = raw.connections
    answers = run(go())
    assert sorted(json.loads(b)["echo"] for _, b in answers) == [str(i) for i in range(6)]
    assert raw.connections - before == 3


def test_chunked_answer_and_status_other_than_200(raw):
    async def go():
        async with FastClient(raw.url("/chunked")) as chunked, FastClient(raw.url("/busy")) as busy:
            return await chunked.post(b"abc"), await busy.post(b"x")

    (s1, b1), (s2, b2) = run(go())
    assert (s1, json.loads(b1)["echo"]) == (200, "abc")
    assert (s2, json.loads(b2)["path"]) == (429, "/busy")


def test_connection_close_answer_is_read_whole_and_the_next_request_reconnects(raw):
    async def go():
        async with FastClient(raw.url("/close"), connections=1) as client:
            return [await client.post(b"%d" % i) for i in range(3)]

    before = raw.connections
    assert [json.loads(b)["echo"] for _, b in run(go())] == ["0", "1", "2"]
    assert raw.connections - before == 3


def test_server_that_drops_or_babbles_raises_connection_error(raw):
    async def go(path):
        async with FastClient(raw.url(path)) as client:
            return await client.post(b"x")

    for path in ("/drop", "/garbage"):
        with pytest.raises(ConnectionError):
            run(go(path))


def test_refused_connection_raises():
    async def go():
        async with FastClient("http://127.0.0.1:9/predict") as client:  # port 9 (discard): nothing listens
            return await client.post(b"x")

    with pytest.raises(OSError):
        run(go())


def test_a_cancelled_request_never_hands_its_late_answer_to_the_next_one(raw):
    async def go():
        async with FastClient(raw.url("/slow"), connections=1) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await client.post(b"first")
            return await client.post(b"second")

    status, body = run(go())
    assert (status, json.loads(body)["echo"]) == (200, "second")


def test_idle_connection_closed_by_the_server_is_retried_once_on_a_new_one(raw):
    async def go():
        async with FastClient(raw.url("/ok"), connections=1) as client:
            await client.post(b"a")
            conn = client._idle[0]
            conn.transport.abort()  # as if the server's keep-alive timeout had fired ...
            conn.closed = False     # ... and the client had not noticed yet
            return await client.post(b"b")

    status, body = run(go())
    assert (status, json.loads(body)["echo"]) == (200, "b")


@pytest.mark.parametrize("url", ["https://x/predict", "ftp://x", "no-scheme"])
def test_rejects_what_it_does_not_speak(url):
    with pytest.raises(ValueError, match="http://"):
        FastClient(url)


def test_same_answers_as_aiohttp_on_a_real_app():
    """The oracle: aiohttp and FastClient read the same statuses and bodies from a Starlette app on uvicorn."""
    import aiohttp
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def echo(request):
        data = await request.json()
        return JSONResponse({"got": data}, status_code=data.get("status", 200))

    async def stream(request):
        await request.body()
        return StreamingResponse(iter([b"part1-", b"part2-" * 1000, b"end"]), media_type="text/plain")

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    bodies = [json.dumps({"i": i, "status": s}).encode() for i, s in enumerate((200, 201, 400, 429, 503))]

    async def both(path):
        url = f"http://127.0.0.1:{port}{path}"
        async with FastClient(url) as fast, aiohttp.ClientSession() as session:
            ours = [await fast.post(b) for b in bodies]
            theirs = []
            for b in bodies:
                async with session.post(url, data=b, headers={"Content-Type": "application/json"}) as resp:
                    theirs.append((resp.status, await resp.read()))
            return ours, theirs

    try:
        for path in ("/echo", "/stream"):
            ours, theirs = run(both(path))
            assert ours == theirs
    finally:
        server.should_exit = True
        thread.join(10)
