# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-site and network pipelines: lock → copy → search-replace → stage → verify → swap → clean.

The target is never half-written: transformed tables arrive in the target under
staging names, are verified there, and replace the live tables in one
``RENAME TABLE`` statement that also moves the live tables aside as the backup.
The backup is dropped only after the new tables are verified in place; if that
check fails the same statement runs backwards.  Whatever a call created in the
migration database or the target is dropped when it fails.

One writer per site: the call holds the site's server-side lock (server_locks.py)
on the target's server and on the migration database's server from before its
first write to the end.  Every wait is bounded by the call's ``Deadline``; the
cleanup after a failure uses short timeouts of its own and leaves alone a server
that did not answer.
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import secrets
import threading
import time

from ansible_collections.wfu.multisite.plugins.module_utils import content_policy, rollback
from ansible_collections.wfu.multisite.plugins.module_utils import server_locks
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import choose_method, copy_tables, dump_to_file
from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    ConfigError, Database, qualified, quote_identifier)
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    SERVER_NOT_ANSWERING, TIMEOUT, MigrationError)
from ansible_collections.wfu.multisite.plugins.module_utils.replace_rules import (
    Environment, Network, derive_rules, map_site_address, site_url)
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import HostPair
from ansible_collections.wfu.multisite.plugins.module_utils.sites import read_blogs
from ansible_collections.wfu.multisite.plugins.module_utils.table_replace import replace_in_tables

# What to do with a site's tables that only the target has (``target_only_tables``).
KEEP = "keep"
MOVE_ASIDE = "move_aside"
TARGET_ONLY_RULES = (KEEP, MOVE_ASIDE)
# Seconds the server-side lock of a site is waited for when the caller does not say.
LOCK_WAIT = 60
# Bounds of the cleanup after a failure: it must not hang on a server that stopped answering.
CLEANUP_CONNECT_TIMEOUT = 5
CLEANUP_STATEMENT_TIMEOUT = 30
# Seconds the cleanup waits for a killed loader's session to end on its server, and for the site's lock.
CLEANUP_LOAD_WAIT = 10
CLEANUP_LOCK_WAIT = 5
# A site's small tables (most of them: a few KB to a few hundred KB each) go through the pipeline together: one
# dump into the migration database and one into the target for all of them, instead of one client pair per
# table, which costs more than their data.  A table above SMALL_TABLE_BYTES goes alone, its replace following its
# load; a batch holds at most BATCH_BYTES.
SMALL_TABLE_BYTES = 1 << 20
BATCH_BYTES = 8 << 20


class Endpoint:
    """One side of a migration: the database of an environment and its addressing settings."""

    def __init__(self, settings, role=None):
        settings = dict(settings or {})
        self.name = settings.pop("name", None) or "?"
        db = settings.get("db") or {}
        if not isinstance(db, dict) or not db:
            raise ConfigError("environment %s: db is missing (host/port/user/password/database or config_file)"
                              % self.name)
        self.db = Database.from_params(db, role=role, env=self.name)
        self.database = self.db.database
        if not self.database:
            raise ConfigError("environment %s: db.database is missing" % self.name)
        self.prefix = tbl.validate_prefix(settings.get("table_prefix") or "wp_")
        # As a target: the site options and network options whose values it keeps (content_policy.py).
        self.preserve_options, self.preserve_sitemeta = (
            content_policy.preserved_names(settings, key, "environment %s" % self.name)
            for key in content_policy.PRESERVE_KEYS)
        self.addressing = Environment.from_config(self.name, {k: v for k, v in settings.items() if v is not None})

    def playing(self, role):
        """This environment as the source or the target of a migration."""
        endpoint = copy.copy(self)
        endpoint.db = self.db.playing(role)
        return endpoint


def rules_for_display(rules):
    """The rules as data a person can read in a plan."""
    return [{"search": pair[0], "replace": pair[1], "whole_host": isinstance(pair, HostPair)} for pair in rules]


class PhaseTimer:
    """Records how long each phase took and which phase is running (for failure reports).

    Phases run one after the other, except the per-table steps (``step``: copy, replace, stage) that overlap in
    worker threads: their durations are the summed time of their steps (so they may add up to more than the
    wall time, which ``overlap`` holds), ``tables`` has them per table, and while any runs, ``current`` is the
    earliest of the running ones in pipeline order (the step the others wait for).
    """

    STEPS = ("copy", "replace", "stage")

    def __init__(self):
        self.durations = {}
        self.tables = {}
        self.overlap = None
        self._phase = None
        self._running = []
        self._lock = threading.Lock()

    @property
    def current(self):
        with self._lock:
            if self._running:
                return min(self._running, key=self.STEPS.index)
        return self._phase

    def set_phase(self, name):
        """Name the phase without timing it (what ``current`` says between overlapping steps)."""
        self._phase = name

    @contextlib.contextmanager
    def phase(self, name):
        self._phase = name
        start = time.monotonic()
        try:
            yield
        finally:
            self._add(name, time.monotonic() - start)

    @contextlib.contextmanager
    def step(self, name, tables):
        """The copy, replace or stage of a batch of tables (a list), in whichever thread runs it; each table of
        the batch is given an equal share of its time."""
        with self._lock:
            self._running.append(name)
        start = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - start
            with self._lock:
                self._running.remove(name)
                for table in tables:
                    self.tables.setdefault(table, {})[name] = round(seconds / len(tables), 3)
            self._add(name, seconds)

    def _add(self, name, seconds):
        with self._lock:
            self.durations[name] = round(self.durations.get(name, 0.0) + seconds, 3)


def table_batches(order, sizes, small=None, limit=None):
    """``order`` (table names) cut into batches, order kept: a table above ``small`` bytes alone, neighbouring
    smaller ones together while their sum stays within ``limit``.  ``sizes`` is ``tables.table_stats``; ``small``
    and ``limit`` default to SMALL_TABLE_BYTES and BATCH_BYTES."""
    small = SMALL_TABLE_BYTES if small is None else small
    limit = BATCH_BYTES if limit is None else limit
    batches, current, total = [], [], 0
    for table in order:
        size = sizes.get(table, {}).get("bytes", 0)
        if size > small:
            if current:
                batches.append(current)
                current, total = [], 0
            batches.append([table])
            continue
        if current and total + size > limit:
            batches.append(current)
            current, total = [], 0
        current.append(table)
        total += size
    if current:
        batches.append(current)
    return batches


def _alone(batch):
    """The table of a batch of one (errors name it), None for a batch of several."""
    return batch[0] if len(batch) == 1 else None


def work_skip_columns(entries, work):
    """Point ``table.column`` entries at the work copies; bare column names apply to every table."""
    translated = []
    for entry in entries or ():
        table, dot, column = str(entry).rpartition(".")
        translated.append("%s.%s" % (work.get(table, table), column) if dot else column)
    return translated


class PipelineTimeout(MigrationError):
    """The call ran out of its time budget."""


class _Stopped(Exception):
    """A worker ends because another part of the call failed (that failure is the one reported)."""


class _Worker:
    """A thread of the per-table flow, with connections of its own (a PyMySQL connection serves one thread)."""

    def __init__(self, name, target, flow):
        self.flow = flow
        self.connections = []
        self.thread = threading.Thread(target=self._main, args=(target,), name="wfu-%s" % name, daemon=True)

    def connect(self, database, **kwargs):
        conn = database.connect(deadline=self.flow.deadline, **kwargs)
        self.connections.append(conn)
        return conn

    def _main(self, target):
        try:
            target(self)
        except _Stopped:
            pass
        except BaseException as exc:  # pylint: disable=broad-except
            self.flow.fail(exc)
        finally:
            for conn in self.connections:
                with contextlib.suppress(Exception):
                    conn.close()


class _TableFlow:
    """copy → replace → stage, batch by batch, the steps of different batches overlapping.

    A batch is one table, or several small ones (see ``table_batches``) that move together, each way in one copy.
    A copier thread copies the batches from the source into the migration database, one after the other; the
    calling thread replaces the tables of each batch as soon as they have arrived (while the next batch is copied;
    a table alone while it loads); a stager thread puts each replaced batch into the target under its staging
    names (while the next one is replaced).  No two threads share a connection at the same time: the copier
    reads through the call's source connection and the stager writes through its target and migration DB ones
    (the calling thread does not use them meanwhile); the copier and the search-replace have a migration DB
    connection each.  What passes between the threads is a list of table names in a queue, so memory stays what
    one step needs.  Each table is counted once in its copy and that verified count is handed on to the stage's
    check.

    The first failure, in any thread, stops the others: it fires the call's deadline (``Deadline.interrupt``),
    which kills their statements on the servers (``KILL QUERY``) and their dump processes, and the threads stop
    before their next step.  ``run`` returns or raises only after every thread has ended, so the failure's
    cleanup never races a worker that is still writing.
    """

    def __init__(self, pipeline, batches, work, stage_of, replace, lent):
        self.pipeline = pipeline
        self.deadline = pipeline.deadline
        self.timer = pipeline.timer
        self.batches = batches
        self.work = work
        self.stage_of = stage_of
        self.replace = replace
        # The calling thread's connections, which it does not use while the flow runs: the copier reads the
        # source through its source connection, the stager writes through its target and migration DB ones.
        self.lent = lent
        self.copied = {}
        self.excluded = {}
        self.expected = {}
        self.method = None
        self.failure = None
        self._lock = threading.Lock()
        self._to_replace = queue.Queue()
        self._to_stage = queue.Queue()
        self._workers = []
        self._home = None

    # -- the threads ------------------------------------------------------------------------------
    def _copier(self, worker):
        p = self.pipeline
        src_conn = self.lent["source"]
        mig_conn = worker.connect(p.migration)
        # A dump arrives in primary-key order, statement by statement: a table that goes alone is replaced while it
        # loads.  A batch of small tables is replaced once it has arrived.
        follow = choose_method(p.source.db, p.migration) == "dump"
        try:
            for batch in self.batches:
                self._check()
                loaded = threading.Event()
                alone = _alone(batch)
                if follow and alone:
                    self._to_replace.put((batch, loaded))
                with self.timer.step("copy", batch), self._phase_of_errors("copy", alone):
                    result = p._copy_to_work(  # pylint: disable=protected-access
                        batch, {table: self.work[table] for table in batch}, connections=(src_conn, mig_conn))
                self.copied.update(result["tables"])
                self.excluded.update(result["excluded"])
                self.method = result["method"]
                loaded.set()
                if not (follow and alone):
                    self._to_replace.put((batch, loaded))
        finally:
            self._to_replace.put(None)

    def _stager(self, worker):
        p = self.pipeline
        mig_conn, tgt_conn = self.lent["migration"], self.lent["target"]
        while True:
            batch = self._to_stage.get()
            if batch is None:
                return
            self._check()
            works = [self.work[table] for table in batch]
            with self.timer.step("stage", batch), self._phase_of_errors("stage", _alone(batch)):
                staged = p._stage(mig_conn, {work: self.stage_of[work] for work in works},  # pylint: disable=protected-access
                                  counts={work: self.copied[work]["rows"] for work in works}, tgt_conn=tgt_conn)
            self.expected.update(staged)

    def run(self):
        """Move every table into the target's staging names; return ``(copied, expected)``: the copy's results
        by work table, and the verified rows each staged table must have, by staging name."""
        started = time.monotonic()
        self._home = threading.current_thread()
        self.timer.set_phase("copy")
        p = self.pipeline
        p.created_work.extend(w for w in self.work.values() if w not in p.created_work)
        try:
            try:
                self._start("copier", self._copier)
                self._start("stager", self._stager)
                while True:
                    item = self._to_replace.get()
                    if item is None:
                        break
                    batch, loaded = item
                    self._check()
                    with self.timer.step("replace", batch), \
                            self._phase_of_errors("replace", _alone(batch), loaded):
                        self.replace({table: self.work[table] for table in batch}, loaded)
                    while not loaded.wait(0.05):
                        self._check()  # a replace returns after its copy; only a stopped call gets here
                    self._to_stage.put(batch)
            finally:
                self._to_stage.put(None)
            self._join()
            self._check()
        except BaseException as exc:  # pylint: disable=broad-except
            self.fail(exc)
            while True:
                try:
                    self._to_stage.put(None)
                    self._stop_others()
                    self._join()
                    break
                except MigrationError:
                    continue  # the deadline's signal, fired by a worker's failure, arrived here
            if self.failure is exc:
                raise
            raise self.failure from exc
        finally:
            self.timer.overlap = round(time.monotonic() - started, 3)
        return self.copied, self.expected

    # -- failure ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _phase_of_errors(self, phase, table, loaded=None):
        """A step's failure is its phase's, whatever thread notices it first.  Out of time, it is the phase the
        time limit found running (``PhaseTimer.current``: the step the others waited for); a replace stopped
        while it followed its table's copy (``loaded`` not set) reports the copy."""
        try:
            yield
        except _Stopped:
            raise
        except BaseException as exc:
            if self.deadline.expired():
                if loaded is not None and not loaded.is_set():
                    phase = "copy"
                elif isinstance(exc, MigrationError) and exc.reason == TIMEOUT and exc.phase in PhaseTimer.STEPS:
                    phase = exc.phase
            raise self._as_failure(exc, phase, table) from exc

    def _as_failure(self, exc, phase, table):
        if self.deadline.expired():
            # A statement killed because the call was stopped (its time limit, the playbook gone, another
            # thread's failure): the failure is what stopped it.
            exc = self.deadline.failure(table)
        error = MigrationError.wrap(exc, site_id=self.pipeline.site_id_or_none, table=table, phase=phase)
        if getattr(error, "pipeline_phase", None) is None:
            error.pipeline_phase = phase
        return error

    def fail(self, exc):
        """Record the call's failure (the first one wins); a worker's first failure stops every thread."""
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = MigrationError.wrap(exc, site_id=self.pipeline.site_id_or_none)
                if getattr(self.failure, "pipeline_phase", None) is None:
                    self.failure.pipeline_phase = self.failure.phase or self.timer.current
        if first and threading.current_thread() is not self._home:
            self.deadline.interrupt(self.failure)

    def _stop_others(self):
        """Fire the deadline from the calling thread: kill the workers' statements and dumps."""
        if self.deadline.expired():
            return
        try:
            # In the main thread the deadline fires in its signal handler, which then raises our own failure.
            self.deadline.interrupt(self.failure)
            for _attempt in range(100):
                if self.deadline.expired():
                    break
                time.sleep(0.05)
        except MigrationError:
            pass

    def _check(self):
        if self.failure is not None:
            raise _Stopped()
        if self.deadline.expired():
            raise self.deadline.failure()

    def _start(self, name, target):
        worker = _Worker(name, target, self)
        self._workers.append(worker)
        worker.thread.start()

    def _join(self):
        for worker in self._workers:
            worker.thread.join()


class _TablePipeline:
    """Shared machinery: move a set of tables through the migration DB into the target.

    ``owner`` is what the tables belong to: a site id, or ``'network'``.
    """

    owner = None

    def __init__(self, source, target, migration_db, options, check_mode=False):
        self.source = source.playing("source")
        self.target = target.playing("target")
        self.migration = Database.from_params(migration_db, role="migration")
        if not self.migration.database:
            raise ConfigError("migration_db.database is missing")
        for env in (self.source, self.target):
            if env.db.same_database(self.migration):
                raise ConfigError("the migration database %s is the %s environment's database; give the migration "
                                  "its own database" % (self.migration.database, env.name))
        if self.source.db.same_database(self.target.db):
            raise ConfigError("source (%s) and target (%s) are the same database" % (self.source.name,
                                                                                     self.target.name))
        self.options = options
        # Checked now, so a wrong setting fails before anything is copied.  Imported only then: it brings boto3,
        # whose import alone costs a site about 0.15 s.
        self.backup_s3 = None
        if options.get("backup_s3"):
            from ansible_collections.wfu.multisite.plugins.module_utils import backup_s3

            self.backup_s3 = backup_s3.backup_location(options["backup_s3"])
        if self.backup_s3 is not None and not (options.get("backup_dir") and options.get("backup_name")):
            raise ConfigError("backup_s3 needs backup_dir and backup_name: the backup is written there first, then "
                              "uploaded under the migration's name")
        lock_wait = options.get("lock_wait", LOCK_WAIT)
        if isinstance(lock_wait, bool) or not isinstance(lock_wait, int) or lock_wait < 0:
            raise ConfigError("lock_wait must be a number of seconds >= 0, got %r" % (lock_wait,))
        self.check_mode = check_mode
        self.timer = PhaseTimer()
        self.deadline = Deadline()
        self.created_work = []
        self.created_stage = []
        # {source table: condition on the rows copied}, from the content policy once the tables are known.
        self.filters = {}
        # The named locks the sessions of this call's loaders take (copy_engine load_lock): after a failure, the
        # cleanup ends those sessions before it drops what they may still be writing.
        self.load_locks = []
        self._load_token = secrets.token_hex(8)
        # Guards the lists above: the per-table steps of a site update them from several threads.
        self._books = threading.Lock()
        self.swapped = None
        self.locks = []
        self.result = {"changed": False}

    # -- steps shared by sites and the network ------------------------------------------------
    def _next_load_lock(self):
        with self._books:
            name = "wfu:load:%s:%d" % (self._load_token, len(self.load_locks) + 1)
            self.load_locks.append(name)
        return name

    def label(self):
        return server_locks.owner_label(self.owner)

    def _site_id(self):
        return self.owner if self.owner != "network" else None

    def _error(self, message, table=None, hint=None, failure_class=None, reason=None):
        return MigrationError(message, site_id=self._site_id(), table=table, phase=self.timer.current,
                              failure_class=failure_class, hint=hint, reason=reason)

    @contextlib.contextmanager
    def _connections(self):
        """One connection to each of source, target and migration database, bounded by the call's deadline.

        They are closed (and the locks they hold released) before a failure's cleanup starts.
        """
        with contextlib.ExitStack() as stack:
            with self.timer.phase("connect"):
                connections = [stack.enter_context(db.connect(deadline=self.deadline))
                               for db in (self.source.db, self.target.db, self.migration)]
            yield connections

    def _lock(self, tgt_conn, mig_conn):
        """Take the owner's lock on the target's server, then on the migration database's server."""
        for conn, database in ((tgt_conn, self.target.db), (mig_conn, self.migration)):
            wait = self.options.get("lock_wait", LOCK_WAIT)
            remaining = self.deadline.remaining()
            if remaining is not None:
                wait = min(wait, int(remaining))
            self.locks.append(server_locks.acquire(conn, database, self.owner, wait))

    @property
    def site_id_or_none(self):
        return self._site_id()

    def _copy_to_work(self, tables, work_names, connections=(None, None)):
        """Copy source tables into the migration DB under their work names; ``connections`` are a source and a
        migration DB connection of the calling thread."""
        # Recorded first: a copy that fails half-way (a broken dump, a row count that does not match) has already
        # created some of them.
        with self._books:
            self.created_work.extend(w for w in work_names.values() if w not in self.created_work)
        src_conn, mig_conn = connections
        return copy_tables(self.source.db, tables, self.migration, rename=work_names,
                           work_dir=self.options.get("work_dir"), deadline=self.deadline, source_conn=src_conn,
                           dest_conn=mig_conn, filters={t: self.filters[t] for t in tables if t in self.filters},
                           load_lock=self._next_load_lock)

    def _replace(self, work, rules, skip_columns, conn=None, arriving=None):
        return replace_in_tables(self.migration, self.migration.database, list(work.values()), rules,
                                 skip_columns=skip_columns, deadline=self.deadline, conn=conn, arriving=arriving)

    def _stage(self, mig_conn, work_to_stage, counts=None, tgt_conn=None):
        """Put the transformed tables into the target under staging names; return their expected row counts.

        ``counts`` are the work tables' rows as their copy verified them (the search-replace changes no row
        count); a table without one is counted here.  The staged tables are counted once, in the verify phase.
        """
        counts = dict(counts or {})
        unknown = [work for work in work_to_stage if work not in counts]
        counts.update(tbl.exact_row_counts(mig_conn, self.migration.database, unknown))
        with self._books:
            self.created_stage.extend(work_to_stage.values())
        if self.migration.same_server(self.target.db):
            # Migration database on the target's server: moving the tables over is a rename, not a copy.
            tbl.rename_tables(mig_conn, self.migration.database, sorted(work_to_stage.items()),
                              to_database=self.target.database)
            with self._books:
                self.created_work = [t for t in self.created_work if t not in work_to_stage]
        else:
            copy_tables(self.migration, list(work_to_stage), self.target.db, rename=work_to_stage,
                        work_dir=self.options.get("work_dir"), deadline=self.deadline, source_rows=counts,
                        verify=False, source_conn=mig_conn, dest_conn=tgt_conn, load_lock=self._next_load_lock)
        return {work_to_stage[work]: counts[work] for work in work_to_stage}

    def _clean(self, mig_conn, tgt_conn):
        """Drop what an earlier attempt for this owner left in the migration DB and the target."""
        leftovers = tbl.work_tables_of(tbl.list_tables(mig_conn, self.migration.database), self.owner)
        tbl.drop_tables(mig_conn, self.migration.database, leftovers)
        present = tbl.list_tables(tgt_conn, self.target.database)
        tbl.clear_target_leftovers(tgt_conn, self.target.database, present,
                                   tbl.target_leftovers(present, self.target.prefix, self.owner))

    def _names(self, work):
        """``(live_of, stage_of)``: each work table's live name in the target, and its staging name."""
        live_of = {w: tbl.retarget_table(t, self.source.prefix, self.target.prefix) for t, w in work.items()}
        return live_of, {w: tbl.stage_table(live) for w, live in live_of.items()}

    def _preserve(self, tgt_conn, live, names, rows, expected, present):
        """Give the staged ``live`` table the target's values of ``names`` (``content_policy.OPTIONS_ROWS`` or
        ``SITEMETA_ROWS``) and count the rows that adds in ``expected``; return the names preserved.

        Nothing is preserved where the target has no such table yet (``present``: the target's tables): a site
        new to it keeps the source's values.
        """
        staged = tbl.stage_table(live)
        if not names or staged not in expected or live not in present:
            return []
        preserved, inserted = content_policy.preserve_target_values(
            tgt_conn, self.target.database, staged, live, names, rows)
        expected[staged] += inserted
        return preserved

    def _preserved_in_target(self, tgt_conn, live, names, rows, present):
        """The ``names`` the target's ``live`` table has: what ``_preserve`` would keep (the plan's)."""
        if live not in present:
            return []
        return content_policy.present_names(tgt_conn, self.target.database, live, rows[0][-1], names)

    def _excluded_in_source(self, src_conn):
        """``{target table: rows the content policy leaves out}``, counted now (the plan's)."""
        counts = tbl.filtered_row_counts(src_conn, self.source.database, self.filters)
        return {tbl.retarget_table(table, self.source.prefix, self.target.prefix): rows - kept
                for table, (rows, kept) in counts.items()}

    def _drop_leftovers_of_success(self, mig_conn, tgt_conn, existing, work):
        """After a verified swap: drop the previous tables (unless kept) and the work copies; return what was kept."""
        kept = sorted(tbl.old_table(t) for t in existing)
        if not self.options.get("keep_backup_tables"):
            tbl.drop_tables(tgt_conn, self.target.database, kept)
            kept = []
        tbl.drop_tables(mig_conn, self.migration.database, list(work.values()))
        self.created_work = []
        return kept

    def _verify_counts(self, conn, expected):
        actual = tbl.exact_row_counts(conn, self.target.database, list(expected))
        for table, rows in expected.items():
            if actual.get(table) != rows:
                raise self._error("table %s.%s has %s rows, expected %s"
                                  % (self.target.database, table, actual.get(table), rows), table=table,
                                  hint="the copy lost rows; nothing was swapped in. Check the target's disk and "
                                       "max_allowed_packet, then retry the site.")
        return actual

    def _swap(self, conn, live_to_stage, existing_live):
        """Move the live tables aside and the staged ones in, in one statement."""
        moves = [(live, tbl.old_table(live)) for live in sorted(existing_live)]
        moves += [(stage, live) for live, stage in sorted(live_to_stage.items())]
        # Recorded before the statement: when its reply is lost (connection cut, deadline), the cleanup looks at
        # the tables to learn whether it happened.  Nor may a server that hung run it after the call gave up.
        self.swapped = (live_to_stage, existing_live)
        tbl.rename_tables(conn, self.target.database, moves, within=self.deadline.remaining())
        self.created_stage = []

    def _swap_happened(self, conn):
        """RENAME TABLE is atomic: it happened exactly when none of the staging names is left."""
        staged = set(self.swapped[0].values())
        return not staged & set(tbl.list_tables(conn, self.target.database))

    def _swap_back(self, conn):
        live_to_stage, existing_live = self.swapped
        moves = sorted(live_to_stage.items())
        moves += [(tbl.old_table(live), live) for live in sorted(existing_live)]
        tbl.rename_tables(conn, self.target.database, moves)
        self.swapped = None
        self.created_stage = list(live_to_stage.values())

    def _backup_file(self, existing_live, label):
        """The dump of the tables the swap replaces: a timestamped file's path, or with ``backup_name`` what
        ``rollback.write_backup`` reports (``<backup_dir>/<backup_name>/site-<N>.sql.gz`` and its manifest)."""
        backup_dir, backup_name = self.options.get("backup_dir"), self.options.get("backup_name")
        if not (self.options.get("backup", True) and backup_dir and (existing_live or backup_name)):
            return None
        if backup_name:
            report = rollback.write_backup(self.target, sorted(existing_live), backup_dir, backup_name, self.owner,
                                           work_dir=self.options.get("work_dir"), deadline=self.deadline)
            if self.backup_s3 is not None:
                # Before the swap: no site is replaced without its backup in the bucket.
                from ansible_collections.wfu.multisite.plugins.module_utils import backup_s3

                report["s3"] = backup_s3.upload_backup(self.backup_s3, backup_name, report)
            return report
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = os.path.join(os.path.expanduser(backup_dir), "%s-%s-%s.sql.gz" % (self.target.name, label, stamp))
        return dump_to_file(self.target.db, sorted(existing_live), path, work_dir=self.options.get("work_dir"),
                            deadline=self.deadline)

    # -- failure ------------------------------------------------------------------------------
    def _cleanup_after_failure(self, unreachable):
        """Drop what this call created; undo a swap that was not verified.  Never raises.

        Each database gets a fresh connection with short timeouts, under the owner's lock taken anew (this
        call's connections, and its locks, are gone by now); a database on a server in ``unreachable`` is
        left alone, as is one whose lock someone else took meanwhile (its next run cleans it).
        """
        notes = []
        for database, work in ((self.target.db, self._undo_in_target), (self.migration, self._undo_in_migration)):
            if not self._undo_needed(database):
                continue
            if any(database.same_server(other) for other in unreachable):
                notes.append("left %s alone: its server does not answer" % database)
                continue
            try:
                with contextlib.closing(database.connect(timeout=CLEANUP_STATEMENT_TIMEOUT,
                                                         connect_timeout=CLEANUP_CONNECT_TIMEOUT)) as conn:
                    # This call's own connections have just closed: the server may take a moment to let their
                    # lock go.
                    name, holder = server_locks.try_acquire(conn, database, self.owner, wait=CLEANUP_LOCK_WAIT)
                    if name is None:
                        notes.append("left %s of %s alone: %s holds its lock now" % (database, self.label(), holder))
                        continue
                    # A loader of this call may still have a statement there (a CREATE TABLE would outlive the
                    # drops below): its session ends first.
                    notes.extend(server_locks.end_sessions_holding(conn, list(self.load_locks), CLEANUP_LOAD_WAIT))
                    notes.extend(work(conn))
            except Exception as exc:  # pylint: disable=broad-except
                notes.append("could not clean up %s: %s" % (database, MigrationError.wrap(exc).message))
        return notes

    def _undo_needed(self, database):
        if database is self.target.db:
            return bool(self.swapped or self.created_stage)
        return bool(self.created_work)

    def _undo_in_target(self, conn):
        notes = []
        if self.swapped and self._swap_happened(conn):
            self._swap_back(conn)
            notes.append("swapped the previous tables back in")
        if self.created_stage:
            tbl.drop_tables(conn, self.target.database, self.created_stage)
            notes.append("dropped %d staging tables" % len(self.created_stage))
        return notes

    def _undo_in_migration(self, conn):
        tbl.drop_tables(conn, self.migration.database, self.created_work)
        return ["dropped %d work tables" % len(self.created_work)]

    def _timeout_error(self, table=None):
        phase = self.timer.current
        message = "%s did not finish within %s s (phase %s)" % (self.label(), self.deadline.seconds, phase)
        return PipelineTimeout(message,
                               site_id=self._site_id(), table=table, phase=phase, reason=TIMEOUT,
                               hint="raise site_timeout, or list the site in large_sites so it gets "
                                    "large_site_timeout_factor times more")

    def _failed(self, exc):
        """The MigrationError to report for ``exc``, after the cleanup."""
        # The pipeline's phase, not the helper's: a failed copy into the target is the stage phase.  A per-table
        # step that failed says which it was (several overlap).
        phase = getattr(exc, "pipeline_phase", None) or self.timer.current
        error = MigrationError.wrap(exc, site_id=self._site_id(), phase=phase)
        if phase:
            error.phase = phase
        timed_out = isinstance(error, PipelineTimeout)
        # Out of time because a server stopped answering: that is the server's failure, not the site's.
        error = self.deadline.blame(error)
        unreachable = dict(self.deadline.unreachable()) if self.deadline.expired() else {}
        if error.reason == SERVER_NOT_ANSWERING and error.database is not None:
            unreachable[error.database] = error
        error.timed_out = timed_out
        error.cleanup = self._cleanup_after_failure(unreachable)
        error.durations = dict(self.timer.durations)
        return error

    def run(self, timeout=0, watch_pid=None):
        """Run the pipeline within ``timeout`` seconds (0: no limit), stopping early when process ``watch_pid``
        (the ansible-playbook that started the module) ends; clean up after any failure."""
        self.deadline = Deadline(timeout, error=self._timeout_error)
        try:
            with self.deadline.armed(), self.deadline.stop_when_gone(watch_pid):
                return self._run()
        except Exception as exc:
            raise self._failed(exc) from exc


class SiteMigration(_TablePipeline):
    """Migrate one site: its tables, transformed, swapped into the target atomically."""

    def __init__(self, site_id, source, target, migration_db, options=None, check_mode=False):
        super().__init__(source, target, migration_db, options or {}, check_mode)
        self.owner = self.site_id = tbl.validate_site_id(site_id)
        self.target_only_rule = self.options.get("target_only_tables") or KEEP
        if self.target_only_rule not in TARGET_ONLY_RULES:
            raise ConfigError("target_only_tables must be one of %s, got %r"
                              % (", ".join(TARGET_ONLY_RULES), self.target_only_rule))
        content_policy.post_types(self.options.get("exclude_post_types"))

    def _context(self, src_conn):
        blogs = read_blogs(src_conn, self.source.database, self.source.prefix)
        network = Network.from_rows(blogs)
        row = next((b for b in blogs if b["blog_id"] == self.site_id), None)
        if row is None:
            raise self._error("site %d is not in %s.%sblogs of %s" % (self.site_id, self.source.database,
                                                                      self.source.prefix, self.source.name),
                              hint="list the sites with wfu.multisite.wfu_sites_info")
        tables = tbl.site_tables(tbl.list_tables(src_conn, self.source.database), self.source.prefix, self.site_id)
        if not tables:
            raise self._error("site %d has no %s tables in %s" % (self.site_id, tbl.site_table_prefix(
                self.source.prefix, self.site_id), self.source.database))
        rules = derive_rules(self.source.addressing, self.target.addressing, network)
        domain, path = map_site_address(row["domain"], row["path"], self.source.addressing, self.target.addressing, network)
        self.filters = content_policy.site_filters(self.options, self.source.database,
                                                   tbl.site_table_prefix(self.source.prefix, self.site_id), tables)
        return row, tables, rules, domain, path

    def _options_live(self):
        """The site's options table in the target."""
        return tbl.retarget_table(tbl.site_table_prefix(self.source.prefix, self.site_id) + "options",
                                  self.source.prefix, self.target.prefix)

    def _target_only(self, target_tables, live_tables):
        """The site's tables in the target that no source table replaces."""
        return sorted(set(tbl.site_tables(target_tables, self.target.prefix, self.site_id)) - set(live_tables))

    def plan(self):
        with contextlib.closing(self.source.db.connect(deadline=self.deadline)) as src_conn:
            row, tables, rules, domain, path = self._context(src_conn)
            stats = tbl.table_stats(src_conn, self.source.database, tables)
            excluded = self._excluded_in_source(src_conn)
        options_live = self._options_live()
        with contextlib.closing(self.target.db.connect(deadline=self.deadline)) as tgt_conn:
            target_tables = tbl.list_tables(tgt_conn, self.target.database)
            preserved = self._preserved_in_target(tgt_conn, options_live, self.target.preserve_options,
                                                  content_policy.OPTIONS_ROWS, target_tables)
        live = [tbl.retarget_table(t, self.source.prefix, self.target.prefix) for t in tables]
        return {
            "site_id": self.site_id,
            "source": {"domain": row["domain"], "path": row["path"]},
            "target": {"domain": domain, "path": path},
            "tables": [{"source": t, "target": lt, "rows": stats.get(t, {}).get("rows", 0),
                        "bytes": stats.get(t, {}).get("bytes", 0), "exists_in_target": lt in target_tables}
                       for t, lt in zip(tables, live)],
            "bytes": sum(s["bytes"] for s in stats.values()),
            "new_to_target": not any(lt in target_tables for lt in live),
            "target_only_tables": self._target_only(target_tables, live),
            "target_only_rule": self.target_only_rule,
            "rules": rules_for_display(rules),
            # The content policy: rows that would be left out, by target table, and the options the target keeps.
            "excluded": excluded,
            "preserved": preserved,
        }

    def _run(self):
        if self.check_mode:
            return dict(self.result, plan=self.plan(), site_id=self.site_id)
        opts = self.options
        with self._connections() as (src_conn, tgt_conn, mig_conn):
            with self.timer.phase("lock"):
                self._lock(tgt_conn, mig_conn)
            with self.timer.phase("prepare"):
                row, tables, rules, domain, path = self._context(src_conn)
                expected_url = site_url(self.target.addressing, domain, path)
                sizes = tbl.table_stats(src_conn, self.source.database, tables)
            with self.timer.phase("clean"):
                self._clean(mig_conn, tgt_conn)
            work = {t: tbl.work_table(self.site_id, t) for t in tables}
            live_of, stage_of = self._names(work)
            skip_columns = work_skip_columns(opts.get("skip_columns"), work)
            replaced = {"tables": {}, "rows_changed": 0}
            with contextlib.closing(self.migration.connect(autocommit=False, deadline=self.deadline)) as replace_conn:

                def replace(batch_work, loaded):
                    done = self._replace(batch_work, rules, skip_columns, conn=replace_conn, arriving=loaded)
                    replaced["tables"].update(done["tables"])
                    replaced["rows_changed"] += done["rows_changed"]
                    self._retarget_prefixed_keys(replace_conn, batch_work)
                    replace_conn.commit()

                # The largest first: the small ones are copied while it is replaced, and the last step is short.
                # But when each table is replaced while it loads and the stage is a rename (the migration DB on
                # the target's server), the largest goes last: the replace of the others (of serialized values,
                # the slowest work) runs while it is copied, and its own replace ends with its copy.
                last = (self.migration.same_server(self.target.db)
                        and choose_method(self.source.db, self.migration) == "dump")
                order = sorted(tables, key=lambda t: ((1 if last else -1) * sizes.get(t, {}).get("bytes", 0), t))
                flow = _TableFlow(self, table_batches(order, sizes), work, stage_of, replace,
                                  {"source": src_conn, "target": tgt_conn, "migration": mig_conn})
                copied, expected = flow.run()
            options_live = self._options_live()
            present = tbl.list_tables(tgt_conn, self.target.database)
            with self.timer.phase("preserve"):
                preserved = self._preserve(tgt_conn, options_live, self.target.preserve_options,
                                           content_policy.OPTIONS_ROWS, expected, present)
            with self.timer.phase("verify"):
                self._verify_counts(tgt_conn, expected)
                self._verify_urls(tgt_conn, tbl.stage_table(options_live), expected_url)
            replaced_live = set(present) & set(live_of.values())
            target_only = self._target_only(present, live_of.values())
            # Tables moved aside go with the replaced ones: into the backup dump, renamed wfu_old__ in the swap.
            existing = replaced_live | (set(target_only) if self.target_only_rule == MOVE_ASIDE else set())
            with self.timer.phase("backup"):
                backup_path = self._backup_file(existing, "site-%d" % self.site_id)
            with self.timer.phase("swap"):
                self._swap(tgt_conn, {live: stage_of[w] for w, live in live_of.items()}, existing)
                try:
                    self._verify_urls(tgt_conn, options_live, expected_url)
                except MigrationError:
                    self._swap_back(tgt_conn)
                    raise
                # Until the wp_blogs row is there, a failure swaps the previous tables back (in the cleanup).
                registered = self._ensure_blog_row(src_conn, tgt_conn, row, domain, path)
                self.swapped = None
            with self.timer.phase("cleanup"):
                kept = self._drop_leftovers_of_success(mig_conn, tgt_conn, existing, work)
        return {
            "changed": True,
            "site_id": self.site_id,
            "url": expected_url,
            "tables": sorted(live_of.values()),
            "new_to_target": not replaced_live,
            "blog_row_created": registered,
            "rows": sum(entry["rows"] for entry in copied.values()),
            "bytes": sum(entry["bytes"] for entry in copied.values()),
            "excluded": {live_of[w]: rows for w, rows in flow.excluded.items()},
            "preserved": preserved,
            "copy_method": flow.method,
            "replacements": replaced["tables"],
            "rows_changed": replaced["rows_changed"],
            "target_only_tables": target_only,
            "target_only_rule": self.target_only_rule,
            "backup": {"file": backup_path, "tables": kept},
            "locks": list(self.locks),
            "durations": dict(self.timer.durations),
            # The copy, replace and stage of different tables overlap: their durations above are summed over
            # the tables; this is the wall time they took together, and each table's steps.
            "overlap": {"seconds": self.timer.overlap, "tables": dict(self.timer.tables)},
            "rules_count": len(rules),
        }

    def _retarget_prefixed_keys(self, mig_conn, work):
        """Prefixed option names (``wp_43_user_roles``) follow a change of table prefix."""
        if self.source.prefix == self.target.prefix:
            return
        site_prefix = tbl.site_table_prefix(self.source.prefix, self.site_id)
        options_work = work.get(site_prefix + "options")
        if not options_work:
            return
        new_prefix = tbl.retarget_table(site_prefix, self.source.prefix, self.target.prefix)
        with mig_conn.cursor() as cur:
            cur.execute("UPDATE %s.%s SET option_name = CONCAT(%%s, SUBSTRING(option_name, %%s)) "
                        "WHERE option_name = %%s" % (quote_identifier(self.migration.database),
                                                     quote_identifier(options_work)),
                        (new_prefix, len(site_prefix) + 1, site_prefix + "user_roles"))

    def _verify_urls(self, conn, options_table, expected_url):
        """``siteurl`` and ``home`` must point at the site's address in the target.

        Either scheme is accepted (networks mix http and https in their data), and a path below the address
        is too (``siteurl`` of WordPress installed in ``/wp``); a host or base path of the source is not.
        """
        if self.options.get("verify_urls", True) is False:
            return
        with conn.cursor() as cur:
            cur.execute("SELECT option_name, option_value FROM %s.%s WHERE option_name IN ('siteurl', 'home')"
                        % (quote_identifier(self.target.database), quote_identifier(options_table)))
            found = dict(cur.fetchall())
        address = expected_url.split("://", 1)[-1].rstrip("/")
        for name in ("siteurl", "home"):
            value = found.get(name) or ""
            scheme, _sep, rest = value.partition("://")
            rest = rest.rstrip("/")
            if scheme not in ("http", "https") or not (rest == address or rest.startswith(address + "/")):
                raise self._error("site %d: %s in %s is %r after search-replace, expected %r"
                                  % (self.site_id, name, options_table, value, expected_url),
                                  table=options_table,
                                  hint="check url/subsite_domain of %s and %s in wfu_environments, or run the site with "
                                       "-e verify_urls=false for a site whose %s is deliberately different"
                                       % (self.source.name, self.target.name, name))

    def _ensure_blog_row(self, src_conn, tgt_conn, row, domain, path):
        """A site new to the target needs its wp_blogs row, or WordPress cannot route to it."""
        blogs = self.target.prefix + "blogs"
        if blogs not in tbl.list_tables(tgt_conn, self.target.database):
            return False
        blogs_table = qualified(self.target.database, blogs)
        with tgt_conn.cursor() as cur:
            cur.execute("SELECT domain, path FROM %s WHERE blog_id = %%s" % blogs_table, (self.site_id,))
            if cur.fetchone():
                return False
            cur.execute("INSERT INTO %s (blog_id, site_id, domain, path, registered, last_updated, public, archived, "
                        "mature, spam, deleted, lang_id) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, 0)"
                        % blogs_table, (self.site_id, row["site_id"], domain, path, row["registered"], row["last_updated"],
                                        row["public"], row["archived"], row["mature"], row["spam"], row["deleted"]))
        return True


class NetworkMigration(_TablePipeline):
    """Migrate the network tables (wp_blogs, wp_site, wp_sitemeta, wp_blogmeta; users when asked).

    A site that only the target has keeps its wp_blogs and wp_blogmeta rows: they are added to the staged
    tables, so it keeps working, unless its address is the one a migrated site arrives at (then the call
    fails before anything is written).
    """

    owner = "network"

    def _tables(self, src_conn):
        present = tbl.list_tables(src_conn, self.source.database)
        tables = tbl.network_tables(present, self.source.prefix, include_users=bool(self.options.get("include_users")))
        if self.source.prefix + "blogs" not in tables:
            raise self._error("%s has no %sblogs table: not a multisite network, or wrong table_prefix"
                              % (self.source.database, self.source.prefix))
        self.filters = content_policy.network_filters(self.options, self.source.prefix, tables)
        return tables

    def _addresses(self, blogs, network):
        """``{blog_id: (domain, path)}`` of the source's sites in the target."""
        return {b["blog_id"]: map_site_address(b["domain"], b["path"], self.source.addressing,
                                               self.target.addressing, network) for b in blogs}

    def _target_only_sites(self, tgt_conn, blogs, addresses):
        """The target's wp_blogs rows of sites the source does not have; refuse one whose address a migrated
        site takes."""
        if self.target.prefix + "blogs" not in tbl.list_tables(tgt_conn, self.target.database):
            return []
        source_ids = {b["blog_id"] for b in blogs}
        only = [b for b in read_blogs(tgt_conn, self.target.database, self.target.prefix)
                if b["blog_id"] not in source_ids]
        arriving = {address: blog_id for blog_id, address in addresses.items()}
        for blog in only:
            clash = arriving.get((blog["domain"], blog["path"]))
            if clash is not None:
                raise self._error(
                    "site %d exists only in %s, at %s%s, and site %d of %s would arrive at the same address"
                    % (blog["blog_id"], self.target.name, blog["domain"], blog["path"], clash, self.source.name),
                    hint="two sites cannot share an address: give site %d in %s another address (or delete it "
                         "there if it is no longer wanted), then migrate the network tables again"
                         % (blog["blog_id"], self.target.name))
        return only

    def plan(self):
        with contextlib.closing(self.source.db.connect(deadline=self.deadline)) as src_conn:
            tables = self._tables(src_conn)
            blogs = read_blogs(src_conn, self.source.database, self.source.prefix)
            network = Network.from_rows(blogs)
            stats = tbl.table_stats(src_conn, self.source.database, tables)
            excluded = self._excluded_in_source(src_conn)
        addresses = self._addresses(blogs, network)
        sitemeta = self.target.prefix + "sitemeta"
        with contextlib.closing(self.target.db.connect(deadline=self.deadline)) as tgt_conn:
            target_only = self._target_only_sites(tgt_conn, blogs, addresses)
            preserved = self._preserved_in_target(tgt_conn, sitemeta, self.target.preserve_sitemeta,
                                                  content_policy.SITEMETA_ROWS,
                                                  tbl.list_tables(tgt_conn, self.target.database))
        mapping = [dict(blog_id=b["blog_id"], source="%s%s" % (b["domain"], b["path"]),
                        target="%s%s" % addresses[b["blog_id"]]) for b in blogs]
        return {"tables": [{"source": t, "target": tbl.retarget_table(t, self.source.prefix, self.target.prefix),
                            "rows": stats.get(t, {}).get("rows", 0)} for t in tables],
                "sites": mapping,
                "target_only_sites": _site_summaries(target_only),
                "rules": rules_for_display(derive_rules(self.source.addressing, self.target.addressing, network)),
                "excluded": excluded, "preserved": preserved}

    def _run(self):
        if self.check_mode:
            return dict(self.result, plan=self.plan())
        with self._connections() as (src_conn, tgt_conn, mig_conn):
            with self.timer.phase("lock"):
                self._lock(tgt_conn, mig_conn)
            with self.timer.phase("prepare"):
                tables = self._tables(src_conn)
                blogs = read_blogs(src_conn, self.source.database, self.source.prefix)
                network = Network.from_rows(blogs)
                addresses = self._addresses(blogs, network)
                target_only = self._target_only_sites(tgt_conn, blogs, addresses)
                rules = derive_rules(self.source.addressing, self.target.addressing, network)
            with self.timer.phase("clean"):
                self._clean(mig_conn, tgt_conn)
            work = {t: tbl.network_work_table(t) for t in tables}
            with self.timer.phase("copy"):
                copied = self._copy_to_work(tables, work)
            counts = {w: copied["tables"][w]["rows"] for w in work.values()}
            with self.timer.phase("replace"):
                self._map_addresses(mig_conn, work, addresses, network)
                self._retarget_user_options(mig_conn, work)
                replaced = self._replace(work, rules, self._skip_columns(work))
                # After the rules: the target's own rows already hold the target's addresses.
                for work_table, added in self._keep_target_only_sites(tgt_conn, mig_conn, work, target_only).items():
                    counts[work_table] += added
            live_of, stage_of = self._names(work)
            with self.timer.phase("stage"):
                expected = self._stage(mig_conn, stage_of, counts=counts, tgt_conn=tgt_conn)
            present = tbl.list_tables(tgt_conn, self.target.database)
            with self.timer.phase("preserve"):
                preserved = self._preserve(tgt_conn, self.target.prefix + "sitemeta", self.target.preserve_sitemeta,
                                           content_policy.SITEMETA_ROWS, expected, present)
            with self.timer.phase("verify"):
                self._verify_counts(tgt_conn, expected)
            existing = set(present) & set(live_of.values())
            with self.timer.phase("backup"):
                backup_path = self._backup_file(existing, "network")
            with self.timer.phase("swap"):
                self._swap(tgt_conn, {live: stage_of[w] for w, live in live_of.items()}, existing)
                self.swapped = None
            with self.timer.phase("cleanup"):
                kept = self._drop_leftovers_of_success(mig_conn, tgt_conn, existing, work)
        return {"changed": True, "tables": sorted(live_of.values()), "rows": copied.get("rows", 0),
                "bytes": copied.get("bytes", 0), "rows_changed": replaced.get("rows_changed", 0),
                "replacements": replaced.get("tables", {}), "sites": len(blogs),
                "target_only_sites": _site_summaries(target_only), "locks": list(self.locks),
                "excluded": {live_of[w]: rows for w, rows in copied["excluded"].items()}, "preserved": preserved,
                "backup": {"file": backup_path, "tables": kept}, "durations": dict(self.timer.durations)}

    def _keep_target_only_sites(self, tgt_conn, mig_conn, work, target_only):
        """Add the target-only sites' wp_blogs and wp_blogmeta rows (their own, untouched) to the work tables;
        return ``{work table: rows added}``."""
        added = {}
        if not target_only:
            return added
        ids = [b["blog_id"] for b in target_only]
        present = set(tbl.list_tables(tgt_conn, self.target.database))
        # wp_blogmeta's meta_id is the server's to number: the source's rows may use the target's ids.
        for name, numbered_by_server in (("blogs", None), ("blogmeta", "meta_id")):
            work_table, target_table = work.get(self.source.prefix + name), self.target.prefix + name
            if not work_table or target_table not in present:
                continue
            with tgt_conn.cursor() as cur:
                cur.execute("SELECT * FROM %s WHERE blog_id IN (%s)"
                            % (qualified(self.target.database, target_table), ", ".join(["%s"] * len(ids))), ids)
                keep = [i for i, column in enumerate(cur.description) if column[0] != numbered_by_server]
                columns = [cur.description[i][0] for i in keep]
                rows = [tuple(row[i] for i in keep) for row in cur.fetchall()]
            if rows:
                with mig_conn.cursor() as cur:
                    added[work_table] = cur.executemany("INSERT INTO %s (%s) VALUES (%s)"
                                                        % (qualified(self.migration.database, work_table),
                                                           ", ".join(quote_identifier(c) for c in columns),
                                                           ", ".join(["%s"] * len(columns))), rows)
        return added

    def _skip_columns(self, work):
        # The domain/path of wp_blogs, wp_site and wp_signups are mapped per row, not searched.
        mapped = ["%s%s.%s" % (self.source.prefix, table, column) for table in ("blogs", "site", "signups")
                  for column in ("domain", "path")]
        return work_skip_columns(list(self.options.get("skip_columns") or ()) + mapped, work)

    def _retarget_user_options(self, mig_conn, work):
        """Per-site user settings (``wp_capabilities``, ``wp_2_user_level``) carry the table prefix in their key."""
        usermeta = work.get(self.source.prefix + "usermeta")
        if not usermeta or self.source.prefix == self.target.prefix:
            return
        with mig_conn.cursor() as cur:
            cur.execute("UPDATE %s.%s SET meta_key = CONCAT(%%s, SUBSTRING(meta_key, %%s)) "
                        "WHERE LEFT(meta_key, %%s) = CAST(%%s AS BINARY)"
                        % (quote_identifier(self.migration.database), quote_identifier(usermeta)),
                        (self.target.prefix, len(self.source.prefix) + 1, len(self.source.prefix), self.source.prefix))

    def _map_addresses(self, mig_conn, work, addresses, network):
        blogs_work = quote_identifier(work[self.source.prefix + "blogs"])
        db = quote_identifier(self.migration.database)
        with mig_conn.cursor() as cur:
            for blog_id, (domain, path) in sorted(addresses.items()):
                cur.execute("UPDATE %s.%s SET domain = %%s, path = %%s WHERE blog_id = %%s" % (db, blogs_work),
                            (domain, path, blog_id))
            site_table = self.source.prefix + "site"
            if site_table in work:
                cur.execute("SELECT id, domain, path FROM %s.%s" % (db, quote_identifier(work[site_table])))
                for site_id, domain, path in cur.fetchall():
                    new_domain, new_path = map_site_address(domain, path, self.source.addressing,
                                                            self.target.addressing, network)
                    cur.execute("UPDATE %s.%s SET domain = %%s, path = %%s WHERE id = %%s"
                                % (db, quote_identifier(work[site_table])), (new_domain, new_path, site_id))
            signups_table = self.source.prefix + "signups"
            if signups_table in work:
                # A pending signup activates a site at its domain/path: it must be the target's address.
                signups = quote_identifier(work[signups_table])
                cur.execute("SELECT signup_id, domain, path FROM %s.%s WHERE domain <> ''" % (db, signups))
                moved = []
                for signup_id, domain, path in cur.fetchall():
                    try:
                        moved.append(map_site_address(domain, path, self.source.addressing, self.target.addressing,
                                                      network) + (signup_id,))
                    except ConfigError:
                        continue  # an address outside the network's hosts is not ours to move
                cur.executemany("UPDATE %s.%s SET domain = %%s, path = %%s WHERE signup_id = %%s" % (db, signups), moved)


def _site_summaries(blogs):
    return [{"blog_id": b["blog_id"], "domain": b["domain"], "path": b["path"]} for b in blogs]
