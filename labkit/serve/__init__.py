"""labkit.serve: the course's model server, its config, and a safe way to start it from Python.

Light on import (no torch, no web framework): `from labkit.serve import ServeConfig, ServerProcess`.
The server itself lives in labkit.serve.app (ASGI app), .protocol (request and answer), .batcher, .cache,
.workers, .engines (the forward), .preprocessing (per request) and .lifecycle (build, train, cache, load).
Taught in 09_async_serving.
"""
from labkit.serve.config import ServeConfig
from labkit.serve.process import ServerProcess, free_port

__all__ = ["ServeConfig", "ServerProcess", "free_port"]
