"""The actions of wfu_migration_state as the module and the action plugin run them (``state_actions.run_action``)."""

import json
import os

import pytest
from state_helpers import snapshot, snapshot_of

from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import StateError
from ansible_collections.wfu.multisite.plugins.module_utils import state_actions
from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
    ACTIONS, USER_ERRORS, argument_spec, run_action, task_failure)


@pytest.fixture
def params(tmp_path, backend, state_db_factory):
    """Every option at its default, as AnsibleModule hands them over, on the test's state backend."""
    defaults = {name: spec.get("default") for name, spec in argument_spec().items()}
    given = dict(defaults, state_dir=str(tmp_path / "migrations"))
    if backend == "database":
        given.update(state_backend="database", state_db=state_db_factory())
    return given


def snap(params):
    """What the params' state backend holds (see state_helpers.snapshot_of)."""
    if params["state_backend"] != "database":
        return snapshot(params["state_dir"])
    store = state_actions.open_store(params, holder_pid=os.getpid())
    try:
        return snapshot_of(store)
    finally:
        store.close()


def act(params, check_mode=False, **given):
    return run_action(dict(params, **given), check_mode=check_mode, holder_pid=os.getpid())


def test_the_dispatch_table_is_the_list_of_actions():
    assert argument_spec()["action"]["choices"] == list(ACTIONS)
    assert {action for key, action, _required in state_actions.REQUIRED_IF if key == "action"} <= set(ACTIONS)
    assert "set_sites" not in ACTIONS


def test_results_carry_no_facts_and_site_updates_stay_small(params):
    created = act(params, action="create", source_env="dev", target_env="uat", sites=[1, 2])
    migration_id = created["migration_id"]
    assert created["migration"]["id"] == migration_id and "ansible_facts" not in created
    marked = act(params, action="site", migration_id=migration_id, site_id=2, status="in_progress")
    assert set(marked) == {"changed", "migration_id", "site_id", "site", "counters", "consecutive_failures",
                           "progress", "log_file"}
    assert len(json.dumps(marked)) < 1500
    for action in ("list", "status"):
        result = act(params, action=action)
        assert result["changed"] is False and "ansible_facts" not in result


def test_awx_job_ids_reach_the_lock_and_the_state(params):
    taken = act(params, action="lock", target_env="uat", awx_job_id="77", awx_workflow_job_id="70")
    assert (taken["lock"]["awx_job_id"], taken["lock"]["awx_workflow_job_id"]) == ("77", "70")
    created = act(params, action="create", source_env="dev", target_env="uat", awx_job_id="77")
    assert created["migration"]["holder"]["awx_job_id"] == "77"


@pytest.mark.files_layout
def test_warnings_are_handed_to_the_task(params):
    os.makedirs(os.path.join(params["state_dir"], "locks"))
    with open(os.path.join(params["state_dir"], "locks", "uat.lock"), "w", encoding="utf-8") as handle:
        handle.write("[]")
    released = act(params, action="unlock", target_env="uat", force=True)
    assert released["released"] is True and "not a wfu.multisite lock" in released["warnings"][0]


def test_user_errors_become_task_failures(params):
    for given in ({"action": "load", "migration_id": "dev-to-uat-nope"},
                  {"action": "site", "migration_id": "x", "site_id": -3, "status": "completed"},
                  {"action": "create", "source_env": "dev", "target_env": "uat", "sites": [0]}):
        with pytest.raises(USER_ERRORS) as caught:
            act(params, **given)
        failure = task_failure(caught.value, params)
        assert failure["msg"] and "Traceback" not in failure["msg"]
    with pytest.raises(USER_ERRORS) as caught:
        act(params, action="load", migration_id="dev-to-uat-nope")
    assert task_failure(caught.value, params)["candidates"] == []
    assert task_failure(PermissionError(13, "Permission denied"), params)["msg"].startswith(
        "cannot use the state directory %s" % params["state_dir"])


# One check-mode case per action; an action added to ACTIONS needs one here.
CHECK_CASES = {
    "create": {"source_env": "dev", "target_env": "pprd", "sites": [1, 2]},
    "load": {"migration_id": "latest"},
    "site": {"site_id": 1, "status": "in_progress"},
    "network": {"status": "completed"},
    "finish": {"status": "aborted", "reason": "check"},
    "list": {},
    "status": {},
    "lock": {"target_env": "prod"},
    "unlock": {"target_env": "uat", "force": True},
    "validate": {"source_env": "dev", "target_env": "uat", "check_paths": False},
    "plan": {},
    "decide": {"health": {"the target database of uat (x)": {"ok": False, "msg": "gone"}}, "trigger": "systemic"},
    "conclude": {"stop_status": "aborted", "reason": "check"},
    "rollback": {"sites": [2], "network_tables": True},
    "claim": {"site_id": 1},
    "release": {"site_id": 2, "force": True},
}

DEV_DB = {"host": "127.0.0.1", "port": 3401, "user": "u", "password": "pw-dev", "database": "wp_dev"}
UAT_DB = {"host": "127.0.0.1", "port": 3402, "user": "u", "password": "pw-uat", "database": "wp_uat"}
ENVIRONMENTS = {
    "dev": {"url": "https://dev.example.edu", "db": DEV_DB},
    "uat": {"url": "https://uat.example.edu", "db": UAT_DB},
}
MIGRATION_DB = {"host": "127.0.0.1", "port": 3403, "user": "u", "password": "pw-mig", "database": "wfu_migration"}


def test_every_action_in_check_mode_writes_nothing(params):
    assert set(CHECK_CASES) == set(ACTIONS)
    act(params, action="lock", target_env="uat")
    migration_id = act(params, action="create", source_env="dev", target_env="uat", sites=[1, 2])["migration_id"]
    act(params, action="site", migration_id=migration_id, site_id=2, status="in_progress")  # load resets it
    act(params, action="claim", migration_id=migration_id, site_id=2)
    before = snap(params)
    for action, given in CHECK_CASES.items():
        given = dict(given, action=action)
        if action in ("site", "network", "finish", "plan", "decide", "conclude", "rollback", "claim", "release"):
            given["migration_id"] = migration_id
        if action == "validate":
            given.update(environments=ENVIRONMENTS, migration_db=MIGRATION_DB)
        result = act(params, check_mode=True, **given)
        assert "changed" in result, action
        assert snap(params) == before, action
    fresh = dict(params, state_dir=params["state_dir"] + "-new")
    act(fresh, check_mode=True, action="lock", target_env="uat")
    act(fresh, check_mode=True, action="create", source_env="dev", target_env="uat")
    assert not os.path.exists(fresh["state_dir"])


def test_a_failed_site_comes_back_with_the_policy_decision(params):
    options = {"max_consecutive_failures": 2}
    migration_id = act(params, action="create", source_env="dev", target_env="uat", sites=[1, 2, 3],
                       options=options)["migration_id"]
    first = act(params, action="site", migration_id=migration_id, site_id=1, status="failed", failure_class="site",
                error="table wp_2_posts is corrupt")
    assert first["decision"]["action"] == "continue"
    second = act(params, action="site", migration_id=migration_id, site_id=2, status="failed", failure_class="site",
                 error="table wp_3_posts is corrupt")
    assert (second["decision"]["action"], second["decision"]["trigger"]) == ("check_health", "consecutive")
    # While that health check runs, another worker's failure waits for its verdict instead of running a second one.
    systemic = act(params, action="site", migration_id=migration_id, site_id=3, status="failed",
                   failure_class="systemic", error="Access denied")
    assert (systemic["decision"]["action"], systemic["decision"]["trigger"]) == ("wait_health", "systemic")
    assert act(params, action="status", migration_id=migration_id)["migration"]["health_check"]["status"] == "running"
    verdict = act(params, action="decide", migration_id=migration_id, trigger="consecutive", interactive=False,
                  health={"the target database of uat": {"ok": True, "msg": ""}}, last_error="corrupt")
    assert verdict["decision"]["stop"] is True and verdict["decision"]["status"] == "aborted"
    seen = act(params, action="status", migration_id=migration_id)["migration"]
    assert seen["health_check"]["status"] == "done" and seen["health_check"]["decision"]["stop"] is True
    # The verdict stops the whole run: recorded once, and what every later failure comes back with.
    assert seen["stopping"]["status"] == "aborted" and "pause_on_failure is off" in seen["stopping"]["reason"]
    later = act(params, action="site", migration_id=migration_id, site_id=3, status="failed", failure_class="site",
                error="again")
    assert later["decision"]["stop"] is True and later["decision"]["reason"] == seen["stopping"]["reason"]
    assert "decision" not in act(params, action="site", migration_id=migration_id, site_id=3, status="completed")


def test_a_worker_claims_only_what_the_run_still_wants(params):
    migration_id = act(params, action="create", source_env="dev", target_env="uat", sites=[1, 2, 3],
                       options={"site_timeout": 50})["migration_id"]
    act(params, action="site", migration_id=migration_id, site_id=1, status="in_progress")
    act(params, action="site", migration_id=migration_id, site_id=1, status="completed")
    done = act(params, action="claim", worker=True, migration_id=migration_id, site_id=1)
    assert done["claimed"] is False and "site 1 is completed" in done["skip_reason"]
    assert act(params, action="status", migration_id=migration_id)["claims"] == {}  # released again
    kept = act(params, action="claim", worker=True, migration_id=migration_id, site_id=2)
    assert kept["claimed"] is True and kept["plan"]["queue"] == [2] and kept["plan"]["limits"] == {"2": 50}
    assert kept["plan"]["options"]["site_timeout"] == 50
    # Once a stop is recorded, no worker claims a new site; the final status and reason are the stop's.
    act(params, action="site", migration_id=migration_id, site_id=2, status="failed", failure_class="site",
        error="corrupt")
    act(params, action="decide", migration_id=migration_id, trigger="systemic", interactive=False,
        health={"the target database of uat": {"ok": False, "msg": "Connection refused"}}, last_error="refused")
    refused = act(params, action="claim", worker=True, migration_id=migration_id, site_id=3)
    assert refused["claimed"] is False and "is stopping" in refused["skip_reason"]
    assert refused["stopping"]["status"] == "aborted"
    assert act(params, action="claim", migration_id=migration_id, site_id=3)["claimed"] is True  # not a worker's
    concluded = act(params, action="conclude", migration_id=migration_id)["migration"]
    assert concluded["status"] == "aborted" and "Connection refused" in concluded["reason"]
    # A resume starts afresh.
    act(params, action="release", migration_id=migration_id, site_id=3)
    act(params, action="load", migration_id=migration_id)
    assert act(params, action="claim", worker=True, migration_id=migration_id, site_id=3)["claimed"] is True


def test_a_workers_periodic_check_is_due_once_per_interval_of_ended_sites(params):
    migration_id = act(params, action="create", source_env="dev", target_env="uat", sites=list(range(1, 8)),
                       options={"health_check_interval": 2})["migration_id"]

    def claim_checks(site_id):
        kept = act(params, action="claim", worker=True, migration_id=migration_id, site_id=site_id)
        assert kept["claimed"] is True, kept
        act(params, action="release", migration_id=migration_id, site_id=site_id)
        return kept["plan"]["check_before"] == [site_id]

    def end(site_id, status):
        act(params, action="site", migration_id=migration_id, site_id=site_id, status="in_progress")
        act(params, action="site", migration_id=migration_id, site_id=site_id, status=status,
            **({"failure_class": "site", "error": "broken"} if status != "completed" else {}))

    assert claim_checks(1) is False  # nothing has ended yet
    end(1, "completed")
    end(2, "failed")
    assert claim_checks(3) is True  # two sites ended: this worker checks
    assert claim_checks(4) is False  # the same two: the check is the first worker's
    assert act(params, action="claim", worker=True, migration_id=migration_id, site_id=4, check_mode=True)[
        "plan"]["check_before"] == []
    end(3, "timeout")
    assert claim_checks(4) is False  # three ended
    end(4, "completed")
    assert act(params, action="claim", worker=True, migration_id=migration_id, site_id=5,
               check_mode=True)["plan"]["check_before"] == [5]  # due, and check mode records nothing ...
    assert claim_checks(5) is True  # ... so the real claim still gets it
    # A resume counts from where it starts.
    act(params, action="load", migration_id=migration_id)
    assert claim_checks(6) is False


def test_validate_refuses_bad_settings_before_anything_exists(params):
    for given, words in (({"source_env": "dev", "target_env": "dev"}, "both dev"),
                         ({"source_env": "dev", "target_env": "prod"}, "'prod' is not an environment"),
                         ({"source_env": "dev", "target_env": "uat", "options": {"site_timeout": -1}},
                          "site_timeout must be at least 1"),
                         ({"source_env": "dev", "target_env": "uat", "options": {"include_sites": ""}},
                          "include_sites is empty")):
        with pytest.raises(USER_ERRORS) as caught:
            act(params, action="validate", environments=ENVIRONMENTS, migration_db=MIGRATION_DB, **given)
        assert words in str(caught.value)
    assert not os.path.exists(params["state_dir"])
    if params["state_backend"] == "database":
        assert snap(params) == {}  # not even the tables
    valid = act(params, action="validate", environments=ENVIRONMENTS, migration_db=MIGRATION_DB, source_env="dev",
                target_env="uat", options={"include_sites": "3,2", "site_timeout": "90"})
    assert valid["options"] == {"include_sites": [2, 3], "site_timeout": 90}
    assert valid["effective"]["site_timeout"] == 90 and valid["new"] is True
    assert "pw-" not in json.dumps(valid)


def test_a_rollback_is_recorded_with_the_sites_it_put_back(params):
    migration_id = act(params, action="create", source_env="dev", target_env="uat", sites=[1, 2, 3])["migration_id"]
    for site_id in (1, 2, 3):
        act(params, action="site", migration_id=migration_id, site_id=site_id, status="completed")
    done = act(params, action="rollback", migration_id=migration_id, sites=[3, 2], failed_sites=[1],
               network_tables="false", error="site-1.json: no such backup")
    assert (done["rollback"]["sites"], done["rollback"]["failed_sites"], done["rollbacks"]) == ([3, 2], [1], 1)
    status = act(params, action="status", migration_id=migration_id)
    assert "Rolled back" in " ".join(status["report"]) and "sites 3, 2; not rolled back: sites 1" in " ".join(
        status["report"])
    assert status["migration"]["counters"]["completed"] == 3
    with pytest.raises(StateError, match="not part of migration"):
        act(params, action="rollback", migration_id=migration_id, sites=[9])


def test_the_database_backend_is_checked_before_anything_is_written(params, tmp_path):
    with pytest.raises(USER_ERRORS, match="state_backend=database needs state_db"):
        act(dict(params, state_backend="database", state_db=None), action="validate", source_env="dev",
            target_env="uat", environments=ENVIRONMENTS, migration_db=MIGRATION_DB)
    with pytest.raises(USER_ERRORS, match="state_lease_seconds must be at least 5"):
        act(dict(params, state_backend="database", state_db=MIGRATION_DB, state_lease_seconds=1), action="list")
    assert "database" in argument_spec()["state_backend"]["choices"]
    assert argument_spec()["state_db"]["options"]["password"]["no_log"] is True
    assert not os.path.exists(params["state_dir"])
