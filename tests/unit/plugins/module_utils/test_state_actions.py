"""The actions of wfu_migration_state as the module and the action plugin run them (``state_actions.run_action``)."""

import json
import os

import pytest
from state_helpers import snapshot

from ansible_collections.wfu.multisite.plugins.module_utils import state_actions
from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
    ACTIONS, USER_ERRORS, argument_spec, run_action, task_failure)


@pytest.fixture
def params(tmp_path):
    """Every option at its default, as AnsibleModule hands them over."""
    defaults = {name: spec.get("default") for name, spec in argument_spec().items()}
    return dict(defaults, state_dir=str(tmp_path / "migrations"))


def act(params, check_mode=False, **given):
    return run_action(dict(params, **given), check_mode=check_mode, holder_pid=os.getpid())


def test_the_dispatch_table_is_the_list_of_actions():
    assert argument_spec()["action"]["choices"] == list(ACTIONS)
    assert {action for _key, action, _required in state_actions.REQUIRED_IF} <= set(ACTIONS)
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
}


def test_every_action_in_check_mode_writes_nothing(params):
    assert set(CHECK_CASES) == set(ACTIONS)
    act(params, action="lock", target_env="uat")
    migration_id = act(params, action="create", source_env="dev", target_env="uat", sites=[1, 2])["migration_id"]
    act(params, action="site", migration_id=migration_id, site_id=2, status="in_progress")  # load resets it
    before = snapshot(params["state_dir"])
    for action, given in CHECK_CASES.items():
        given = dict(given, action=action)
        if action in ("site", "network", "finish"):
            given["migration_id"] = migration_id
        result = act(params, check_mode=True, **given)
        assert "changed" in result, action
        assert snapshot(params["state_dir"]) == before, action
    fresh = dict(params, state_dir=params["state_dir"] + "-new")
    act(fresh, check_mode=True, action="lock", target_env="uat")
    act(fresh, check_mode=True, action="create", source_env="dev", target_env="uat")
    assert not os.path.exists(fresh["state_dir"])
