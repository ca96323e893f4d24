"""Shared pytest fixtures: imports of the collection and throwaway MariaDB servers.

Three servers play the source environment, the target environment and the
migration database; they start once per test session and stop when it ends,
also when the run is interrupted (see tools/mariadb_servers.py).
"""

import itertools
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")
for path in (ROOT, COLLECTIONS):
    if path not in sys.path:
        sys.path.insert(0, path)

from tools.mariadb_servers import ServerSet  # noqa: E402

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def servers():
    """The session's three servers: ``servers['source']``, ``['target']``, ``['migration']``."""
    server_set = ServerSet(("source", "target", "migration"))
    server_set.start()
    try:
        yield server_set
    finally:
        server_set.stop()


@pytest.fixture(scope="module")
def outage_servers():
    """Three servers of the test module's own (source, target, migration), for tests that stop, start or freeze
    them: the session's servers stay up for everyone else."""
    with ServerSet(("source", "target", "migration")) as server_set:
        yield server_set


@pytest.fixture
def fresh_db(servers, request):
    """Factory: ``fresh_db('source')`` creates an empty, uniquely named database and returns its name.

    The databases are dropped when the test ends.
    """
    created = []

    def make(server_name, prefix="t"):
        name = "%s_%d_%d" % (prefix, os.getpid(), next(_counter))
        with servers[server_name].connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
        created.append((server_name, name))
        return name

    yield make
    for server_name, name in created:
        server = servers.servers.get(server_name)
        if server is not None and server.is_running():
            with server.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS `%s`" % name)
