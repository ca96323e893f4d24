"""``-e parallel=4`` of ``wfu.multisite.env_migrate`` on 16 sites, with the target server stopped mid-run.

The sites are hosts of the run's second play, four at a time, each claiming its own; the run policy decides for
all of them from the shared state (files backend here: one controller). Once the target is gone, the first
failure's health check names it and the run stops by itself: no site is started after the stop, so at most the
other three of its batch fail with it. The run exits non-zero with the reason and the resume command; the resume
(parallel too) completes, and the sites completed before keep ``attempts: 1``. The run gets its own servers, since
it stops one.
"""

import contextlib
import re

from role_helpers import SOURCE_URL, MigrationSetup, output_of, sites_with_status, wait_for

from tools.mariadb_servers import start_server_again, stop_server
from tools.wpnetwork import NetworkSpec

SITES = 16
PARALLEL = 4


@contextlib.contextmanager
def small_network(servers, tmp_path, sites, seed):
    """A subdomain network of ``sites`` one-post sites to migrate on ``servers``, dropped afterwards."""
    setup = MigrationSetup(servers, tmp_path, NetworkSpec(url=SOURCE_URL, subdomain=True, sites=sites, seed=seed,
                                                          posts_per_site=1))
    try:
        yield setup
    finally:
        setup.drop()


def test_parallel_run_stops_itself_on_a_target_outage_and_the_resume_completes(outage_servers, tmp_path):
    with small_network(outage_servers, tmp_path, sites=SITES, seed=61) as setup:
        run = setup.start("-f", str(PARALLEL), source_env="dev", target_env="uat", parallel=PARALLEL)
        try:
            wait_for(lambda: len(sites_with_status(setup.state(), "completed")) >= PARALLEL + 1, 300,
                     "a batch and a site completed", proc=run)
            stop_server(setup.target)
            run.wait(timeout=600)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        output = output_of(run, tail=10 ** 8)
        assert run.returncode != 0, output[-6000:]
        assert "PLAY [Migrate the sites, parallel at a time]" in output and "[site-%d" % SITES in output
        state = setup.state()
        assert state["status"] == "aborted", output[-6000:]
        completed = sites_with_status(state, "completed")
        failed = sites_with_status(state, "failed") + sites_with_status(state, "timeout")
        # The first failure is the threshold (systemic: one is enough); at most the rest of its batch was in flight.
        assert 1 <= len(failed) <= PARALLEL, (failed, output[-6000:])
        pending = sites_with_status(state, "pending")
        assert len(pending) == SITES - len(completed) - len(failed) > 0
        assert all(state["sites"][str(site_id)]["attempts"] == 0 for site_id in pending)
        assert state["stopping"]["status"] == "aborted"
        label = "the target database of uat (%s:%d/%s)" % (setup.target.host, setup.target.port, setup.target_db)
        final = " ".join(output[output.rindex("Fail the play when the migration did not complete"):].split())
        assert re.search(r"ended aborted: Systemic failure .*%s does not answer" % re.escape(label), final), final
        assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % state["id"] in final
        assert state["health_check"]["status"] == "done" and state["health_check"]["decision"]["stop"] is True
        assert setup.lock_files() == {}
        assert setup.migration_tables() == []

        start_server_again(setup.target)
        resumed = setup.run("-f", str(PARALLEL), resume="latest", parallel=PARALLEL)
        assert resumed.returncode == 0, resumed.stdout[-8000:]
        state = setup.state()
        assert state["status"] == "completed" and state["stopping"] is None
        assert [problem for site_id in range(1, SITES + 1) for problem in setup.site_problems(site_id)] == []
        assert all(state["sites"][str(site_id)]["attempts"] == 1 for site_id in completed + pending)
        assert all(state["sites"][str(site_id)]["attempts"] == 2 for site_id in failed)
        assert setup.migration_tables() == []
        assert setup.stray_target_tables() == []
        assert setup.lock_files() == {}


def test_too_few_forks_for_parallel_are_refused_before_anything_is_written(servers, tmp_path):
    with small_network(servers, tmp_path, sites=2, seed=62) as setup:
        run = setup.run("-f", "2", source_env="dev", target_env="uat", parallel=4)
        assert run.returncode != 0
        assert "parallel=4 asks for 4 sites at once, but this run has only 2 forks: run it with -f 4" in \
            " ".join(run.stdout.split()), run.stdout[-4000:]
        assert setup.migration_ids() == [] and setup.lock_files() == {}


def test_parallel_workers_run_the_periodic_health_checks_of_the_whole_migration(servers, tmp_path):
    """health_check_interval=2 over 6 sites two at a time: a check once 2 and once 4 sites of the migration have
    ended, each run by one worker only (the one whose claim found it due), none at the start of a batch before."""
    with small_network(servers, tmp_path, sites=6, seed=63) as setup:
        run = setup.run("-f", "2", source_env="dev", target_env="uat", parallel=2, health_check_interval=2)
        assert run.returncode == 0, run.stdout[-4000:]
        checked = re.findall(r"included: \S*health\.yml for (site-\d+)", run.stdout)
        assert len(checked) == 2, run.stdout[-6000:]
        state = setup.state()
        assert state["status"] == "completed" and state["periodic_check_at"] == 4
        assert state["health_check"]["status"] == "done" and state["health_check"]["decision"]["action"] == "continue"
        assert [problem for site_id in range(1, 7) for problem in setup.site_problems(site_id)] == []


def test_a_parallel_run_in_check_mode_writes_nothing_and_says_what_it_would_do(servers, tmp_path):
    """--check with parallel: the single-command dry run (no migration exists for workers to claim)."""
    with small_network(servers, tmp_path, sites=3, seed=64) as setup:
        target_before = setup.target_tables()
        run = setup.run("--check", "-f", "2", source_env="dev", target_env="uat", parallel=2)
        assert run.returncode == 0, run.stdout[-4000:]
        said = " ".join(run.stdout.split())
        assert "Check mode: nothing was changed and no state was written. A run would migrate 3 sites of dev into " \
            "uat after the network tables" in said, run.stdout[-4000:]
        assert setup.migration_ids() == [] and setup.lock_files() == {}
        assert setup.migration_tables() == [] and setup.target_tables() == target_before
