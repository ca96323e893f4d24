# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run-policy actions of ``wfu_migration_state``: validate, plan, decide, conclude, and a worker's claim.

They are how the env_migrate role asks the run policy (``run_policy``) and the option checks
(``run_options``) instead of deciding in Jinja.  Each takes the state store and the task's parameters and
returns the task result.  What the policy decides for the whole run is written to the shared state, so that
every worker of the run (forks, AWX slices) follows it: the stop (``record_stop``; no worker claims a new site
after it), the health check one worker runs while the others wait for its verdict, and ``conclude``.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.wfu.multisite.plugins.module_utils import run_policy
from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import StateError
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, resolve
from ansible_collections.wfu.multisite.plugins.module_utils.run_options import (
    RUN_FILTERS, check_run, effective_options, media_wanted, normalize_options)

# Options of wfu_migration_state that only these actions read.
ARGUMENT_SPEC = dict(
    environments=dict(type="dict", no_log=True),
    migration_db=dict(type="dict", no_log=True),
    filters=dict(type="dict"),
    check_paths=dict(type="bool", default=True),
    purpose=dict(type="str", choices=["run", "cleanup"], default="run"),
    migration=dict(type="dict"),
    health=dict(type="dict"),
    trigger=dict(type="str", choices=["systemic", "timeout", "consecutive", "periodic", "start"]),
    last_error=dict(type="str"),
    answer=dict(type="str"),
    interactive=dict(type="bool"),
    stop_status=dict(type="str", choices=["aborted", "paused", "failed"]),
    conclude_wait=dict(type="int", default=60),
)

REQUIRED_IF = [
    ("action", "plan", ("migration_id",)),
    ("action", "decide", ("migration_id", "health", "trigger")),
    ("action", "conclude", ("migration_id",)),
]


def validate(store, params, check_mode=False):
    """Check the run's settings and options; on resume, find the migration and check it can go on.

    Nothing is locked, created or written: a bad setting leaves nothing behind.
    """
    del check_mode
    given = dict(params.get("options") or {})
    if not params.get("check_paths", True):
        for name in ("backup_dir", "work_dir"):
            given.pop(name, None)
    resume = params.get("migration_id")
    source_env, target_env = params.get("source_env"), params.get("target_env")
    migration = None
    if params.get("purpose") == "cleanup":
        check_run(params.get("environments"), params.get("migration_db"), None, target_env, {})
        return {"changed": False, "target_env": target_env,
                "migration_lock": migration_db_lock_name(params["migration_db"])}
    if resume:
        migration = store.status(resume, source_env=source_env, target_env=target_env)["migration"]
        if resume == "latest" and migration.get("status") == "completed":
            raise ConfigError("nothing to resume: the newest migration%s, %s, is completed; list them with "
                              "ansible-playbook wfu.multisite.migration_list"
                              % (_pair_text(source_env, target_env), migration["id"]))
        source_env, target_env = migration["source_env"], migration["target_env"]
    elif not (source_env and target_env):
        raise ConfigError("give source_env and target_env for a new migration (-e source_env=dev -e target_env=uat), "
                          "or resume=<migration id> / resume=latest to continue one")
    options = check_run(params.get("environments"), params.get("migration_db"), source_env, target_env, given)
    filters = {name: options.pop(name) for name in RUN_FILTERS if name in options} if resume else {}
    saved = migration["options"] if migration else {}
    effective = effective_options(saved, options)
    if effective.get("backup_s3") and not (effective.get("backup_dir") or (params.get("options") or {}).get("backup_dir")):
        raise ConfigError("backup_s3 needs backup_dir: each backup is written there first, then uploaded; give "
                          "-e backup_dir=<directory> too")
    return {
        "changed": False,
        "new": not resume,
        "migration_id": migration["id"] if migration else None,
        "source_env": source_env,
        "target_env": target_env,
        "options": options,
        "filters": filters,
        "effective": effective,
        # Whether each site's media is synced after its tables (the media option against both environments).
        "media": media_wanted(params.get("environments"), source_env, target_env, effective.get("media", "auto")),
        "interactive": is_interactive(params.get("awx_job_id")),
        "migration_lock": migration_db_lock_name(params["migration_db"]),
    }


def migration_db_lock_name(settings):
    """The name of the run lock of a migration database: runs that share one must not sweep each other's tables."""
    resolved = resolve(settings)
    where = resolved.get("unix_socket") or "%s-%s" % (resolved.get("host"), resolved.get("port"))
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", "migration-db-%s-%s" % (where, resolved.get("database") or ""))
    return name[:64]


def plan(store, params, check_mode=False):
    """The queue of this run (see ``run_policy.plan_run``)."""
    del check_mode
    migration = params.get("migration") or store.status(params["migration_id"])["migration"]
    options = effective_options(migration.get("options"), normalize_options(params.get("options")))
    filters = normalize_options(params.get("filters"))
    try:
        result = run_policy.plan_run(migration, options, filters)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    result.update(changed=False, options=options,
                  check_before=[site_id for index, site_id in enumerate(result["queue"])
                                if run_policy.health_check_due(index, options)])
    return result


# Check mode records nothing, so there are no totals to judge: the run goes on to show what it would do.
CHECK_MODE_DECISION = run_policy.Decision("continue", reason="check mode records no failure").as_dict()


def after_site_failure(store, migration_id, mark_result, status, failure_class):
    """The policy's decision after ``mark_result`` recorded a failed site."""
    migration = store.status(migration_id)["migration"]
    options = effective_options(migration.get("options"))
    snapshot = dict(migration, counters=mark_result.get("counters", migration["counters"]),
                    consecutive_failures=mark_result.get("consecutive_failures", migration["consecutive_failures"]))
    return run_policy.after_failure(snapshot, options, failure_class=failure_class, status=status).as_dict()


def share_decision(store, migration_id, decision, check_mode=False):
    """The decision after a failed site, as it stands for the whole run.

    A stop is recorded in the state (the first one stands; this worker gets the recorded one).  A health check is
    run by one worker: the first that asks runs it; while it runs, the others get ``wait_health`` and follow its
    verdict.
    """
    if decision["stop"]:
        stopping = store.record_stop(migration_id, decision["status"], decision["reason"], check_mode=check_mode)
        return dict(decision, status=stopping["status"], reason=stopping["reason"])
    if decision["action"] != "check_health":
        return decision
    turn = store.begin_health_check(migration_id, decision["trigger"], check_mode=check_mode)
    if turn == "wait":
        return dict(decision, action="wait_health",
                    reason="%s; another worker of this run is checking every database" % decision["reason"])
    if turn == "stop":
        stopping = store.status(migration_id)["migration"]["stopping"] or {}
        return run_policy.Decision("stop", status=stopping.get("status") or "aborted", trigger=decision["trigger"],
                                   reason=stopping.get("reason") or "the run is stopping").as_dict()
    return decision


def check_worker_claim(store, params, result, check_mode=False):
    """A worker's claim (``worker: true``): kept only when the run still wants the site.

    Refused (the claim released again, ``claimed`` false, ``skip_reason`` saying why) once the run is stopping, and
    when the run policy's queue has no place for the site any more (another worker or an earlier job did it).  A
    kept claim carries the site's ``plan`` (its time limit and the parts an earlier attempt did), as ``plan``
    returns it for one site.
    """
    migration_id, site_id = params["migration_id"], result["site_id"]
    migration = store.status(migration_id)["migration"]
    options = effective_options(migration.get("options"))
    stopping = migration.get("stopping")
    planned = run_policy.plan_run(migration, options)
    if stopping:
        reason = "migration %s is stopping (%s): no new site is started" % (
            migration_id, run_policy.sentence(stopping.get("reason") or stopping.get("status")))
    elif site_id not in planned["queue"]:
        status = next((name for name, ids in migration["sites_by_status"].items() if site_id in ids), "unknown")
        reason = "site %d is %s in migration %s: nothing to do for it" % (site_id, status, migration_id)
    else:
        # The periodic checks of the single-command loop, counted over the migration: one worker runs each.
        periodic = bool(run_policy.check_intervals(options)) and store.take_periodic_check(
            migration_id, lambda ended, last: run_policy.periodic_check_due(ended, last, options), check_mode=check_mode)
        result["plan"] = {"queue": [site_id], "limits": {str(site_id): planned["limits"][str(site_id)]},
                          "phases_done": {key: value for key, value in planned["phases_done"].items()
                                          if key == str(site_id)},
                          "check_before": [site_id] if periodic else [], "options": options}
        return result
    if result["changed"] and not check_mode:
        store.release(migration_id, site_id)
    result.update(claimed=False, changed=False, skip_reason=reason, stopping=stopping)
    return result


def decide(store, params, check_mode=False):
    """The decision once every database was tested (see ``run_policy.after_health_check``).

    Except while a prompt waits for its answer, the verdict is recorded for the workers waiting for it, and a stop
    for the whole run.
    """
    migration = store.status(params["migration_id"])["migration"]
    options = effective_options(migration.get("options"))
    interactive = params.get("interactive")
    if interactive is None:
        interactive = is_interactive(params.get("awx_job_id"))
    decision = run_policy.after_health_check(
        params["health"], params["trigger"], options, interactive, last_error=params.get("last_error") or "",
        answer=params.get("answer"), consecutive=migration.get("consecutive_failures") or 0).as_dict()
    if decision["action"] != "ask":
        stopping = store.end_health_check(params["migration_id"], decision, check_mode=check_mode)
        if decision["stop"] and stopping:
            decision.update(status=stopping["status"], reason=stopping["reason"])
    return {"changed": False, "decision": decision}


def conclude(store, params, check_mode=False):
    """Finish the migration with the status the policy gives (the stop's, else from the counters).

    Not while another run still works on it (a site claimed by a live run, another live job that shares the run
    lock): after waiting up to ``conclude_wait`` seconds for them, it refuses and changes nothing.
    """
    wait = params.get("conclude_wait")
    wait = ARGUMENT_SPEC["conclude_wait"]["default"] if wait is None else wait
    if wait < 0:
        raise ConfigError("conclude_wait must be 0 or more seconds, got %d" % wait)
    wait_until = time.monotonic() + wait
    while not check_mode:
        busy = store.live_workers(params["migration_id"])
        if not busy:
            break
        if time.monotonic() >= wait_until:
            raise StateError("migration %s cannot be closed yet: %s. Nothing was closed and its lock stays. Run "
                             "wfu.multisite.env_migrate_finish again once every job working on it has ended (or "
                             "stop them; what they hold goes with them)."
                             % (params["migration_id"], "; ".join(busy)), busy=busy)
        time.sleep(1)
    migration = store.status(params["migration_id"])["migration"]
    # A stop the run policy recorded for the run (any worker's) stands when the task names none.
    stopping = migration.get("stopping") or {}
    stop_status = params.get("stop_status") or stopping.get("status")
    reason = params.get("reason") or (stopping.get("reason") if not params.get("stop_status") else None)
    status = run_policy.final_status(migration, stop_status)
    before = (migration["status"], migration.get("reason") or "")
    result = store.finish(params["migration_id"], status, reason=reason or None, check_mode=check_mode)
    after = result["migration"]
    result["changed"] = (after["status"], after.get("reason") or "") != before
    return result


ACTIONS = {"validate": validate, "plan": plan, "decide": decide, "conclude": conclude}


def is_interactive(awx_job_id=None):
    """Whether a prompt can be answered: not under AWX, and the ansible-playbook process reads a terminal."""
    if awx_job_id:
        return False
    from ansible_collections.wfu.multisite.plugins.module_utils.processes import find_playbook_pid

    pid = find_playbook_pid()
    if pid is None:
        return False
    try:
        stdin = os.readlink("/proc/%d/fd/0" % pid)
    except OSError:
        return False
    return stdin.startswith("/dev/pts/") or stdin.startswith("/dev/tty")


def _pair_text(source_env, target_env):
    if source_env or target_env:
        return " (%s -> %s)" % (source_env or "any", target_env or "any")
    return ""
