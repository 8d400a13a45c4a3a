"""Fixtures shared by test modules."""
import os

import pytest


@pytest.fixture(scope="module")
def start_ray():
    """start(server) -> the started Ray server object (RayServe, TwoNodeServe), stopped after the module.
    Skips only when Ray itself cannot start on this machine (RayStartError: its raylet can time out waiting for
    its agents on an overloaded box) or LABKIT_SKIP_RAY=1; any failure of the app itself fails the test."""
    started = []

    def start(server):
        if os.environ.get("LABKIT_SKIP_RAY") == "1":
            pytest.skip("LABKIT_SKIP_RAY=1")
        from labkit.serve.ray_app import RayStartError

        try:
            server.start()
        except RayStartError as err:
            pytest.skip(str(err))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
