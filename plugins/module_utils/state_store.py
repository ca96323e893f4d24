# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration state store on files: what a migration has done, kept so that it can be resumed.

Layout under the state directory (``wfu_state_dir``, default ``~/.wfuwp/migrations``)::

    index.json                  every migration: id, source_env, target_env, status, started, updated
    <id>/state.json             the whole state (state.json.bak: the version before the last write)
    <id>/options.json           the options the migration runs with (the base of a resume)
    <id>/completed.json         ids of the completed sites, in migration order
    <id>/failed.json            the failed and timed-out sites with error, phase and failure class
    <id>/logs/site-<N>.log      one line per status change of site N (network.log for the network tables)
    locks/<name>.lock           the run locks (``run_lock``)
    <id>/claims/site-<N>.lock   the site claims (``claim``; judged by pid and host: one machine only)

Files are written by ``atomic_files`` (0600, atomic, the previous state kept as state.json.bak); the
records and their validation are ``state_records``; the views returned to tasks are ``state_report``.
``state_db.DatabaseStateStore`` keeps the same records in database tables: it overrides only the methods
that say where state, options, index, logs, locks and claims are kept (``load_state``, ``save_state``,
``_store_new``, ``_entries``, ``paths``...), so the record logic here is the one of both backends.
A state records its *holder*, the run that created or last loaded it (``run_lock.run_identity``), so
that a migration left ``running`` by a run that is gone is shown as ``interrupted``.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import re

from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import (
    StateError, append_line, fsync_dir, json_bytes, make_private_dir, read_json, remove_stale_temp_files,
    write_atomic)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import redact
from ansible_collections.wfu.multisite.plugins.module_utils.processes import ALIVE, same_process
from ansible_collections.wfu.multisite.plugins.module_utils.run_lock import (
    SELF, RunLocks, describe_holder, liveness, run_identity)
from ansible_collections.wfu.multisite.plugins.module_utils.state_records import (
    DONE_STATUSES, FAILED_STATUSES, FINISH_STATUSES, NETWORK_STATUSES, SCHEMA_VERSION, SITE_UPDATE_STATUSES, BadField,
    apply_step, check_env_name, check_state, format_time, new_record, normalize_network_tables, short_time,
    shorten, site_id_of, site_records, utc_now, without_secrets)
from ansible_collections.wfu.multisite.plugins.module_utils.state_report import (
    count_sites, describe_rollback, describe_step, duration_stats, format_report, format_table, list_row, media_totals,
    outcome_lists, progress, summary)

DEFAULT_STATE_DIR = "~/.wfuwp/migrations"
MIGRATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def _no_next_step(_path):
    return ""


def _ended_sites(state):
    counters = count_sites(state)
    return counters["completed"] + counters["failed"] + counters["timeout"]


def index_entry(state):
    return {key: state.get(key) for key in ("id", "source_env", "target_env", "status", "started", "updated")}


class StateStore:
    """All migrations under one state directory.

    The run using the store is ``holder_pid`` (default: the ansible-playbook process above us) with the
    AWX job ids given; ``clock`` returns the current UTC time (tests pin it).  ``locks`` are the run
    locks of the same directory; ``warnings`` collects what the task should tell the user.
    """

    def __init__(self, state_dir, holder_pid=None, clock=utc_now, awx_job_id=None, awx_workflow_job_id=None):
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir))
        self.clock = clock
        self.warnings = []
        self._identity_args = (holder_pid, awx_job_id, awx_workflow_job_id)
        self._me = None
        self.locks = RunLocks(self.state_dir, self.me, clock=clock, warnings=self.warnings)

    def me(self):
        """The identity of the run using this store (computed once, when first needed)."""
        if self._me is None:
            self._me = run_identity(*self._identity_args)
        return self._me

    def now(self):
        return format_time(self.clock())

    # paths

    def migration_dir(self, migration_id):
        if not isinstance(migration_id, str) or not MIGRATION_ID_RE.match(migration_id):
            raise StateError("invalid migration id %r" % (migration_id,))
        return os.path.join(self.state_dir, migration_id)

    def paths(self, migration_id):
        directory = self.migration_dir(migration_id)
        return {
            "dir": directory,
            "state": os.path.join(directory, "state.json"),
            "options": os.path.join(directory, "options.json"),
            "completed": os.path.join(directory, "completed.json"),
            "failed": os.path.join(directory, "failed.json"),
            "logs": os.path.join(directory, "logs"),
            "index": self.index_path,
        }

    @property
    def index_path(self):
        return os.path.join(self.state_dir, "index.json")

    # reading and writing one migration

    def load_state(self, migration_id):
        """The state of one migration, checked to be ours, of a schema we read, and of the contract's shape."""
        path = self.paths(migration_id)["state"]
        if not os.path.exists(path):
            if os.path.isdir(self.paths(migration_id)["dir"]):
                raise self._missing_state_error(migration_id, path)
            raise self._unknown_migration(migration_id)
        return self._read_state(path, migration_id, self._next_step)

    def _read_state(self, path, migration_id, next_step):
        """Parse and check the state file ``path``; ``next_step(path)`` ends the messages a restore could answer."""
        state = read_json(path, "migration state", advice=next_step)
        return self._checked_state(state, path, migration_id, next_step)

    @staticmethod
    def _checked_state(state, path, migration_id, next_step):
        """``state`` as read from ``path`` (a file, or a row for the database backend), checked as load_state says."""
        if not isinstance(state, dict) or "schema_version" not in state:
            raise StateError("%s is not a wfu.multisite migration state (it has no schema_version). Nothing was "
                             "changed; move the file away if it does not belong here." % path, path=path)
        version = state["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StateError(("%s has an invalid schema_version %r. %s" % (path, version, next_step(path))).rstrip(),
                             path=path)
        if version > SCHEMA_VERSION:
            raise StateError("%s was written by a newer wfu.multisite (state schema %d; this one reads up to %d). "
                             "Nothing was changed; upgrade the collection to resume it." % (path, version, SCHEMA_VERSION),
                             path=path)
        if state.get("id") != migration_id:
            raise StateError("%s holds migration %r, not %r: was it copied from another migration's directory? "
                             "Nothing was changed." % (path, state.get("id"), migration_id), path=path)
        try:
            check_state(state)
        except BadField as bad:
            raise StateError(("%s: %s: %s. %s" % (path, bad.where(), bad.problem, next_step(path))).rstrip(),
                             path=path, site_id=bad.site, field=bad.field) from None
        return state

    def _next_step(self, path):
        """After a damaged ``path``: restore its .bak when that one is intact, else repair by hand."""
        backup = path + ".bak"
        if not os.path.exists(backup):
            return ("Nothing was changed. There is no %s to restore from; repair the file by hand or start a new "
                    "migration." % backup)
        try:
            previous = self._read_state(backup, os.path.basename(os.path.dirname(path)), _no_next_step)
        except StateError as exc:
            return ("Nothing was changed. %s cannot replace it (%s); repair the file by hand or start a new "
                    "migration." % (backup, str(exc).rstrip(".")))
        return ("Nothing was changed. The version before the last write, %s (the state as of %s UTC), is intact: "
                "check it with `python3 -m json.tool %s` and restore it with `cp -p %s %s`."
                % (backup, short_time(previous.get("updated")), backup, backup, path))

    def _missing_state_error(self, migration_id, path):
        backup = path + ".bak"
        if not os.path.exists(backup):
            return StateError("migration %s has a directory in %s but no state.json and no state.json.bak: its "
                              "state is lost. Nothing was changed; move the directory away and start a new migration."
                              % (migration_id, self.state_dir), path=path)
        try:
            previous = self._read_state(backup, migration_id, _no_next_step)
        except StateError as exc:
            return StateError("migration %s has no state.json (%s is missing), and %s cannot replace it: %s"
                              % (migration_id, path, backup, exc), path=path, backup=backup)
        return StateError("migration %s has no state.json (%s is missing), but its state.json.bak, the state as of "
                          "%s UTC, is intact. Nothing was changed. Restore it with `cp -p %s %s`, then run again."
                          % (migration_id, path, short_time(previous.get("updated")), backup, path),
                          path=path, backup=backup)

    def _unknown_migration(self, migration_id):
        known = [entry["id"] for entry in self._entries()]
        nearest = difflib.get_close_matches(migration_id, known, n=5, cutoff=0.5) or known[-5:]
        if nearest:
            hint = "; the nearest: %s" % ", ".join(nearest)
        else:
            hint = "; there are no migrations there yet"
        return StateError("no migration %r in %s%s" % (migration_id, self.location(), hint), candidates=nearest)

    def save_state(self, state, outcomes_changed=False, logs=()):
        """Write the state and what is derived from it, then append ``logs`` (``(log name, line)`` pairs).

        completed.json and failed.json are rewritten only when ``outcomes_changed`` (a site moved into
        or out of completed/failed/timeout/skipped) or when they are missing.
        """
        paths = self.paths(state["id"])
        state["updated"] = self.now()
        state["counters"] = count_sites(state)
        write_atomic(paths["state"], render_state(state), keep_backup=True, sync_dir=False)
        if outcomes_changed or not os.path.exists(paths["failed"]):
            completed, failed = outcome_lists(state)
            write_atomic(paths["completed"], json_bytes(completed), sync_dir=False)
            write_atomic(paths["failed"], json_bytes(failed), sync_dir=False)
        fsync_dir(paths["dir"])
        self._update_index(state)
        for name, line in logs:
            append_line(os.path.join(paths["logs"], name + ".log"), line)

    def _resolve_id(self, migration_id, source_env=None, target_env=None, resumable_only=True):
        """An explicit id as given; 'latest' as the newest matching migration (not completed, when resumable_only)."""
        if migration_id != "latest":
            return migration_id
        entries = [entry for entry in self._entries()
                   if (source_env is None or entry.get("source_env") == source_env)
                   and (target_env is None or entry.get("target_env") == target_env)]
        for entry in sorted(entries, key=lambda item: item.get("started") or "", reverse=True):
            if not resumable_only:
                return entry["id"]
            # The index may lag a write cut short by a kill; the state itself decides.
            if self.load_state(entry["id"])["status"] != "completed":
                return entry["id"]
        pair = " for %s -> %s" % (source_env or "any", target_env or "any") if (source_env or target_env) else ""
        if not entries:
            raise StateError("no migrations%s in %s" % (pair, self.location()))
        newest = ", ".join(entry["id"] for entry in entries[-5:])
        raise StateError("nothing to resume%s in %s: every migration there is completed (%s). Start a new one with "
                         "-e source_env=... -e target_env=..." % (pair, self.location(), newest))

    def _holder_view(self, state):
        """The state's recorded holder with its liveness seen from this run, or None when none is recorded."""
        holder = state.get("holder")
        if not isinstance(holder, dict):
            return None
        return dict(holder, liveness=liveness(holder, self.me()))

    def summary(self, state):
        """The compact view returned to the playbook as ``migration``."""
        return summary(state, self.paths(state["id"]), self.location(), self.clock(), self._holder_view(state))

    # the index

    @contextlib.contextmanager
    def _index_guard(self):
        """Serialize read-modify-write of index.json between runs into different targets."""
        make_private_dir(self.state_dir)
        fd = os.open(os.path.join(self.state_dir, ".index.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_index(self):
        if not os.path.exists(self.index_path):
            return []
        try:
            index = read_json(self.index_path, "migration index")
            if not isinstance(index, dict) or not isinstance(index.get("migrations"), list):
                raise StateError("%s is not a wfu.multisite migration index" % self.index_path)
            version = index.get("schema_version")
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise StateError("%s has schema_version %r, not one this collection writes" % (self.index_path, version))
        except StateError as exc:
            # The index only repeats what the state files say; rebuild it from them rather than stop.
            self.warnings.append("%s; rebuilding the index from the migrations' state files." % exc)
            return []
        return [entry for entry in index["migrations"] if isinstance(entry, dict) and "id" in entry]

    def _entries(self):
        """Index entries, plus migrations whose directory exists but which the index missed."""
        entries = {entry["id"]: entry for entry in self._read_index()}
        if os.path.isdir(self.state_dir):
            for name in sorted(os.listdir(self.state_dir)):
                if name in entries or not MIGRATION_ID_RE.match(name):
                    continue
                state_path = os.path.join(self.state_dir, name, "state.json")
                if os.path.exists(state_path) or os.path.exists(state_path + ".bak"):
                    entries[name] = self._entry_from_file(name)
        return sorted(entries.values(), key=lambda item: (item.get("started") or "", item["id"]))

    def _entry_from_file(self, migration_id):
        try:
            return index_entry(self.load_state(migration_id))
        except StateError:
            return {"id": migration_id, "source_env": None, "target_env": None, "status": None,
                    "started": None, "updated": None}

    def _update_index(self, state):
        with self._index_guard():
            entries = {entry["id"]: entry for entry in self._read_index()}
            if state["id"] not in entries:
                entries = {entry["id"]: entry for entry in self._entries()}
            entries[state["id"]] = index_entry(state)
            ordered = sorted(entries.values(), key=lambda item: (item.get("started") or "", item["id"]))
            write_atomic(self.index_path, json_bytes({"schema_version": SCHEMA_VERSION, "migrations": ordered}))

    # actions

    def create(self, source_env, target_env, options=None, sites=None, site_info=None, network_tables=None,
               check_mode=False):
        """Start a migration (status running, every site pending), held by this run."""
        check_env_name(source_env, "source_env")
        check_env_name(target_env, "target_env")
        if source_env == target_env:
            raise StateError("source_env and target_env are both %r: a migration needs two environments" % source_env)
        self.locks.refuse_if_held_by_another_run(target_env)
        saved_options = without_secrets(dict(options or {}))
        mode = normalize_network_tables(saved_options.get("network_tables") if network_tables is None else network_tables)
        saved_options["network_tables"] = mode
        records, order = site_records(sites, site_info)
        now = self.clock()
        base_id = "%s-to-%s-%s" % (source_env, target_env, now.strftime("%Y-%m-%dT%H-%M-%S"))
        state = {
            "schema_version": SCHEMA_VERSION,
            "id": base_id,
            "source_env": source_env,
            "target_env": target_env,
            "status": "running",
            "reason": None,
            "started": format_time(now),
            "updated": format_time(now),
            "finished": None,
            "holder": dict(self.me(), since=format_time(now)),
            "options": saved_options,
            "network_tables": new_record("pending" if mode else "skipped"),
            "consecutive_failures": 0,
            "stopping": None,
            "counters": {},
            "resumes": [],
            "site_order": order,
            "sites": records,
        }
        state["counters"] = count_sites(state)
        if check_mode:
            state["id"] = self._free_id(base_id)
        else:
            self._store_new(state, base_id)
            self.locks.name_migration(target_env, state["id"])
        return {"changed": True, "created": True, "migration": self.summary(state)}

    def _store_new(self, state, base_id):
        """Write a new migration under a free id made from ``base_id`` (set in ``state``)."""
        make_private_dir(self.state_dir)
        state["id"] = self._claim_id(base_id)
        paths = self.paths(state["id"])
        make_private_dir(paths["logs"])
        write_atomic(paths["options"], json_bytes(state["options"]))
        self.save_state(state)

    def _write_options(self, migration_id, options):
        write_atomic(self.paths(migration_id)["options"], json_bytes(options))

    def _tidy(self, migration_id):
        """What a writer killed mid-write left (temporary files)."""
        remove_stale_temp_files(self.paths(migration_id)["dir"])
        remove_stale_temp_files(self.state_dir)

    def _free_id(self, base_id):
        candidate, number = base_id, 1
        while os.path.exists(os.path.join(self.state_dir, candidate)):
            number += 1
            candidate = "%s-%d" % (base_id, number)
        return candidate

    def _claim_id(self, base_id):
        """Create the migration's directory; mkdir is atomic, so two runs never get one id."""
        number = 1
        while True:
            candidate = base_id if number == 1 else "%s-%d" % (base_id, number)
            try:
                os.mkdir(os.path.join(self.state_dir, candidate), 0o700)
                return candidate
            except FileExistsError:
                number += 1

    def load(self, migration_id, source_env=None, target_env=None, options=None, force=False, check_mode=False):
        """Resume a migration: saved options overlaid with ``options``, in_progress sites back to pending,
        this run recorded as its holder."""
        migration_id = self._resolve_id(migration_id, source_env, target_env)
        state = self.load_state(migration_id)
        for given, key in ((source_env, "source_env"), (target_env, "target_env")):
            if given is not None and given != state[key]:
                raise StateError("migration %s migrates %s -> %s, not %s -> %s"
                                 % (migration_id, state["source_env"], state["target_env"],
                                    source_env or state["source_env"], target_env or state["target_env"]))
        self.locks.refuse_if_held_by_another_run(state["target_env"])
        if not force:
            self._refuse_if_run_by_another(state)
        if state["status"] == "completed":
            # Nothing is left to do; loading it again must change nothing (a second run is a no-op).
            if not check_mode:
                self.locks.name_migration(state["target_env"], migration_id)
            return {"changed": False, "migration": self.summary(state), "interrupted": [],
                    "network_interrupted": False, "options_overridden": []}
        before = json.loads(json.dumps(state))
        overrides = {key: value for key, value in without_secrets(options or {}).items() if value is not None}
        if "network_tables" in overrides:
            overrides["network_tables"] = normalize_network_tables(overrides["network_tables"])
        overridden = {key: value for key, value in overrides.items() if state["options"].get(key) != value}
        interrupted = [site_id for site_id in state["site_order"]
                       if state["sites"][str(site_id)]["status"] == "in_progress"]
        network_interrupted = state["network_tables"].get("status") == "in_progress"
        state.update(status="running", reason=None, finished=None)
        if not isinstance(state.get("holder"), dict) or not same_process(state["holder"], self.me()):
            state["holder"] = dict(self.me(), since=self.now())
        state["options"].update(overridden)
        for site_id in interrupted:
            state["sites"][str(site_id)].update(
                status="pending", finished=None, duration=None,
                error="interrupted: still in progress when the run stopped; cleaned and redone on resume")
        if network_interrupted:
            state["network_tables"].update(status="pending", error="interrupted: still in progress when the run stopped")
        state["consecutive_failures"] = 0
        # A resume starts afresh: the stop of the run before it and its health check are over.
        state["stopping"] = None
        state.pop("health_check", None)
        # Periodic checks count the sites this run ends, from here.
        state["periodic_check_at"] = _ended_sites(state)
        changed = state != before
        if not check_mode:
            self._tidy(migration_id)
        if changed:
            state.setdefault("resumes", []).append({"at": self.now(), "holder": state["holder"],
                                                    "interrupted": interrupted, "options_overridden": overridden})
            if not check_mode:
                if overridden:
                    self._write_options(migration_id, state["options"])
                self.save_state(state, logs=[
                    self._site_log(state, site_id, "interrupted: found in_progress at resume; set back to pending")
                    for site_id in interrupted])
        if not check_mode:
            self.locks.name_migration(state["target_env"], migration_id)
        return {"changed": changed, "migration": self.summary(state), "interrupted": interrupted,
                "network_interrupted": network_interrupted, "options_overridden": sorted(overridden)}

    def _refuse_if_run_by_another(self, state):
        holder = self._holder_view(state)
        if state["status"] == "running" and holder is not None and holder["liveness"] == ALIVE:
            raise StateError("migration %s is being run by %s, which is still running. Nothing was changed; wait for "
                             "that run to finish or stop it, then resume." % (state["id"], describe_holder(holder)),
                             holder=holder)

    def mark_site(self, migration_id, site_id, status, error=None, phase=None, failure_class=None, details=None,
                  phase_done=None, check_mode=False):
        with self.writing(migration_id):
            return self._mark_site(migration_id, site_id, status, error, phase, failure_class, details, phase_done,
                                   check_mode)

    def _mark_site(self, migration_id, site_id, status, error, phase, failure_class, details, phase_done, check_mode):
        if status not in SITE_UPDATE_STATUSES:
            raise StateError("a site's status can be set to %s, not %r" % (", ".join(SITE_UPDATE_STATUSES), status))
        state = self.load_state(migration_id)
        site_id = site_id_of(site_id)
        key = str(site_id)
        if key not in state["sites"]:
            raise StateError("site %s is not part of migration %s (%d sites, fixed when it was created)"
                             % (key, migration_id, len(state["sites"])))
        record = state["sites"][key]
        outcomes_changed = record["status"] in DONE_STATUSES or status in DONE_STATUSES
        apply_step(record, status, self.now(), error=error, phase=phase, failure_class=failure_class, details=details,
                   phase_done=phase_done)
        if status == "completed":
            state["consecutive_failures"] = 0
        elif status in FAILED_STATUSES:
            state["consecutive_failures"] += 1
        state["counters"] = count_sites(state)
        if not check_mode:
            self.save_state(state, outcomes_changed, logs=[self._site_log(state, site_id, describe_step(record))])
        return {"changed": True, "migration_id": migration_id, "site_id": site_id, "site": dict(record, id=site_id),
                "counters": state["counters"], "consecutive_failures": state["consecutive_failures"],
                "progress": progress(state, state["counters"], self.clock()),
                "log_file": self.log_location(migration_id, "site-%s" % key)}

    def mark_network(self, migration_id, status, error=None, phase=None, failure_class=None, details=None,
                     check_mode=False):
        if status not in NETWORK_STATUSES:
            raise StateError("the network tables' status can be %s, not %r" % (", ".join(NETWORK_STATUSES), status))
        state = self.load_state(migration_id)
        before = json.loads(json.dumps(state))
        record = state["network_tables"]
        if status == "pending":
            record.update(status="pending", error=None)
        else:
            apply_step(record, status, self.now(), error=error, phase=phase, failure_class=failure_class,
                       details=details)
        changed = state != before
        if changed and not check_mode:
            self.save_state(state, logs=[("network", "%s network tables %s\n" % (self.now(), describe_step(record)))])
        return {"changed": changed, "migration_id": migration_id, "network_tables": record}

    def record_rollback(self, migration_id, sites=(), network_tables=False, failed_sites=(), error=None,
                        check_mode=False):
        """Record a rollback of ``migration_id`` (``wfu.multisite.migration_rollback``) in its state.

        ``sites`` were put back (and ``network_tables`` when true), ``failed_sites`` were not (``error`` says why).
        The sites' records keep their status; each one put back gets ``rolled_back`` (the time).  Appended to
        ``rollbacks`` and to ``logs/rollback.log``.
        """
        state = self.load_state(migration_id)
        unknown = sorted(set(int(site_id) for site_id in list(sites) + list(failed_sites))
                         - set(state["site_order"]))
        if unknown:
            raise StateError("site(s) %s are not part of migration %s" % (", ".join(map(str, unknown)), migration_id))
        now = self.now()
        entry = {"at": now, "holder": self.me(), "sites": [int(site_id) for site_id in sites],
                 "network_tables": bool(network_tables), "failed_sites": [int(site_id) for site_id in failed_sites],
                 "error": shorten(redact(error)) if error else None}
        state.setdefault("rollbacks", []).append(entry)
        for site_id in entry["sites"]:
            state["sites"][str(site_id)]["rolled_back"] = now
        if network_tables:
            state["network_tables"]["rolled_back"] = now
        if not check_mode:
            self.save_state(state, logs=[("rollback", "%s rolled back: %s\n"
                                          % (now, describe_rollback(entry, with_error=True)))])
        return {"changed": True, "migration_id": migration_id, "rollback": entry,
                "rollbacks": len(state["rollbacks"])}

    def finish(self, migration_id, status, reason=None, check_mode=False):
        if status not in FINISH_STATUSES:
            raise StateError("a migration finishes as %s, not %r" % (", ".join(FINISH_STATUSES), status))
        state = self.load_state(migration_id)
        before = json.loads(json.dumps(state))
        state["status"] = status
        state["reason"] = redact(reason)
        if state != before:
            state["finished"] = self.now()
        changed = state != before
        if changed and not check_mode:
            self.save_state(state)
        released = self.locks.release_for_finish(state["target_env"], migration_id, check_mode)
        return {"changed": changed or released, "lock_released": released, "migration": self.summary(state)}

    def list_migrations(self):
        """Every migration, oldest first; a running one whose run is gone is shown as interrupted."""
        rows = []
        for entry in self._entries():
            try:
                state = self.load_state(entry["id"])
            except StateError as exc:
                rows.append(list_row(entry, error=str(exc)))
            else:
                holder = self._holder_view(state)
                rows.append(list_row(index_entry(state), state, liveness=holder and holder["liveness"]))
        return {"changed": False, "migrations": rows, "table": format_table(rows), "state_dir": self.location()}

    def status(self, migration_id="latest", source_env=None, target_env=None):
        """One migration in detail; 'latest' here is the newest migration whatever its status."""
        migration_id = self._resolve_id(migration_id or "latest", source_env, target_env, resumable_only=False)
        state = self.load_state(migration_id)
        migration = self.summary(state)
        failed_sites = [dict(state["sites"][str(site_id)], id=site_id) for site_id in state["site_order"]
                        if state["sites"][str(site_id)]["status"] in FAILED_STATUSES]
        durations = duration_stats(state)
        media = media_totals(state)
        return {"changed": False, "migration": migration, "failed_sites": failed_sites, "durations": durations,
                "media": media, "lock": self.locks.view(state["target_env"]),
                "resume_command": migration["resume_command"],
                "report": format_report(migration, failed_sites, durations, media)}

    # the run's stop and its health check, shared by every worker of the run

    @contextlib.contextmanager
    def writing(self, migration_id):
        """Serialize read-modify-write of one migration's state between the workers of a run (an flock on files)."""
        directory = self.migration_dir(migration_id)
        if not os.path.isdir(directory):
            yield
            return
        fd = os.open(os.path.join(directory, ".state.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def record_stop(self, migration_id, status, reason, check_mode=False):
        """Record that the run is stopping (``status``: aborted, paused or failed; ``reason``): from then on no worker
        claims a new site, and the sites in flight finish.  The first stop recorded stands; returns it."""
        with self.writing(migration_id):
            state = self.load_state(migration_id)
            if not state.get("stopping"):
                state["stopping"] = {"status": status, "reason": redact(reason), "at": self.now(), "by": self.me()}
                if not check_mode:
                    self.save_state(state)
            return state["stopping"]

    def begin_health_check(self, migration_id, trigger, check_mode=False):
        """``run`` when this worker is to run the health check ``trigger`` asks for, ``wait`` when another live worker
        of the run is running one (its verdict is for every worker), ``stop`` when the run is stopping already."""
        with self.writing(migration_id):
            state = self.load_state(migration_id)
            if state.get("stopping"):
                return "stop"
            current = state.get("health_check") or {}
            if current.get("status") == "running" and self._checker_alive(current.get("by") or {}):
                return "wait"
            state["health_check"] = {"status": "running", "trigger": trigger, "started": self.now(), "by": self.me(),
                                     "decision": None}
            if not check_mode:
                self.save_state(state)
            return "run"

    def take_periodic_check(self, migration_id, is_due, check_mode=False):
        """True for the one worker that is to test every database before its site: when ``is_due(ended, last)`` says
        so for the sites of the migration that have ended (completed, failed or timed out, whichever worker ended
        them) and their count at the last periodic check, which this records."""
        with self.writing(migration_id):
            state = self.load_state(migration_id)
            ended = _ended_sites(state)
            due = is_due(ended, state.get("periodic_check_at") or 0)
            if due and not check_mode:
                state["periodic_check_at"] = ended
                self.save_state(state)
            return due

    def end_health_check(self, migration_id, decision, check_mode=False):
        """Record the verdict of this worker's health check (and the stop it decides) for the waiting workers."""
        with self.writing(migration_id):
            state = self.load_state(migration_id)
            state["health_check"] = dict(state.get("health_check") or {}, status="done", finished=self.now(),
                                         decision=decision)
            if decision.get("stop") and not state.get("stopping"):
                state["stopping"] = {"status": decision.get("status"), "reason": redact(decision.get("reason")),
                                     "at": self.now(), "by": self.me()}
            if not check_mode:
                self.save_state(state)
            return state.get("stopping")

    def _checker_alive(self, holder):
        return liveness(holder, self.me()) in (ALIVE, SELF)

    # site claims

    def claim(self, migration_id, site_id, force=False, check_mode=False):
        """Claim ``site_id`` of a migration for this run; ``claimed`` in the result says whether this run won.

        A claim held by a live run is refused (``claim_refused`` names it); one whose run is gone is taken over
        (``dead_holder``: the site must be cleaned and redone).  On files a claim is a lock file under
        ``<id>/claims`` judged by pid and host: it holds between processes of one machine only.
        """
        site_id = self._site_of(migration_id, site_id)
        return self._take_claim(migration_id, site_id, force, check_mode)

    def release(self, migration_id, site_id, force=False, check_mode=False):
        """Release this run's claim of a site (or a gone run's; anyone's with ``force``)."""
        site_id = self._site_of(migration_id, site_id)
        return self._release_claim(migration_id, site_id, force, check_mode)

    def _site_of(self, migration_id, site_id):
        state = self.load_state(migration_id)
        site_id = site_id_of(site_id)
        if str(site_id) not in state["sites"]:
            raise StateError("site %d is not part of migration %s" % (site_id, migration_id))
        return site_id

    def _claim_locks(self, migration_id):
        directory = self.migration_dir(migration_id)
        return RunLocks(directory, self.me, clock=self.clock, warnings=self.warnings,
                        locks_dir=os.path.join(directory, "claims"))

    def _take_claim(self, migration_id, site_id, force, check_mode):
        try:
            taken = self._claim_locks(migration_id).lock("site-%d" % site_id, migration_id=migration_id, force=force,
                                                         check_mode=check_mode)
        except StateError as exc:
            return claim_result(migration_id, site_id, "refused", exc.details.get("holder") or {}, None)
        outcome = "held" if taken["already_held"] else "taken" if taken["stale_lock_taken_over"] else "new"
        return claim_result(migration_id, site_id, outcome, taken["previous_holder"], taken["lock"])

    def _release_claim(self, migration_id, site_id, force, check_mode):
        released = self._claim_locks(migration_id).unlock("site-%d" % site_id, force=force, check_mode=check_mode)
        return {"changed": released["changed"], "released": released["released"], "site_id": site_id,
                "migration_id": migration_id, "previous_holder": released["previous_holder"]}

    def claims_view(self, migration_id):
        """Every claim of a migration with its holder's liveness, by site id."""
        claims = self._claim_locks(migration_id)
        out = {}
        if os.path.isdir(claims.locks_dir):
            for name in sorted(os.listdir(claims.locks_dir)):
                if name.startswith("site-") and name.endswith(".lock"):
                    out[name[5:-5]] = claims.view(name[:-5])
        return out

    def live_workers(self, migration_id):
        """What other live runs are doing on this migration, one line each (empty when nothing)."""
        return ["site %s is being migrated by %s" % (site_id, describe_holder(claim))
                for site_id, claim in sorted(self.claims_view(migration_id).items(), key=lambda item: int(item[0]))
                if claim and claim.get("liveness") == ALIVE]

    def check_reachable(self):
        """validate: nothing to reach for files (the directory is made when first written)."""

    def read_log(self, migration_id, name):
        """The lines of one log, oldest first, as one text ("" when there is none)."""
        try:
            with open(self.log_location(migration_id, name), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def close(self):
        """Nothing to close for files."""

    # site logs

    def _site_log(self, state, site_id, text):
        """The ``(log name, line)`` of a status change of one site, for save_state."""
        return "site-%d" % site_id, "%s migration=%s site=%d %s\n" % (self.now(), state["id"], site_id, text)

    def log_location(self, migration_id, name):
        """Where the log ``name`` (``site-<N>``, ``network``, ``rollback``) of a migration is kept."""
        return os.path.join(self.paths(migration_id)["logs"], name + ".log")

    def location(self):
        """Where this store keeps the states (the state directory)."""
        return self.state_dir


LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def claim_result(migration_id, site_id, outcome, current, holder):
    """The task result of a claim (both backends): ``outcome`` is new, held, taken or refused."""
    current = current or {}
    result = {"migration_id": migration_id, "site_id": site_id, "claimed": outcome != "refused",
              "changed": outcome in ("new", "taken"), "already_held": outcome == "held",
              "holder": holder if outcome != "refused" else current,
              "previous_holder": current if outcome == "taken" else None,
              "dead_holder": outcome == "taken" and current.get("liveness") == "dead"}
    if outcome == "refused":
        result["claim_refused"] = ("site %d of migration %s is claimed by %s, which is %s; this run leaves it to "
                                   "that one." % (site_id, migration_id, describe_holder(current),
                                                  "still running" if current.get("liveness") == ALIVE
                                                  else "not provably gone"))
    elif result["dead_holder"]:
        result["claim_note"] = ("site %d of migration %s was claimed by %s, which is gone: clean the site's "
                                "leftovers and redo it." % (site_id, migration_id, describe_holder(current)))
    return result


def render_state(state):
    """state.json text: one line per top-level key and one line per site, readable and grep-able."""
    encode = LINE_ENCODER.encode
    lines = ["  %s: %s" % (encode(key), encode(value)) for key, value in state.items() if key != "sites"]
    # Site keys are digit strings (check_state refuses others), so they need no encoding.
    site_lines = ['    "%s": %s' % (site_key, encode(record)) for site_key, record in state["sites"].items()]
    if site_lines:
        lines.append('  "sites": {\n' + ",\n".join(site_lines) + "\n  }")
    else:
        lines.append('  "sites": {}')
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode("utf-8")
