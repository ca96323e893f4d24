"""Fixtures of the state store's tests: a pinned clock, a store in a temporary directory, a live process."""

import os
import subprocess

import pytest
from state_helpers import Clock

from ansible_collections.wfu.multisite.plugins.module_utils.state_store import StateStore


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    """A store whose run is this test process."""
    return StateStore(str(tmp_path / "migrations"), holder_pid=os.getpid(), clock=clock)


@pytest.fixture
def sleeper():
    """A live process to stand for another run's ansible-playbook."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()
