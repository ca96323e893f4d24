"""Fixtures of the state store's tests: a pinned clock, a store on either backend, a live process.

``store`` runs each test twice: on the files backend (a temporary directory) and on the database backend
(tables in a fresh database of a real MariaDB server).  A test of the files layout itself (paths, .bak,
index.json) is marked ``files_layout`` and runs on files only.
"""

import os
import subprocess

import pytest
from state_helpers import Clock

from ansible_collections.wfu.multisite.plugins.module_utils.state_store import StateStore

BACKENDS = ("files", "database")


def pytest_configure(config):
    config.addinivalue_line("markers", "files_layout: the test checks the files backend's layout; files only")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def state_db_factory(request):
    """``make()``: the connection mapping of a fresh database for the database backend (a real server)."""
    def make():
        servers = request.getfixturevalue("servers")
        name = request.getfixturevalue("fresh_db")("migration", prefix="st")
        return dict(servers["migration"].connection(), database=name)
    return make


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "database" and request.node.get_closest_marker("files_layout"):
        pytest.skip("checks the files backend's layout")
    return request.param


@pytest.fixture
def make_store(backend, tmp_path, clock, state_db_factory):
    """``make(holder_pid=…, **kwargs)``: another store on the same backend and the same state (files dir or db)."""
    shared = {}

    def make(holder_pid=None, **kwargs):
        kwargs.setdefault("clock", clock)
        if backend == "files":
            return StateStore(str(tmp_path / "migrations"), holder_pid=holder_pid or os.getpid(), **kwargs)
        from ansible_collections.wfu.multisite.plugins.module_utils.state_db import DatabaseStateStore
        if "db" not in shared:
            shared["db"] = state_db_factory()
        made = DatabaseStateStore(shared["db"], holder_pid=holder_pid or os.getpid(), **kwargs)
        shared.setdefault("stores", []).append(made)
        return made

    yield make
    for made in shared.get("stores", []):
        made.close()


@pytest.fixture
def store(make_store):
    """A store whose run is this test process, on the test's backend."""
    return make_store()


@pytest.fixture
def sleeper():
    """A live process to stand for another run's ansible-playbook."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()
