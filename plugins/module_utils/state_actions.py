# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The actions of ``wfu_migration_state``, shared by the module and its action plugin.

``ACTIONS`` maps each action to a handler ``handler(store, params, check_mode) -> task result``; the
module's ``action`` choices are its keys, so an action is added by adding a handler (and its options to
``argument_spec``, its required options to ``REQUIRED_IF``, its documentation to the module).
``run_action`` opens the store for the task (``open_store``, the one place a state backend is chosen) and
dispatches; ``task_failure`` turns the errors a
user can hit into the keys of a failed task.
"""

from __future__ import annotations

from ansible_collections.wfu.multisite.plugins.module_utils import run_actions
from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import StateError
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, Database, db_option
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError, redact
from ansible_collections.wfu.multisite.plugins.module_utils.state_records import (
    DONE_STATUSES, FAILURE_CLASSES, MIGRATION_STATUSES, NETWORK_STATUSES, SITE_PHASES, SITE_STATUSES)
from ansible_collections.wfu.multisite.plugins.module_utils.state_store import DEFAULT_STATE_DIR, StateStore

# What a task fails with, rather than a traceback.
USER_ERRORS = (StateError, ConfigError, MigrationError, OSError)
STATE_BACKENDS = ("files", "database")


def _create(store, params, check_mode):
    return store.create(params["source_env"], params["target_env"], options=params.get("options"),
                        sites=params.get("sites"), site_info=params.get("site_info"),
                        network_tables=params.get("network_tables"), check_mode=check_mode)


def _load(store, params, check_mode):
    return store.load(params["migration_id"], source_env=params.get("source_env"),
                      target_env=params.get("target_env"), options=params.get("options"),
                      force=params.get("force", False), check_mode=check_mode)


def _site(store, params, check_mode):
    result = store.mark_site(params["migration_id"], params["site_id"], params["status"], error=params.get("error"),
                             phase=params.get("phase"), failure_class=params.get("failure_class"),
                             details=params.get("details"), phase_done=params.get("phase_done"),
                             check_mode=check_mode)
    if params["status"] in DONE_STATUSES and not check_mode:
        # A site that is over is no longer claimed by this run, nor by a run that is gone (a live run's claim stays).
        claims = store.claims_view(params["migration_id"])
        if claims.get(str(result["site_id"]), {}).get("liveness") in ("self", "dead"):
            store.release(params["migration_id"], result["site_id"])
    if params["status"] in ("failed", "timeout") and check_mode:
        result["decision"] = run_actions.CHECK_MODE_DECISION
    elif params["status"] in ("failed", "timeout"):
        # The run policy's answer comes with the record, so the role needs no second call to ask it.
        result["decision"] = run_actions.after_site_failure(store, params["migration_id"], result, params["status"],
                                                            params.get("failure_class"))
        result["decision"] = run_actions.share_decision(store, params["migration_id"], result["decision"])
    return result


def _network(store, params, check_mode):
    return store.mark_network(params["migration_id"], params["status"], error=params.get("error"),
                              phase=params.get("phase"), failure_class=params.get("failure_class"),
                              details=params.get("details"), check_mode=check_mode)


def _rollback(store, params, check_mode):
    return store.record_rollback(params["migration_id"], sites=params.get("sites") or [],
                                 network_tables=str(params.get("network_tables")).lower() in ("true", "yes", "1"),
                                 failed_sites=params.get("failed_sites") or [], error=params.get("error"),
                                 check_mode=check_mode)


def _finish(store, params, check_mode):
    return store.finish(params["migration_id"], params["status"], reason=params.get("reason"), check_mode=check_mode)


def _list(store, params, check_mode):
    del params, check_mode  # read only
    return store.list_migrations()


def _status(store, params, check_mode):
    del check_mode  # read only
    result = store.status(params.get("migration_id") or "latest", source_env=params.get("source_env"),
                          target_env=params.get("target_env"))
    result["claims"] = store.claims_view(result["migration"]["id"])
    return result


def _lock(store, params, check_mode):
    return store.locks.lock(params["target_env"], migration_id=params.get("migration_id"),
                            force=params.get("force", False), check_mode=check_mode)


def _unlock(store, params, check_mode):
    return store.locks.unlock(params["target_env"], migration_id=params.get("migration_id"),
                              force=params.get("force", False), check_mode=check_mode)


def _claim(store, params, check_mode):
    result = store.claim(params["migration_id"], params["site_id"], force=params.get("force", False),
                         check_mode=check_mode)
    if params.get("worker") and result["claimed"]:
        run_actions.check_worker_claim(store, params, result, check_mode)
    return result


def _release(store, params, check_mode):
    return store.release(params["migration_id"], params["site_id"], force=params.get("force", False),
                         check_mode=check_mode)


def _validate(store, params, check_mode):
    # The state backend first: an unreachable state database or a foreign schema stops the run before anything.
    store.check_reachable()
    return run_actions.validate(store, params, check_mode)


ACTIONS = {
    "create": _create,
    "load": _load,
    "site": _site,
    "network": _network,
    "finish": _finish,
    "list": _list,
    "status": _status,
    "lock": _lock,
    "unlock": _unlock,
    "rollback": _rollback,
    "claim": _claim,
    "release": _release,
}
ACTIONS.update(run_actions.ACTIONS)
ACTIONS["validate"] = _validate

REQUIRED_IF = [
    ("action", "create", ("source_env", "target_env")),
    ("action", "load", ("migration_id",)),
    ("action", "site", ("migration_id", "site_id", "status")),
    ("action", "network", ("migration_id", "status")),
    ("action", "finish", ("migration_id", "status")),
    ("action", "lock", ("target_env",)),
    ("action", "unlock", ("target_env",)),
    ("action", "rollback", ("migration_id",)),
    ("action", "claim", ("migration_id", "site_id")),
    ("action", "release", ("migration_id", "site_id")),
    ("state_backend", "database", ("state_db",)),
] + run_actions.REQUIRED_IF


def argument_spec():
    """The options of ``wfu_migration_state``."""
    spec = dict(
        action=dict(type="str", required=True, choices=list(ACTIONS)),
        state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
        state_backend=dict(type="str", choices=list(STATE_BACKENDS), default="files"),
        state_db=db_option(),
        state_lease_seconds=dict(type="int", default=30),
        migration_id=dict(type="str"),
        source_env=dict(type="str"),
        target_env=dict(type="str"),
        options=dict(type="dict"),
        sites=dict(type="list", elements="int"),
        failed_sites=dict(type="list", elements="int"),
        site_info=dict(type="raw"),
        network_tables=dict(type="raw"),
        site_id=dict(type="int"),
        status=dict(type="str", choices=sorted(set(MIGRATION_STATUSES + SITE_STATUSES + NETWORK_STATUSES) - {"running"})),
        error=dict(type="str"),
        phase=dict(type="str"),
        phase_done=dict(type="str", choices=list(SITE_PHASES)),
        failure_class=dict(type="str", choices=list(FAILURE_CLASSES)),
        details=dict(type="dict"),
        reason=dict(type="str"),
        force=dict(type="bool", default=False),
        worker=dict(type="bool", default=False),
        awx_job_id=dict(type="str"),
        awx_workflow_job_id=dict(type="str"),
    )
    spec.update(run_actions.ARGUMENT_SPEC)
    return spec


def open_store(params, holder_pid=None):
    """The store the task's ``params`` name: the files under ``state_dir`` or the tables in ``state_db``."""
    if params.get("state_backend") == "database":
        # Imported here: the files backend must not need PyMySQL.
        from ansible_collections.wfu.multisite.plugins.module_utils.state_db import DatabaseStateStore
        if not params.get("state_db"):
            raise ConfigError("state_backend=database needs state_db (wfu_state_db, or wfu_migration_db)")
        if params.get("state_lease_seconds") is not None and params["state_lease_seconds"] < 5:
            raise ConfigError("state_lease_seconds must be at least 5, got %d" % params["state_lease_seconds"])
        return DatabaseStateStore(Database.from_params(params["state_db"], role="state"), holder_pid=holder_pid,
                                  awx_job_id=params.get("awx_job_id"),
                                  awx_workflow_job_id=params.get("awx_workflow_job_id"),
                                  lease_seconds=params.get("state_lease_seconds"), state_dir=params["state_dir"])
    return StateStore(params["state_dir"], holder_pid=holder_pid, awx_job_id=params.get("awx_job_id"),
                      awx_workflow_job_id=params.get("awx_workflow_job_id"))


def run_action(params, check_mode=False, holder_pid=None):
    """Do what the task's ``params`` ask; returns the task result (raises one of USER_ERRORS for user errors).

    ``holder_pid`` stands for the run's ansible-playbook process (default: found above this process).
    """
    store = open_store(params, holder_pid)
    try:
        result = ACTIONS[params["action"]](store, params, check_mode)
    finally:
        store.close()
    if "migration" in result:
        result["migration_id"] = result["migration"]["id"]
    if store.warnings:
        result["warnings"] = list(store.warnings)
    return result


def task_failure(exc, params):
    """The keys of the failed task for one of USER_ERRORS."""
    if isinstance(exc, StateError):
        return dict(exc.details, msg=str(exc))
    if isinstance(exc, ConfigError):
        return {"msg": str(exc)}
    if isinstance(exc, MigrationError):
        secret = ((params.get("state_db") or {}).get("password") or "",)
        return {"msg": redact("%s. %s" % (str(exc).rstrip("."), exc.hint), secret)}
    return {"msg": "cannot use the state directory %s: %s" % (params["state_dir"], exc)}
