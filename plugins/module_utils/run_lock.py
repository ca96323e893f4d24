# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run locks: ``<state_dir>/locks/<name>.lock``, one run at a time per target environment (or migration database).

A lock names its holder: the identity of the run's ansible-playbook process (``processes``: pid, host,
process start time, boot id, pid namespace), the AWX job and workflow job ids when the run gave them,
the migration and when it was taken::

    {"pid": 48121, "host": "ctl01", "start_time": 81234567, "boot_id": "c31a…", "pid_namespace": "pid:[…]",
     "awx_job_id": "77", "migration_id": "dev-to-uat-…", "target_env": "uat", "started": "2026-11-24T02:52:54.990Z"}

What a holder is, seen from the run asking (``liveness``): ``self``, ``alive``, ``dead`` or ``unknown``
(another host or container, or no pid recorded).  Without ``force`` a lock is taken over or removed
only when its holder is this run or provably dead; ``force`` takes over or removes any lock and says
whose it was and whether that holder was alive.  Decisions are serialized by an flock on
``locks/.guard``, which the kernel drops with its process, so the guard itself never goes stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import (
    StateError, create_exclusive, json_bytes, make_private_dir, read_json, remove_stale_temp_files, write_atomic)
from ansible_collections.wfu.multisite.plugins.module_utils.processes import (
    ALIVE, DEAD, UNKNOWN, find_playbook_pid, identity_is_alive, process_identity, same_process)
from ansible_collections.wfu.multisite.plugins.module_utils.state_records import (
    check_env_name, format_time, short_time, utc_now)

SELF = "self"
DAMAGED = "damaged"
FORCE_UNLOCK_COMMAND = "ansible-playbook wfu.multisite.migration_cleanup -e force_unlock=%s -e force=true"

_LIVENESS_TEXT = {
    SELF: "this run",
    ALIVE: "still running",
    DEAD: "gone",
    UNKNOWN: "on another host or container, so it cannot be checked from here",
    DAMAGED: "unknown: the lock file cannot be read",
}


def run_identity(pid=None, awx_job_id=None, awx_workflow_job_id=None):
    """Who a run is: its ansible-playbook process (``pid``, default: the one above us) and its AWX job ids."""
    identity = process_identity(pid or find_playbook_pid())
    if awx_job_id:
        identity["awx_job_id"] = str(awx_job_id)
    if awx_workflow_job_id:
        identity["awx_workflow_job_id"] = str(awx_workflow_job_id)
    return identity


def liveness(recorded, me):
    """``self`` when ``recorded`` is the run ``me``, else ``processes.identity_is_alive`` of it."""
    if same_process(recorded, me):
        return SELF
    return identity_is_alive(recorded)


def describe_holder(holder):
    """``pid 48121 on host ctl01, since 2026-11-24 02:52:54 UTC, AWX job 77`` (the parts that are known)."""
    if holder.get("damaged"):
        return "an unknown run (%s)" % holder.get("error")
    parts = ["pid %s on host %s" % (holder.get("pid"), holder.get("host"))]
    since = holder.get("started") or holder.get("since")
    if since:
        parts.append("since %s UTC" % short_time(since))
    if holder.get("awx_job_id"):
        parts.append("AWX job %s" % holder["awx_job_id"])
    if holder.get("awx_workflow_job_id"):
        parts.append("AWX workflow job %s" % holder["awx_workflow_job_id"])
    return ", ".join(parts)


def describe_lock(lock):
    if lock.get("damaged"):
        return describe_holder(lock)
    return "migration %s (%s)" % (lock.get("migration_id") or "not yet created", describe_holder(lock))


class RunLocks:
    """The run locks under ``<state_dir>/locks``, seen from the run ``me()`` (a callable returning its identity).

    ``warnings`` collects what the task should tell the user (a lock taken over, what a force overrode).
    """

    def __init__(self, state_dir, me, clock=utc_now, warnings=None, locks_dir=None):
        self.state_dir = state_dir
        self.locks_dir = locks_dir or os.path.join(state_dir, "locks")
        self.me = me
        self.clock = clock
        self.warnings = [] if warnings is None else warnings

    def path(self, name):
        return os.path.join(self.locks_dir, "%s.lock" % check_env_name(name, "lock name (target_env)"))

    def read(self, name):
        """The lock of ``name``, None when there is none, or ``{"damaged": True, "error": …}`` when unreadable."""
        path = self.path(name)
        try:
            lock = read_json(path, "lock file")
        except FileNotFoundError:
            return None
        except StateError as exc:
            return {"damaged": True, "error": str(exc)}
        if not isinstance(lock, dict):
            return {"damaged": True, "error": "lock file %s is not a wfu.multisite lock" % path}
        return lock

    def view(self, name):
        """The lock of ``name`` with its holder's ``liveness``, or None (what ``status`` shows)."""
        lock = self.read(name)
        return None if lock is None else self._with_liveness(lock)

    def _with_liveness(self, lock):
        verdict = DAMAGED if lock.get("damaged") else liveness(lock, self.me())
        return dict(lock, liveness=verdict)

    @contextlib.contextmanager
    def _guard(self, check_mode=False):
        """Serialize lock decisions: check-then-take must not interleave between two runs.

        Check mode only reads, and creates nothing (not even the guard).
        """
        if check_mode:
            yield
            return
        make_private_dir(self.state_dir)
        make_private_dir(self.locks_dir)
        fd = os.open(os.path.join(self.locks_dir, ".guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            remove_stale_temp_files(self.locks_dir)
            yield
        finally:
            os.close(fd)

    def lock(self, name, migration_id=None, force=False, check_mode=False):
        """Take the lock ``name`` for this run (see the module docstring for when a held lock is taken over)."""
        path = self.path(name)
        result = {"lock_name": name, "lock_file": path, "already_held": False, "stale_lock_taken_over": False,
                  "forced": False, "previous_holder": None}
        with self._guard(check_mode):
            current = self.read(name)
            if current is not None:
                current = self._with_liveness(current)
                verdict = current["liveness"]
                if verdict == SELF:
                    held = {key: value for key, value in current.items() if key != "liveness"}
                    result["already_held"] = True
                    if migration_id and held.get("migration_id") != migration_id:
                        held["migration_id"] = migration_id
                        if not check_mode:
                            write_atomic(path, json_bytes(held))
                        return dict(result, changed=True, lock=held)
                    return dict(result, changed=False, lock=held)
                if verdict != DEAD and not force:
                    raise self._held_error(name, current, "take it")
                result.update(stale_lock_taken_over=True, forced=verdict != DEAD, previous_holder=current)
                self.warnings.append(self._override_text("Took over", name, current))
                if not check_mode:
                    os.unlink(path)
            lock = dict(self.me(), migration_id=migration_id, target_env=name, started=format_time(self.clock()))
            if not check_mode:
                try:
                    create_exclusive(path, json_bytes(lock))
                except FileExistsError:
                    # Only a writer that ignores the guard gets here; say who won rather than overwrite it.
                    raise self._held_error(name, self._with_liveness(self.read(name) or {}), "take it") from None
            return dict(result, changed=True, lock=lock)

    def unlock(self, name, migration_id=None, force=False, check_mode=False):
        """Remove the lock ``name`` when it is this run's (and ``migration_id``'s, when given) or its holder is
        gone; ``force``: whoever holds it."""
        path = self.path(name)
        result = {"lock_name": name, "lock_file": path, "released": False, "forced": False, "previous_holder": None}
        with self._guard(check_mode):
            current = self.read(name)
            if current is None:
                return dict(result, changed=False)
            current = self._with_liveness(current)
            verdict = current["liveness"]
            if verdict == SELF and migration_id and current.get("migration_id") not in (None, migration_id):
                if not force:
                    raise StateError(
                        "lock '%s' belongs to migration %s of this run, not to %s; it was left in place."
                        % (name, current.get("migration_id"), migration_id), holder=current, lock_file=path)
            elif verdict not in (SELF, DEAD) and not force:
                raise self._held_error(name, current, "remove it")
            forced = force and verdict not in (SELF, DEAD)
            if forced:
                self.warnings.append(self._override_text("Removed", name, current))
            if not check_mode:
                os.unlink(path)
            return dict(result, changed=True, released=True, forced=forced, previous_holder=current)

    def name_migration(self, name, migration_id):
        """create/load: write the migration's id into the lock this run took before it had one."""
        if not os.path.exists(self.path(name)):
            return
        with self._guard():
            lock = self.read(name)
            if (lock is not None and not lock.get("damaged") and lock.get("migration_id") is None
                    and liveness(lock, self.me()) == SELF):
                lock["migration_id"] = migration_id
                write_atomic(self.path(name), json_bytes(lock))

    def release_for_finish(self, name, migration_id, check_mode=False):
        """finish: remove the lock when it is this run's for this migration, or a dead run's for it; True if so."""
        if not os.path.exists(self.path(name)):
            return False
        with self._guard(check_mode):
            lock = self.read(name)
            if lock is None or lock.get("damaged"):
                return False
            verdict = liveness(lock, self.me())
            ours = (verdict == SELF and lock.get("migration_id") in (None, migration_id)) or (
                verdict == DEAD and lock.get("migration_id") == migration_id)
            if ours and not check_mode:
                os.unlink(self.path(name))
            return ours

    def refuse_if_held_by_another_run(self, name):
        """create/load: a live run other than this one holds ``name``; its migration must not be touched."""
        lock = self.read(name)
        if lock is None or lock.get("damaged"):
            return
        if liveness(lock, self.me()) == ALIVE:
            raise StateError("target environment %s is locked by %s, which is still running; wait for it to finish "
                             "or stop it before starting or resuming a migration into %s."
                             % (name, describe_lock(lock), name), holder=lock)

    def _held_error(self, name, current, verb):
        verdict = current.get("liveness")
        path = self.path(name)
        force_hint = "force: true (or `%s`)" % (FORCE_UNLOCK_COMMAND % name)
        if verdict == ALIVE:
            message = ("lock '%s' (target environment %s) is held by %s, which is still running: another run is "
                       "migrating into %s. Nothing was changed. Wait for it to finish or stop it (kill %s); its lock "
                       "goes with it. Only if that run must not go on, %s with %s."
                       % (name, name, describe_lock(current), name, current.get("pid"), verb, force_hint))
        elif verdict == DAMAGED:
            message = ("lock '%s' cannot be read (%s). Nothing was changed. If no run is migrating into %s, %s with "
                       "%s." % (name, current.get("error"), name, verb, force_hint))
        else:
            message = ("lock '%s' (target environment %s) is held by %s, and this host (%s) cannot tell whether that "
                       "run is still going: it is on another host or container. Nothing was changed. If it is over, "
                       "%s with %s." % (name, name, describe_lock(current), self.me().get("host"), verb, force_hint))
        return StateError(message, holder=current, lock_file=path)

    @staticmethod
    def _override_text(done, name, current):
        text = "%s lock '%s' of %s, whose run is %s." % (
            done, name, describe_lock(current), _LIVENESS_TEXT[current["liveness"]])
        if current["liveness"] != DEAD:
            text += " If it still runs, it now runs beside this one."
        return text
