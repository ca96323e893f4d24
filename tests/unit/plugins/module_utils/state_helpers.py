"""Helpers shared by the state store's tests (test_state_*.py, test_processes.py); fixtures are in conftest.py."""

import datetime
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")


class Clock:
    """A settable UTC clock, so ids and durations are predictable."""

    def __init__(self, start="2026-11-24T02:52:55"):
        self.moment = datetime.datetime.fromisoformat(start).replace(tzinfo=datetime.timezone.utc)

    def __call__(self):
        return self.moment

    def advance(self, seconds):
        self.moment += datetime.timedelta(seconds=seconds)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)


def snapshot(directory):
    """Every file under ``directory`` with its bytes and mtime, to prove nothing was written."""
    files = {}
    for base, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                files[path] = (handle.read(), os.stat(path).st_mtime_ns)
    return files


def new_migration(store, sites=(1, 2, 3, 4, 5), **kwargs):
    return store.create("dev", "uat", sites=list(sites), **kwargs)["migration"]["id"]


def write_lock(store, name, **fields):
    path = store.locks.path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write(path, fields)


def edit_state(store, migration_id, change):
    """Apply ``change(state)`` to state.json by hand, as a person with an editor would (no .bak is made)."""
    path = store.paths(migration_id)["state"]
    state = read(path)
    change(state)
    write(path, state)
    return path
