"""Systemic failures in the middle of a run: the target server goes away, its password changes, it hangs.

Every site after such a failure would fail for the same reason, so the run checks every database after the
first systemic failure, names the one that does not answer, stops itself with a message that says why and
how to resume, and leaves a resumable state.  Once the cause is gone, ``-e resume=latest`` completes.
The runs get their own servers, since they stop, freeze and re-password them.
"""

import contextlib
import re
import time

from helpers import connect, frozen
from role_helpers import SOURCE_URL, MigrationSetup, output_of, sites_with_status, wait_for

from tools.mariadb_servers import start_server_again, stop_server
from tools.wpnetwork import NetworkSpec

SITES = 8
MAX_CONSECUTIVE_FAILURES = 3
SITE_TIMEOUT = 20


def network(seed):
    return NetworkSpec(url=SOURCE_URL, subdomain=True, sites=SITES, seed=seed, posts_per_site=1)


def run_until_stopped(setup, break_it, **extra_vars):
    """Start a run, break something once two sites are done, and wait for the run to stop itself."""
    run = setup.start(source_env="dev", target_env="uat", max_consecutive_failures=MAX_CONSECUTIVE_FAILURES,
                      **extra_vars)
    try:
        wait_for(lambda: len(sites_with_status(setup.state(), "completed")) >= 2, 180, "two completed sites", proc=run)
        started = time.monotonic()
        break_it()
        run.wait(timeout=600)
        seconds = time.monotonic() - started
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return run, output_of(run, tail=30000), seconds


def target_label(setup):
    return "the target database of uat (%s:%d/%s)" % (setup.target.host, setup.target.port, setup.target_db)


def assert_stopped_systemic(setup, run, output, label):
    """The run stopped itself after at most two failed sites, naming ``label``; returns (state, completed, failed)."""
    assert run.returncode != 0
    state = setup.state()
    assert state["status"] == "aborted", output[-6000:]
    completed = sites_with_status(state, "completed")
    failed = sites_with_status(state, "failed") + sites_with_status(state, "timeout")
    # One systemic failure is enough; a second site may have been under way when the server went.
    assert 1 <= len(failed) <= 2, (failed, output[-6000:])
    assert len(sites_with_status(state, "pending")) == SITES - len(completed) - len(failed) > 0
    final_message = output[output.rindex("Fail the play when the migration did not complete"):]
    assert re.search(r"Systemic failure .*%s does not answer" % re.escape(label), final_message, re.S), final_message
    assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % state["id"] in final_message
    assert setup.lock_files() == {}
    return state, completed, failed


def assert_resume_completes(setup, completed_before, failed):
    resumed = setup.run(resume="latest")
    assert resumed.returncode == 0, resumed.stdout[-8000:]
    state = setup.state()
    assert state["status"] == "completed"
    assert [problem for site_id in range(1, SITES + 1) for problem in setup.site_problems(site_id)] == []
    assert all(state["sites"][str(site_id)]["attempts"] == 1 for site_id in completed_before)
    assert all(state["sites"][str(site_id)]["attempts"] == 2 for site_id in failed)
    assert setup.migration_tables() == []
    assert setup.stray_target_tables() == []


def test_target_outage_stops_the_run_and_resume_completes(outage_servers, tmp_path):
    setup = MigrationSetup(outage_servers, tmp_path, network(43))

    run, output, _seconds = run_until_stopped(setup, lambda: stop_server(setup.target))

    state, completed, failed = assert_stopped_systemic(setup, run, output, target_label(setup))
    assert all(state["sites"][str(site_id)]["failure_class"] == "systemic" for site_id in failed), state["sites"]
    # The migration database stayed up, so the failed sites' work tables were dropped there at once.
    assert setup.migration_tables() == []

    start_server_again(setup.target)
    assert_resume_completes(setup, completed, failed)


def test_password_rotated_mid_run_stops_after_at_most_two_sites(outage_servers, tmp_path):
    setup = MigrationSetup(outage_servers, tmp_path, network(44))
    user, password = setup.target.user, setup.target.password
    # Opened before the change, this session stays signed in to change the password back.
    admin = contextlib.closing(connect(setup.target, None))

    def rotate(new):
        with conn.cursor() as cur:
            for host in ("127.0.0.1", "localhost", "%"):
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, new))

    with admin as conn:
        run, output, _seconds = run_until_stopped(setup, lambda: rotate("rotated-" + password))
        try:
            state, completed, failed = assert_stopped_systemic(setup, run, output, target_label(setup))
            assert "Access denied" in output
            assert password not in output and "rotated-" + password not in output
        finally:
            rotate(password)
    assert_resume_completes(setup, completed, failed)


def test_hung_target_stops_the_run_within_the_site_timeout(outage_servers, tmp_path):
    setup = MigrationSetup(outage_servers, tmp_path, network(45))
    hang = frozen(setup.target)

    run, output, seconds = run_until_stopped(setup, hang.__enter__, site_timeout=SITE_TIMEOUT)
    try:
        # The site ends at its own limit, the rescue's cleanup and the health check are bounded too.
        assert seconds < SITE_TIMEOUT + 60, (seconds, output[-6000:])
        state, completed, failed = assert_stopped_systemic(setup, run, output, target_label(setup))
        assert "timed out" in output or "does not answer" in output
    finally:
        hang.__exit__(None, None, None)
    assert_resume_completes(setup, completed, failed)
