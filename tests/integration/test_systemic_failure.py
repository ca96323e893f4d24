"""A systemic failure: the target server goes away in the middle of a run.

Every site after that fails for the same reason, so after ``max_consecutive_failures`` the run checks
every database, finds the target unhealthy, stops itself with a message that says why and how to
resume, and leaves a resumable state.  Once the server is back, ``-e resume=latest`` completes.
The run gets its own servers, since it stops one of them.
"""

import re

import pytest
from role_helpers import SOURCE_URL, MigrationSetup, output_of, sites_with_status, wait_for

from tools.mariadb_servers import ServerSet, start_server_again, stop_server
from tools.wpnetwork import NetworkSpec

SITES = 8
MAX_CONSECUTIVE_FAILURES = 3


@pytest.fixture(scope="module")
def outage_servers():
    with ServerSet(("source", "target", "migration")) as servers:
        yield servers


def test_target_outage_stops_the_run_and_resume_completes(outage_servers, tmp_path):
    spec = NetworkSpec(url=SOURCE_URL, subdomain=True, sites=SITES, seed=43, posts_per_site=1)
    setup = MigrationSetup(outage_servers, tmp_path, spec)

    run = setup.start(source_env="dev", target_env="uat", max_consecutive_failures=MAX_CONSECUTIVE_FAILURES)
    try:
        wait_for(lambda: len(sites_with_status(setup.state(), "completed")) >= 2, 180, "two completed sites", proc=run)
        stop_server(setup.target)
        run.wait(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = output_of(run, tail=30000)

    assert run.returncode != 0
    state = setup.state()
    migration_id = state["id"]
    assert state["status"] == "aborted", output[-6000:]
    completed_before = sites_with_status(state, "completed")
    failed = sites_with_status(state, "failed")
    assert len(failed) == MAX_CONSECUTIVE_FAILURES, output[-6000:]
    assert state["consecutive_failures"] == MAX_CONSECUTIVE_FAILURES
    # The run stopped itself: the sites after the failures were not tried.
    assert len(sites_with_status(state, "pending")) == SITES - len(completed_before) - len(failed) > 0
    assert all(state["sites"][str(site_id)]["failure_class"] == "systemic" for site_id in failed), state["sites"]
    final_message = output[output.rindex("Fail the play when the migration did not complete"):]
    assert re.search(r"Systemic failure .*target database \(uat\) does not answer", final_message, re.S), final_message
    assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration_id in final_message
    # The migration database stayed up, so the failed sites' work tables were dropped there at once.
    assert setup.migration_tables() == []
    assert setup.lock_files() == {}

    start_server_again(setup.target)
    resumed = setup.run(resume="latest")

    assert resumed.returncode == 0, resumed.stdout[-8000:]
    state = setup.state()
    assert state["status"] == "completed"
    assert [problem for site_id in range(1, SITES + 1) for problem in setup.site_problems(site_id)] == []
    assert all(state["sites"][str(site_id)]["attempts"] == 1 for site_id in completed_before)
    assert all(state["sites"][str(site_id)]["attempts"] == 2 for site_id in failed)
    assert setup.migration_tables() == []
    assert setup.stray_target_tables() == []
