"""The run policy: queue, failure decisions, health verdicts and the final status, as pure functions."""

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils import run_policy
from ansible_collections.wfu.multisite.plugins.module_utils.run_options import effective_options


def migration(pending=(), completed=(), failed=(), timeout=(), in_progress=(), skipped=(), large=(), order=None,
              consecutive=0, network="completed"):
    by_status = {"pending": list(pending), "completed": list(completed), "failed": list(failed),
                 "timeout": list(timeout), "in_progress": list(in_progress), "skipped": list(skipped)}
    every = order or sorted(set().union(*map(set, by_status.values())))
    counters = {status: len(ids) for status, ids in by_status.items()}
    counters["total"] = len(every)
    return {"id": "dev-to-uat-x", "sites_by_status": by_status, "site_order": every, "large_sites": list(large),
            "counters": counters, "consecutive_failures": consecutive, "network_tables": {"status": network},
            "options": {}}


def test_queue_takes_pending_and_failed_but_not_completed():
    plan = run_policy.plan_run(migration(pending=[3, 4], completed=[1, 2], failed=[5], timeout=[6]),
                               effective_options())
    assert plan["queue"] == [3, 4, 5, 6]
    assert plan["run_network"] is False


def test_exclude_failed_wins_over_retry_failed():
    options = effective_options(given={"exclude_failed": True})
    assert run_policy.plan_run(migration(pending=[3], failed=[5]), options)["queue"] == [3]


def test_skip_completed_false_redoes_completed_sites():
    options = effective_options(given={"skip_completed": False})
    assert run_policy.plan_run(migration(pending=[3], completed=[1]), options)["queue"] == [1, 3]


def test_large_sites_go_last_and_get_the_factor():
    options = effective_options(given={"site_timeout": 100, "large_site_timeout_factor": 4})
    plan = run_policy.plan_run(migration(pending=[1, 2, 3, 4], large=[2]), options)
    assert plan["queue"] == [1, 3, 4, 2]
    assert plan["limits"] == {"1": 100, "3": 100, "4": 100, "2": 400}


def test_large_sites_given_on_resume_count_as_large():
    options = effective_options(given={"large_sites": [3]})
    assert run_policy.plan_run(migration(pending=[1, 3, 4]), options)["queue"] == [1, 4, 3]


def test_skip_large_sites_marks_pending_large_ones_skipped():
    options = effective_options(given={"skip_large_sites": True})
    plan = run_policy.plan_run(migration(pending=[1, 2], failed=[3], large=[2, 3]), options)
    assert plan["queue"] == [1]
    assert plan["skip_large"] == [2]


def test_resume_filters_narrow_the_queue_only():
    plan = run_policy.plan_run(migration(pending=[1, 2, 3, 4]), effective_options(),
                               {"include_sites": [2, 3], "exclude_sites": [3]})
    assert plan["queue"] == [2]
    assert plan["left_out"] == [1, 3, 4]


def test_resume_filter_naming_an_unknown_site_is_refused():
    with pytest.raises(ValueError, match="site.s. 99"):
        run_policy.plan_run(migration(pending=[1, 2]), effective_options(), {"include_sites": [2, 99]})


def test_network_only_and_network_status():
    only = effective_options(given={"network_tables": "only"})
    plan = run_policy.plan_run(migration(pending=[1, 2], network="pending"), only)
    assert plan["queue"] == [] and plan["run_network"] is True
    off = effective_options(given={"network_tables": "false"})
    assert run_policy.plan_run(migration(pending=[1], network="pending"), off)["run_network"] is False


def test_periodic_checks_fall_on_the_interval():
    options = effective_options(given={"health_check_interval": 2})
    assert [i for i in range(7) if run_policy.health_check_due(i, options)] == [2, 4, 6]
    assert not any(run_policy.health_check_due(i, effective_options()) for i in range(7))


def test_a_systemic_failure_asks_for_a_health_check_at_once():
    decision = run_policy.after_failure(migration(failed=[1], pending=[2, 3], consecutive=1), effective_options(),
                                        failure_class="systemic")
    assert decision.action == "check_health" and decision.trigger == "systemic"


def test_site_failures_below_the_threshold_continue():
    decision = run_policy.after_failure(migration(failed=[1, 2], pending=[3], consecutive=2), effective_options(),
                                        failure_class="site")
    assert decision.action == "continue"


def test_the_consecutive_threshold_asks_for_a_health_check():
    options = effective_options(given={"max_consecutive_failures": 2})
    decision = run_policy.after_failure(migration(failed=[1, 2], pending=[3], consecutive=2), options, "site")
    assert decision.action == "check_health" and decision.trigger == "consecutive"
    off = effective_options(given={"max_consecutive_failures": 0})
    assert run_policy.after_failure(migration(failed=[1, 2], consecutive=9), off, "site").action == "continue"


def test_max_fail_percentage_stops_the_run():
    options = effective_options(given={"max_fail_percentage": 20})
    ok = run_policy.after_failure(migration(failed=[1], pending=[2, 3, 4, 5], consecutive=1), options, "site")
    assert ok.action == "continue"
    over = run_policy.after_failure(migration(failed=[1, 2], pending=[3, 4, 5], consecutive=2), options, "site")
    assert over.action == "stop" and over.status == "aborted" and "2 of 5" in over.reason


def test_a_timeout_without_a_class_is_judged_by_a_health_check():
    decision = run_policy.after_failure(migration(timeout=[1], pending=[2]), effective_options(), None, "timeout")
    assert decision.action == "check_health" and decision.trigger == "timeout"


HEALTHY = {"the source database of dev (a)": {"ok": True}, "the target database of uat (b)": {"ok": True}}
TARGET_DOWN = dict(HEALTHY, **{"the target database of uat (b)": {"ok": False, "msg": "Connection refused."}})


def test_an_unhealthy_database_stops_the_run_naming_only_that_database():
    decision = run_policy.after_health_check(TARGET_DOWN, "consecutive", effective_options(), True, consecutive=5)
    assert decision.action == "stop" and decision.status == "aborted"
    assert "the target database of uat (b) does not answer: Connection refused." in decision.reason
    assert "source database" not in decision.reason


def test_a_systemic_failure_stops_even_when_every_database_answers():
    decision = run_policy.after_health_check(HEALTHY, "systemic", effective_options(), True,
                                             last_error="disk full (errno 28)")
    assert decision.action == "stop" and "disk full" in decision.reason


def test_healthy_after_a_timeout_or_periodic_check_continues():
    assert run_policy.after_health_check(HEALTHY, "timeout", effective_options(), True).action == "continue"
    assert run_policy.after_health_check(HEALTHY, "periodic", effective_options(), True).action == "continue"
    assert run_policy.after_health_check(TARGET_DOWN, "periodic", effective_options(), True).action == "stop"


def test_healthy_after_consecutive_failures_aborts_pauses_or_asks():
    aborted = run_policy.after_health_check(HEALTHY, "consecutive", effective_options(), True, consecutive=5)
    assert aborted.status == "aborted" and "pause_on_failure is off" in aborted.reason
    pause = effective_options(given={"pause_on_failure": True})
    unattended = run_policy.after_health_check(HEALTHY, "consecutive", pause, False, consecutive=5)
    assert unattended.action == "stop" and unattended.status == "paused"
    assert run_policy.after_health_check(HEALTHY, "consecutive", pause, True).action == "ask"
    answers = {reply: run_policy.after_health_check(HEALTHY, "consecutive", pause, True, answer=reply)
               for reply in ("c", "p", "x", "")}
    assert answers["c"].action == "continue"
    assert (answers["p"].action, answers["p"].status) == ("stop", "paused")
    assert (answers["x"].status, answers[""].status) == ("aborted", "aborted")


@pytest.mark.parametrize("state, stop, expected", [
    (migration(completed=[1, 2]), None, "completed"),
    (migration(completed=[1], failed=[2]), None, "failed"),
    (migration(completed=[1], pending=[2]), None, "paused"),
    (migration(completed=[1, 2], network="failed"), None, "failed"),
    (migration(completed=[1], pending=[2]), "aborted", "aborted"),
])
def test_final_status(state, stop, expected):
    assert run_policy.final_status(state, stop) == expected


def test_the_plan_says_which_parts_of_a_queued_site_are_done():
    state = dict(migration(pending=[2], failed=[3], completed=[4]), phases_done={"3": ["tables"], "5": ["tables"]})
    plan = run_policy.plan_run(state, effective_options())
    assert plan["queue"] == [2, 3]
    # Only queued sites: site 5 is not in this run.
    assert plan["phases_done"] == {"3": ["tables"]}
    assert run_policy.plan_run(migration(pending=[2]), effective_options())["phases_done"] == {}
