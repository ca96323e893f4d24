# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration state in database tables (``wfu_state_backend: database``), with locks and site claims that
hold across processes, containers and hosts.

Tables (in the state database: ``wfu_state_db``, else the migration database); the ``wfu_state_`` prefix is
one the sweeps of ``cleanup`` never touch (``tables.STATE_MARK``)::

    wfu_state_meta          schema_version and owner of these tables (a foreign or newer schema is refused)
    wfu_state_migrations    one row per migration: the index columns, the whole state, the options
    wfu_state_logs          the per-site, network and rollback log lines
    wfu_state_runs          the live runs: each has a keeper process holding GET_LOCK(<lock_name>) and a lease
    wfu_state_locks         the run locks (one per target environment or migration database)
    wfu_state_claims        the site claims (one per migration and site)

Every write is one transaction.  A run is known by its *token* (a hash of its identity).  The first lock or
claim a run takes starts its *keeper*: a small process that holds one connection with a server-side
``GET_LOCK()`` named after the token, renews the run's lease (``expires``) every second, and ends when the
run's ansible-playbook process ends (it is also in that process's group, so a kill of the group ends it
too).  A lock or claim is alive while its run's server lock is held *and* its lease has not expired (the
lease covers a container that vanished before the server noticed its connection was gone).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time

from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import StateError
from ansible_collections.wfu.multisite.plugins.module_utils.db import Database, qualified
from ansible_collections.wfu.multisite.plugins.module_utils.errors import redact
from ansible_collections.wfu.multisite.plugins.module_utils.processes import ALIVE, DEAD, identity_is_alive
from ansible_collections.wfu.multisite.plugins.module_utils.run_lock import (
    FORCE_UNLOCK_COMMAND, SELF, describe_holder, describe_lock, run_identity)
from ansible_collections.wfu.multisite.plugins.module_utils.state_records import check_env_name, format_time
from ansible_collections.wfu.multisite.plugins.module_utils.state_report import count_sites, outcome_lists
from ansible_collections.wfu.multisite.plugins.module_utils.state_store import MIGRATION_ID_RE, StateStore, claim_result

# The version of the tables' layout (not of the state inside them: that is state_records.SCHEMA_VERSION).
DB_SCHEMA_VERSION = 1
OWNER = "wfu.multisite"
META = "wfu_state_meta"
MIGRATIONS = "wfu_state_migrations"
LOGS = "wfu_state_logs"
RUNS = "wfu_state_runs"
LOCKS = "wfu_state_locks"
CLAIMS = "wfu_state_claims"
TABLES = (META, MIGRATIONS, LOGS, RUNS, LOCKS, CLAIMS)
DEFAULT_LEASE_SECONDS = 30
KEEPER_INTERVAL = 1.0
KEEPER_START_TIMEOUT = 30

_ID = "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
_DDL = {
    META: "(name VARCHAR(64) NOT NULL PRIMARY KEY, value VARCHAR(255) NOT NULL)",
    MIGRATIONS: "(id %s NOT NULL PRIMARY KEY, source_env VARCHAR(64), target_env VARCHAR(64), status VARCHAR(16), "
                "started VARCHAR(32), updated VARCHAR(32), state LONGTEXT NOT NULL, options LONGTEXT NOT NULL)" % _ID,
    LOGS: "(seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, migration_id %s NOT NULL, name VARCHAR(64) NOT NULL, "
          "line TEXT NOT NULL, KEY by_log (migration_id, name, seq))" % _ID,
    RUNS: "(token CHAR(40) NOT NULL PRIMARY KEY, lock_name VARCHAR(64) NOT NULL, connection_id BIGINT NOT NULL, "
          "holder TEXT NOT NULL, heartbeat DATETIME(6) NOT NULL, expires DATETIME(6) NOT NULL)",
    LOCKS: "(name VARCHAR(64) NOT NULL PRIMARY KEY, token CHAR(40) NOT NULL, holder TEXT NOT NULL, "
           "migration_id %s, started VARCHAR(32))" % _ID,
    CLAIMS: "(migration_id %s NOT NULL, site_id INT NOT NULL, token CHAR(40) NOT NULL, holder TEXT NOT NULL, "
            "started VARCHAR(32), PRIMARY KEY (migration_id, site_id))" % _ID,
}


def run_token(identity):
    """The token of a run: a hash of its process identity and AWX job (not its workflow job: slices differ)."""
    keys = ("pid", "host", "start_time", "boot_id", "pid_namespace", "awx_job_id")
    return hashlib.sha1(json.dumps([identity.get(key) for key in keys]).encode("utf-8")).hexdigest()


def server_lock_name(token):
    return "wfu_state_run_" + token


class StateDatabase:
    """One connection to the state database, transactions, the schema check and the runs' liveness."""

    def __init__(self, database, lease_seconds=DEFAULT_LEASE_SECONDS):
        if not database.database:
            raise StateError("the state database needs a database name (wfu_state_db.database, or "
                             "wfu_migration_db.database)")
        self.database = database
        self.lease_seconds = int(lease_seconds or DEFAULT_LEASE_SECONDS)
        self._conn = None
        self._depth = 0
        self._schema = None  # True: the tables exist and are ours; False: none exist yet

    def where(self):
        return "database %s on %s" % (self.database.database, self.database.server())

    def table(self, name):
        return qualified(self.database.database, name)

    def conn(self):
        if self._conn is None:
            self._conn = self.database.connect(timeout=60)
            with self._conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return self._conn

    def close(self):
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def transaction(self):
        """One transaction (nested calls join the outer one): committed at the end, rolled back on any error."""
        conn = self.conn()
        if self._depth == 0:
            conn.begin()
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise
        self._depth -= 1
        if self._depth == 0:
            conn.commit()

    def rows(self, sql, args=None):
        with self.conn().cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def execute(self, sql, args=None):
        with self.conn().cursor() as cur:
            return cur.execute(sql, args)

    # -- the schema -------------------------------------------------------------------------------------------------

    def ready(self, create):
        """True when the tables exist and are ours (created first when ``create``); False when there are none yet.

        A foreign or newer layout raises StateError naming the database and the table; nothing is changed.
        """
        if self._schema:
            return True
        if self._schema is False and not create:
            return False
        present = self._present()
        if not present and not create:
            self._schema = False
            return False
        if not present or set(TABLES) - set(present):
            lock = "wfu_state_schema_%s" % hashlib.sha1(self.database.database.encode()).hexdigest()[:32]
            got = self.rows("SELECT GET_LOCK(%s, 30)", (lock,))[0][0]
            try:
                self._check_meta(self._present())
                self._create()
            finally:
                if got:
                    self.rows("SELECT RELEASE_LOCK(%s)", (lock,))
        else:
            self._check_meta(present)
        self._schema = True
        return True

    def _present(self):
        return [row[0] for row in self.rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name LIKE %s",
            (self.database.database, "wfu\\_state\\_%"))]

    def _check_meta(self, present):
        if not present:
            return
        advice = ("Nothing was changed. Point wfu_state_db at a database of its own, or move these tables away if "
                  "they do not belong there.")
        if META not in present:
            if set(present) & set(TABLES):
                raise StateError("%s has tables %s but no %s: they were not written by this collection's state "
                                 "backend. %s" % (self.where(), ", ".join(sorted(present)), META, advice))
            return
        meta = dict(self.rows("SELECT name, value FROM %s" % self.table(META)))
        if meta.get("owner") != OWNER or not str(meta.get("schema_version", "")).isdigit():
            raise StateError("%s.%s (%s) does not describe wfu.multisite state tables (owner %r, schema_version %r). "
                             "%s" % (self.database.database, META, self.where(), meta.get("owner"),
                                     meta.get("schema_version"), advice))
        version = int(meta["schema_version"])
        if version > DB_SCHEMA_VERSION:
            raise StateError("the state tables in %s were written by a newer wfu.multisite (%s.%s says "
                             "schema_version %d; this one reads up to %d). Nothing was changed; upgrade the "
                             "collection on this controller to use them." % (
                                 self.where(), self.database.database, META, version, DB_SCHEMA_VERSION))

    def _create(self):
        for name in TABLES:
            self.execute("CREATE TABLE IF NOT EXISTS %s %s ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                         % (self.table(name), _DDL[name]))
        self.execute("INSERT IGNORE INTO %s (name, value) VALUES ('owner', %%s), ('schema_version', %%s)"
                     % self.table(META), (OWNER, str(DB_SCHEMA_VERSION)))
        self.conn().commit()

    # -- runs -------------------------------------------------------------------------------------------------------

    def run_liveness(self, token):
        """``alive`` while the run's keeper holds its server lock and its lease runs, else ``dead``; and why."""
        found = self.rows("SELECT connection_id, expires > NOW(6), IS_USED_LOCK(lock_name), expires FROM %s "
                          "WHERE token = %%s" % self.table(RUNS), (token,))
        if not found:
            return None, "no keeper is registered for its run"
        connection_id, fresh, used, expires = found[0]
        if used is None or int(used) != int(connection_id):
            return DEAD, "its keeper's connection is gone"
        if not fresh:
            return DEAD, "its lease expired at %s UTC (its container or host vanished)" % expires
        return ALIVE, "its keeper (connection %s) holds the server lock and renews the lease" % connection_id

    def ensure_keeper(self, token, holder, watch):
        """Start the run's keeper unless it runs already; returns its connection id."""
        if self.run_liveness(token)[0] == ALIVE:
            return None
        config = {"db": dict(host=self.database.host, port=self.database.port, user=self.database.user,
                             socket=self.database.socket, database=self.database.database,
                             ssl=[list(pair) for pair in self.database.ssl], password=self.database.password),
                  "token": token, "holder": holder, "watch": watch, "lease": self.lease_seconds,
                  "interval": KEEPER_INTERVAL}
        # The directory that holds ansible_collections/ (a zip in a module's payload): Ansible's controller finds
        # collections without sys.path, the keeper needs it there.
        root = __file__
        for _level in range(6):
            root = os.path.dirname(root)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [path for path in sys.path if path]))
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-c", "from ansible_collections.wfu.multisite.plugins.module_utils.state_db import "
             "keeper_main; keeper_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)
        try:
            proc.stdin.write(json.dumps(config).encode("utf-8"))
            proc.stdin.close()
            ready, _w, _x = select.select([proc.stdout], [], [], KEEPER_START_TIMEOUT)
            answer = proc.stdout.readline().decode("utf-8", "replace").strip() if ready else ""
        finally:
            proc.stdout.close()
        if answer.startswith("ok"):
            return int(answer.split()[1])
        if answer == "busy":
            return None  # another task of this run started it a moment ago
        with contextlib.suppress(OSError):
            proc.kill()
        raise StateError("could not start the keeper of this run's locks on %s: %s" % (
            self.where(), redact(answer[6:] if answer.startswith("error") else "no answer in %d s"
                                 % KEEPER_START_TIMEOUT, (self.database.password,))))


def keeper_main():
    """The keeper process: hold this run's server lock and lease until its ansible-playbook process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = json.loads(sys.stdin.read())
    out = sys.stdout
    settings = dict(config["db"])
    settings["ssl"] = tuple(tuple(pair) for pair in settings.get("ssl") or ())
    database = Database(role="state", **settings)
    token, lease = config["token"], int(config["lease"])
    runs = qualified(database.database, RUNS)
    try:
        conn = database.connect(timeout=60)
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", (server_lock_name(token),))
            got, connection_id = cur.fetchone()
            if got != 1:
                out.write("busy\n")
                out.close()
                return
            cur.execute("REPLACE INTO %s (token, lock_name, connection_id, holder, heartbeat, expires) VALUES "
                        "(%%s, %%s, %%s, %%s, NOW(6), NOW(6) + INTERVAL %d SECOND)" % (runs, lease),
                        (token, server_lock_name(token), connection_id,
                         json.dumps(dict(config["holder"], keeper_pid=os.getpid()))))
    except Exception as exc:  # pylint: disable=broad-except
        out.write("error %s\n" % redact(str(exc), (database.password,)).replace("\n", " "))
        out.close()
        return
    out.write("ok %d\n" % connection_id)
    out.close()
    watch = config["watch"]
    try:
        while identity_is_alive(watch) != DEAD:
            time.sleep(float(config["interval"]))
            with conn.cursor() as cur:
                renewed = cur.execute("UPDATE %s SET heartbeat = NOW(6), expires = NOW(6) + INTERVAL %d SECOND "
                                      "WHERE token = %%s AND connection_id = %%s" % (runs, lease),
                                      (token, connection_id))
            if not renewed:
                break  # taken over: this run was declared gone
        with conn.cursor() as cur:
            cur.execute("DELETE FROM %s WHERE token = %%s AND connection_id = %%s" % runs, (token, connection_id))
    except Exception:  # pylint: disable=broad-except
        pass  # the connection is gone: the server has released the lock with it
    finally:
        with contextlib.suppress(Exception):
            conn.close()


class DatabaseStateStore(StateStore):
    """The state store with its state, options, index, logs, locks and claims in the state database."""

    def __init__(self, database, holder_pid=None, clock=None, awx_job_id=None, awx_workflow_job_id=None,
                 lease_seconds=DEFAULT_LEASE_SECONDS, state_dir="~/.wfuwp/migrations"):
        kwargs = {} if clock is None else {"clock": clock}
        super().__init__(state_dir, holder_pid=holder_pid, awx_job_id=awx_job_id,
                         awx_workflow_job_id=awx_workflow_job_id, **kwargs)
        self.db = StateDatabase(database if isinstance(database, Database)
                                else Database.from_params(database, role="state"), lease_seconds)
        self.locks = DatabaseRunLocks(self.db, self.me, self.clock, self.warnings, self._watch)

    def me(self):
        if self._me is None:
            identity = run_identity(*self._identity_args)
            self._me = dict(identity, run_token=run_token(identity))
        return self._me

    def _watch(self):
        return {key: value for key, value in self.me().items() if key != "run_token"}

    def close(self):
        self.db.close()

    # -- where things are -------------------------------------------------------------------------------------------

    def location(self):
        return self.db.where()

    def migration_dir(self, migration_id):
        if not isinstance(migration_id, str) or not MIGRATION_ID_RE.match(migration_id):
            raise StateError("invalid migration id %r" % (migration_id,))
        return None

    def paths(self, migration_id):
        self.migration_dir(migration_id)
        name = self.db.database.database
        return {"database": self.db.where(), "state": "%s.%s id %s" % (name, MIGRATIONS, migration_id),
                "logs": "%s.%s" % (name, LOGS), "index": "%s.%s" % (name, MIGRATIONS)}

    def log_location(self, migration_id, name):
        return "%s.%s (migration %s, log %s)" % (self.db.database.database, LOGS, migration_id, name)

    def read_log(self, migration_id, name):
        """The lines of one log, oldest first, as one text."""
        if not self.db.ready(create=False):
            return ""
        return "".join(row[0] for row in self.db.rows(
            "SELECT line FROM %s WHERE migration_id = %%s AND name = %%s ORDER BY seq" % self.db.table(LOGS),
            (migration_id, name)))

    # -- reading and writing ----------------------------------------------------------------------------------------

    def load_state(self, migration_id):
        self.migration_dir(migration_id)
        found = []
        if self.db.ready(create=False):
            lock = " FOR UPDATE" if self.db._depth else ""
            found = self.db.rows("SELECT state FROM %s WHERE id = %%s%s" % (self.db.table(MIGRATIONS), lock),
                                 (migration_id,))
        if not found:
            raise self._unknown_migration(migration_id)
        where = "%s.%s row %s (%s)" % (self.db.database.database, MIGRATIONS, migration_id, self.db.where())
        try:
            state = json.loads(found[0][0])
        except ValueError as exc:
            raise StateError("%s is not valid JSON (%s). Nothing was changed; repair the row by hand or start a new "
                             "migration." % (where, exc)) from None
        return self._checked_state(state, where, migration_id, lambda _where: "Nothing was changed.")

    def save_state(self, state, outcomes_changed=False, logs=()):
        del outcomes_changed  # completed/failed are derived when read
        state["updated"] = self.now()
        state["counters"] = count_sites(state)
        with self.db.transaction():
            self.db.ready(create=True)
            self.db.execute("UPDATE %s SET source_env = %%s, target_env = %%s, status = %%s, started = %%s, "
                            "updated = %%s, state = %%s WHERE id = %%s" % self.db.table(MIGRATIONS),
                            (state["source_env"], state["target_env"], state["status"], state["started"],
                             state["updated"], json.dumps(state), state["id"]))
            self._append_logs(state["id"], logs)

    def _append_logs(self, migration_id, logs):
        for name, line in logs:
            self.db.execute("INSERT INTO %s (migration_id, name, line) VALUES (%%s, %%s, %%s)"
                            % self.db.table(LOGS), (migration_id, name, line))

    def _store_new(self, state, base_id):
        number = 1
        with self.db.transaction():
            self.db.ready(create=True)
            taken = {row[0] for row in self.db.rows("SELECT id FROM %s WHERE id LIKE %%s" % self.db.table(MIGRATIONS),
                                                    (base_id.replace("_", "\\_") + "%",))}
            while True:
                candidate = base_id if number == 1 else "%s-%d" % (base_id, number)
                if candidate not in taken:
                    state["id"] = candidate
                    inserted = self.db.execute(
                        "INSERT IGNORE INTO %s (id, source_env, target_env, status, started, updated, state, options) "
                        "VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s)" % self.db.table(MIGRATIONS),
                        (candidate, state["source_env"], state["target_env"], state["status"], state["started"],
                         state["updated"], json.dumps(state), json.dumps(state["options"])))
                    if inserted:
                        return
                number += 1

    def _free_id(self, base_id):
        taken = set()
        if self.db.ready(create=False):
            taken = {row[0] for row in self.db.rows("SELECT id FROM %s WHERE id LIKE %%s" % self.db.table(MIGRATIONS),
                                                    (base_id.replace("_", "\\_") + "%",))}
        candidate, number = base_id, 1
        while candidate in taken:
            number += 1
            candidate = "%s-%d" % (base_id, number)
        return candidate

    def _write_options(self, migration_id, options):
        self.db.execute("UPDATE %s SET options = %%s WHERE id = %%s" % self.db.table(MIGRATIONS),
                        (json.dumps(options), migration_id))

    def _tidy(self, migration_id):
        del migration_id  # a transaction leaves nothing half-written

    def _entries(self):
        if not self.db.ready(create=False):
            return []
        rows = self.db.rows("SELECT id, source_env, target_env, status, started, updated FROM %s ORDER BY started, id"
                            % self.db.table(MIGRATIONS))
        keys = ("id", "source_env", "target_env", "status", "started", "updated")
        return [dict(zip(keys, row)) for row in rows]

    def _update_index(self, state):
        del state  # the index is the row's columns, written with the state

    def options_of(self, migration_id):
        found = self.db.rows("SELECT options FROM %s WHERE id = %%s" % self.db.table(MIGRATIONS), (migration_id,))
        return json.loads(found[0][0]) if found else None

    def outcomes(self, migration_id):
        """completed.json and failed.json of the files backend, derived from the state."""
        return outcome_lists(self.load_state(migration_id))

    def _holder_view(self, state):
        holder = state.get("holder")
        if not isinstance(holder, dict):
            return None
        return dict(holder, liveness=self.locks.liveness_of(holder))

    # -- one transaction per action ---------------------------------------------------------------------------------

    def create(self, *args, **kwargs):
        with self.db.transaction():
            return super().create(*args, **kwargs)

    def load(self, *args, **kwargs):
        with self.db.transaction():
            return super().load(*args, **kwargs)

    def mark_site(self, *args, **kwargs):
        with self.db.transaction():
            return super().mark_site(*args, **kwargs)

    def mark_network(self, *args, **kwargs):
        with self.db.transaction():
            return super().mark_network(*args, **kwargs)

    def record_rollback(self, *args, **kwargs):
        with self.db.transaction():
            return super().record_rollback(*args, **kwargs)

    def finish(self, *args, **kwargs):
        with self.db.transaction():
            return super().finish(*args, **kwargs)

    def writing(self, migration_id):
        """One transaction: the state row is read FOR UPDATE in it, so workers of a run write one after the other."""
        self.migration_dir(migration_id)
        return self.db.transaction()

    def _checker_alive(self, holder):
        return self.locks.liveness_of(holder) in (ALIVE, SELF)

    def _take_claim(self, migration_id, site_id, force, check_mode):
        return self.locks.claim(migration_id, site_id, force=force, check_mode=check_mode)

    def _release_claim(self, migration_id, site_id, force, check_mode):
        return self.locks.release(migration_id, site_id, force=force, check_mode=check_mode)

    def claims_view(self, migration_id):
        return self.locks.claims(migration_id)

    def live_workers(self, migration_id):
        """The claims of other live runs, and the other live jobs that share the migration's run lock (slices)."""
        busy = super().live_workers(migration_id)
        target_env = self.load_state(migration_id)["target_env"]
        for holder in self.locks.live_sharers(target_env, migration_id):
            busy.append("%s, which shares the run lock of %s, still runs" % (describe_holder(holder), target_env))
        return busy

    def check_reachable(self):
        """validate: the state database answers and its tables (if any) are ours."""
        self.db.ready(create=False)


class DatabaseRunLocks:
    """Run locks and site claims as rows, alive while their run's keeper is (see the module docstring)."""

    def __init__(self, db, me, clock, warnings, watch):
        self.db = db
        self.me = me
        self.clock = clock
        self.warnings = warnings
        self._watch = watch

    def path(self, name):
        return "%s.%s name %s" % (self.db.database.database, LOCKS, check_env_name(name, "lock name (target_env)"))

    def liveness_of(self, holder):
        """``self`` (this run; for a run lock also a slice of this run's AWX workflow job), ``alive`` or ``dead``."""
        token = holder.get("run_token")
        if token == self.me()["run_token"]:
            return SELF
        verdict = self.db.run_liveness(token)[0] if token and self.db.ready(create=False) else None
        # A run that never took a lock or claim has no keeper: judge its process, as the files backend does.
        return identity_is_alive(holder) if verdict is None else verdict

    def _judge(self, row_holder, share_workflow):
        """(liveness, the holder to name) of a row.

        A run lock (``share_workflow``) is shared by the jobs of one AWX workflow job (the slices of a sliced job):
        the first takes the row, the others are listed in it as ``sharers``.  It is alive while any of them lives,
        and named after one that does, though the job that wrote the row is gone.
        """
        verdict = self.liveness_of(row_holder)
        shown = row_holder
        if share_workflow and verdict == DEAD:
            for sharer in row_holder.get("sharers") or ():
                sharer_verdict = self.liveness_of(sharer)
                if sharer_verdict != DEAD:
                    verdict = sharer_verdict
                    shown = dict(row_holder, **{key: value for key, value in sharer.items() if key != "started"})
                    break
        mine = self.me().get("awx_workflow_job_id")
        if share_workflow and verdict == ALIVE and mine and row_holder.get("awx_workflow_job_id") == mine:
            return SELF, shown
        return verdict, shown

    def _share(self, name):
        """List this run among the sharers of run lock ``name`` (held by another job of its AWX workflow job)."""
        found = self.db.rows("SELECT token, holder FROM %s WHERE name = %%s FOR UPDATE" % self.db.table(LOCKS), (name,))
        me = self.me()
        if not found or found[0][0] == me["run_token"]:
            return
        holder = json.loads(found[0][1])
        sharers = [sharer for sharer in holder.get("sharers") or () if sharer.get("run_token") != me["run_token"]]
        # The dead ones are left out: the list only grows with the jobs of the workflow that are alive.
        sharers = [sharer for sharer in sharers if self.liveness_of(sharer) != DEAD]
        holder["sharers"] = sharers + [dict(me, started=format_time(self.clock()))]
        self.db.execute("UPDATE %s SET holder = %%s WHERE name = %%s" % self.db.table(LOCKS), (json.dumps(holder), name))

    def live_sharers(self, name, migration_id):
        """The jobs other than this one that hold run lock ``name`` for ``migration_id`` and still run."""
        lock = self.read(name)
        if lock is None or lock.get("migration_id") not in (None, migration_id):
            return []
        me = self.me()["run_token"]
        return [holder for holder in [lock] + list(lock.get("sharers") or ())
                if holder.get("run_token") != me and self.liveness_of(holder) == ALIVE]

    def _start_keeper(self):
        self.db.ready(create=True)
        self.db.ensure_keeper(self.me()["run_token"], self.me(), self._watch())

    def read(self, name):
        if not self.db.ready(create=False):
            return None
        found = self.db.rows("SELECT holder, migration_id FROM %s WHERE name = %%s" % self.db.table(LOCKS), (name,))
        if not found:
            return None
        return dict(json.loads(found[0][0]), migration_id=found[0][1], target_env=name)

    def view(self, name):
        lock = self.read(name)
        if lock is None:
            return None
        verdict, shown = self._judge(lock, True)
        return dict(shown, liveness=verdict)

    def _take(self, table, where, key, row_holder, share_workflow, force, check_mode, describe):
        """Take the row ``key`` of ``table`` for this run; returns (outcome, previous row's holder with liveness).

        outcome: ``new``, ``held`` (already this run's), ``taken`` (over from a dead run, or forced) or
        ``refused``.  Exactly one of any number of concurrent takers gets ``new``: the row's primary key decides,
        and the others wait for its transaction, then find its row.
        """
        columns = ", ".join(list(where) + ["token", "holder", "started"])
        values = list(key) + [row_holder["run_token"], json.dumps(row_holder), row_holder.get("started")]
        condition = " AND ".join("%s = %%s" % column for column in where)
        if check_mode:
            found = self.db.rows("SELECT holder FROM %s WHERE %s" % (self.db.table(table), condition), key) \
                if self.db.ready(create=False) else []
        else:
            # ON DUPLICATE KEY locks an existing row exclusively at once (INSERT IGNORE would share-lock it, and
            # two takers upgrading their shared locks deadlock); rowcount 1 means this run inserted it.
            if self.db.execute("INSERT INTO %s (%s) VALUES (%s) ON DUPLICATE KEY UPDATE token = token" % (
                    self.db.table(table), columns, ", ".join(["%s"] * len(values))), values) == 1:
                return "new", None
            found = self.db.rows("SELECT holder FROM %s WHERE %s FOR UPDATE" % (self.db.table(table), condition), key)
        if not found:
            return "new", None
        verdict, current = self._judge(json.loads(found[0][0]), share_workflow)
        current = dict(current, liveness=verdict)
        if verdict == SELF:
            return "held", current
        if verdict != DEAD and not force:
            return "refused", current
        self.warnings.append("Took over %s of %s, whose run is %s.%s" % (
            describe, describe_holder(current), "gone" if verdict == DEAD else "still running",
            "" if verdict == DEAD else " It now runs beside this one."))
        if not check_mode:
            self.db.execute("UPDATE %s SET token = %%s, holder = %%s, started = %%s WHERE %s" % (
                self.db.table(table), condition), [row_holder["run_token"], json.dumps(row_holder),
                                                   row_holder.get("started")] + list(key))
        return "taken", current

    def lock(self, name, migration_id=None, force=False, check_mode=False):
        check_env_name(name, "lock name (target_env)")
        result = {"lock_name": name, "lock_file": self.path(name), "already_held": False,
                  "stale_lock_taken_over": False, "forced": False, "previous_holder": None}
        if not check_mode:
            self._start_keeper()
        holder = dict(self.me(), started=format_time(self.clock()))
        with self.db.transaction():
            previous_migration = (self.read(name) or {}).get("migration_id")
            outcome, current = self._take(LOCKS, ("name",), (name,), holder, True, force, check_mode,
                                          "lock '%s'" % name)
            if outcome == "refused":
                raise self._held_error(name, dict(self.read(name) or {}, **current))
            if outcome == "held":
                if not check_mode:
                    self._share(name)
                held = self.read(name) or {}
                result["already_held"] = True
                if migration_id and held.get("migration_id") != migration_id:
                    if not check_mode:
                        self._name(name, migration_id)
                    return dict(result, changed=True, lock=dict(held, migration_id=migration_id))
                return dict(result, changed=False, lock=held)
            if outcome == "taken":
                result.update(stale_lock_taken_over=True, forced=current["liveness"] != DEAD,
                              previous_holder=dict(current, migration_id=previous_migration))
            if not check_mode:
                self._name(name, migration_id)
            return dict(result, changed=True, lock=dict(holder, migration_id=migration_id, target_env=name))

    def _name(self, name, migration_id):
        self.db.execute("UPDATE %s SET migration_id = %%s WHERE name = %%s" % self.db.table(LOCKS),
                        (migration_id, name))

    def unlock(self, name, migration_id=None, force=False, check_mode=False):
        check_env_name(name, "lock name (target_env)")
        result = {"lock_name": name, "lock_file": self.path(name), "released": False, "forced": False,
                  "previous_holder": None}
        with self.db.transaction():
            current = self.view(name)
            if current is None:
                return dict(result, changed=False)
            verdict = current["liveness"]
            if verdict == SELF and migration_id and current.get("migration_id") not in (None, migration_id):
                if not force:
                    raise StateError("lock '%s' belongs to migration %s of this run, not to %s; it was left in place."
                                     % (name, current.get("migration_id"), migration_id), holder=current)
            elif verdict not in (SELF, DEAD) and not force:
                raise self._held_error(name, current, "remove it")
            forced = force and verdict not in (SELF, DEAD)
            if forced:
                self.warnings.append("Removed lock '%s' of %s, whose run is still running. If it still runs, it now "
                                     "runs beside this one." % (name, describe_lock(current)))
            if not check_mode:
                self.db.execute("DELETE FROM %s WHERE name = %%s" % self.db.table(LOCKS), (name,))
            return dict(result, changed=True, released=True, forced=forced, previous_holder=current)

    def name_migration(self, name, migration_id):
        lock = self.view(name)
        if lock is not None and lock.get("migration_id") is None and lock["liveness"] == SELF:
            self._name(name, migration_id)

    def release_for_finish(self, name, migration_id, check_mode=False):
        lock = self.view(name)
        if lock is None:
            return False
        ours = (lock["liveness"] == SELF and lock.get("migration_id") in (None, migration_id)) or (
            lock["liveness"] == DEAD and lock.get("migration_id") == migration_id)
        if ours and not check_mode:
            self.db.execute("DELETE FROM %s WHERE name = %%s" % self.db.table(LOCKS), (name,))
        return ours

    def refuse_if_held_by_another_run(self, name):
        lock = self.view(name)
        if lock is not None and lock["liveness"] == ALIVE:
            raise StateError("target environment %s is locked by %s, which is still running; wait for it to finish "
                             "or stop it before starting or resuming a migration into %s."
                             % (name, describe_lock(lock), name), holder=lock)

    def _held_error(self, name, current, verb="take it"):
        return StateError(
            "lock '%s' (target environment %s) is held by %s, which is still running: another run is migrating into "
            "%s. Nothing was changed. Wait for it to finish or stop it; its lock goes with it (no unlock is needed "
            "once it is gone). Only if that run must not go on, %s with force: true (or `%s`)."
            % (name, name, describe_lock(current), name, verb, FORCE_UNLOCK_COMMAND % name),
            holder=current, lock_file=self.path(name))

    # -- site claims ------------------------------------------------------------------------------------------------

    def claim(self, migration_id, site_id, force=False, check_mode=False):
        """Claim one site of a migration for this run: ``claimed`` says whether this run won."""
        if not check_mode:
            self._start_keeper()
        holder = dict(self.me(), started=format_time(self.clock()))
        with self.db.transaction():
            outcome, current = self._take(CLAIMS, ("migration_id", "site_id"), (migration_id, site_id), holder,
                                          False, force, check_mode, "the claim of site %d" % site_id)
        return claim_result(migration_id, site_id, outcome, current, holder)

    def release(self, migration_id, site_id, force=False, check_mode=False):
        """Release this run's claim of a site (a dead run's too; anyone's with ``force``)."""
        if not self.db.ready(create=False):
            return {"changed": False, "released": False, "site_id": site_id, "migration_id": migration_id}
        with self.db.transaction():
            found = self.db.rows("SELECT holder FROM %s WHERE migration_id = %%s AND site_id = %%s FOR UPDATE"
                                 % self.db.table(CLAIMS), (migration_id, site_id))
            if not found:
                return {"changed": False, "released": False, "site_id": site_id, "migration_id": migration_id}
            current = json.loads(found[0][0])
            verdict = self.liveness_of(current)
            current = dict(current, liveness=verdict)
            if verdict not in (SELF, DEAD) and not force:
                raise StateError("site %d of migration %s is claimed by %s, which is still running; its claim was "
                                 "left in place." % (site_id, migration_id, describe_holder(current)), holder=current)
            if not check_mode:
                self.db.execute("DELETE FROM %s WHERE migration_id = %%s AND site_id = %%s" % self.db.table(CLAIMS),
                                (migration_id, site_id))
        return {"changed": True, "released": True, "site_id": site_id, "migration_id": migration_id,
                "previous_holder": current}

    def claims(self, migration_id):
        """Every claim of a migration with its holder's liveness, by site id."""
        if not self.db.ready(create=False):
            return {}
        rows = self.db.rows("SELECT site_id, holder FROM %s WHERE migration_id = %%s ORDER BY site_id"
                            % self.db.table(CLAIMS), (migration_id,))
        out = {}
        for site_id, holder in rows:
            holder = json.loads(holder)
            out[str(site_id)] = dict(holder, liveness=self.liveness_of(holder))
        return out
