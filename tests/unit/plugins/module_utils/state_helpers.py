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


def is_database(store):
    return hasattr(store, "db")


def stored_state(store, migration_id):
    """The state as stored, read past the store's checks: state.json, or the row's JSON."""
    if is_database(store):
        from ansible_collections.wfu.multisite.plugins.module_utils.state_db import MIGRATIONS
        return json.loads(store.db.rows("SELECT state FROM %s WHERE id = %%s" % store.db.table(MIGRATIONS),
                                        (migration_id,))[0][0])
    return read(store.paths(migration_id)["state"])


def stored_options(store, migration_id):
    if is_database(store):
        return store.options_of(migration_id)
    return read(store.paths(migration_id)["options"])


def stored_outcomes(store, migration_id):
    """(completed, failed) as completed.json and failed.json hold them (derived from the row on the database)."""
    if is_database(store):
        return store.outcomes(migration_id)
    paths = store.paths(migration_id)
    return read(paths["completed"]), read(paths["failed"])


def log_text(store, migration_id, name):
    return store.read_log(migration_id, name)


def edit_state(store, migration_id, change):
    """Apply ``change(state)`` to the stored state by hand, as a person with an editor would (no .bak is made)."""
    state = stored_state(store, migration_id)
    change(state)
    if is_database(store):
        from ansible_collections.wfu.multisite.plugins.module_utils.state_db import MIGRATIONS
        store.db.execute("UPDATE %s SET state = %%s WHERE id = %%s" % store.db.table(MIGRATIONS),
                         (json.dumps(state), migration_id))
        store.db.conn().commit()
        return None
    path = store.paths(migration_id)["state"]
    write(path, state)
    return path


def snapshot_of(store):
    """What the store holds, to prove nothing was written: the files (bytes, mtime) or every row of its tables."""
    if not is_database(store):
        return snapshot(store.state_dir)
    from ansible_collections.wfu.multisite.plugins.module_utils.state_db import TABLES
    store.db.conn().commit()  # a fresh snapshot, not the one of an open transaction
    present = set(store.db._present())
    # The keepers renew their leases every second: a run's row counts, its heartbeat does not.
    columns = {"wfu_state_runs": "token, lock_name, connection_id, holder"}
    return {name: store.db.rows("SELECT %s FROM %s ORDER BY 1" % (columns.get(name, "*"), store.db.table(name)))
            for name in TABLES if name in present}
