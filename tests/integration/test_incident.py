"""The incident the recovery plan was written after, replayed against real servers, then resumed.

A migration of a network runs into everything at once: tables of earlier runs left in the migration
database and the target, a site whose tables cannot be read until its time runs out, a site whose
module process is killed with SIGKILL (as the out-of-memory killer does), and finally ``kill -9`` of
the whole ansible-playbook process group in the middle of a site.  ``-e resume=latest`` must then
finish the job without migrating a completed site again and leave nothing behind.

The run gets its own three servers: holding a table lock and killing processes must not disturb
other tests.
"""

import contextlib
import os
import re
import signal

import pytest
from role_helpers import SOURCE_URL, MigrationSetup, SiteKiller, output_of, sites_with_status, wait_for

from tools.mariadb_servers import ServerSet
from tools.wpnetwork import NetworkSpec

SITES = 12
LOCKED_SITE = 4
KILLED_SITE = 6
SITE_TIMEOUT = 10
# Tables of earlier runs.  Those of sites 5 and 7 and of the network would also go when those are migrated;
# those of site 99 (no longer in the network) and 77 go only with the sweep at the start of a run.
STRAY_IN_MIGRATION_DB = ("m7__wp_7_posts", "mnet__wp_blogs", "m99__wp_99_posts")
STRAY_IN_TARGET = ("wfu_stage__wp_5_posts", "wfu_stage__wp_77_options", "wfu_old__wp_77_posts")
SWEPT_ONLY_BY_THE_SWEEP = ("m99__wp_99_posts", "wfu_stage__wp_77_options", "wfu_old__wp_77_posts")


@pytest.fixture(scope="module")
def incident_servers():
    with ServerSet(("source", "target", "migration")) as servers:
        yield servers


def outcome_of(setup, site_id):
    """The site's status once it has one that ends an attempt, else None."""
    state = setup.state()
    status = state["sites"][str(site_id)]["status"] if state and str(site_id) in state["sites"] else None
    return status if status in ("completed", "failed", "timeout", "skipped") else None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def session_members(session_id):
    """pids of the processes still in a session (the killed run's process group started one)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open("/proc/%s/stat" % entry, encoding="utf-8", errors="replace") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[3]) == session_id and fields[0] != "Z":
                    members.append(int(entry))
    return members


def test_incident_then_resume(incident_servers, tmp_path):
    # Sites 6, 9 and 10 carry more content, so their copies take long enough to be caught in the middle.
    spec = NetworkSpec(url=SOURCE_URL, subdomain=True, sites=SITES, seed=22, posts_per_site=1,
                       large_sites={6: 2_000_000, 9: 2_000_000, 10: 2_000_000})
    setup = MigrationSetup(incident_servers, tmp_path, spec)
    for name in STRAY_IN_MIGRATION_DB:
        setup.create_stray_table("migration", name)
    for name in STRAY_IN_TARGET:
        setup.create_stray_table("target", name)
    # Another session holds a write lock on one of site 4's tables: reading it waits until the lock goes.
    blocker = setup.source.connect(setup.source_db)
    blocker.cursor().execute("LOCK TABLES wp_%d_posts WRITE" % LOCKED_SITE)
    killer = SiteKiller(setup, KILLED_SITE)

    run = setup.start(source_env="dev", target_env="uat", site_timeout=SITE_TIMEOUT, env_migrate_kill_grace=30)
    killer.start()
    try:
        assert wait_for(lambda: outcome_of(setup, LOCKED_SITE), 180, "site %d's outcome" % LOCKED_SITE,
                        proc=run) == "timeout"
        assert wait_for(lambda: outcome_of(setup, KILLED_SITE), 120, "site %d's outcome" % KILLED_SITE,
                        proc=run) == "failed"
        # The role's rescue (the surviving parent) dropped what the killed module had copied.
        left_by_killed = [t for t in setup.migration_tables() if t.startswith("m%d__" % KILLED_SITE)]

        def a_later_site_mid_copy():
            state = setup.state()
            if not {7, 8} <= set(sites_with_status(state, "completed")):
                return None
            for site_id in sites_with_status(state, "in_progress"):
                if any(t.startswith("m%d__" % site_id) for t in setup.migration_tables()):
                    return site_id
            return None

        interrupted = wait_for(a_later_site_mid_copy, 120, "a site after 7 and 8 in the middle of its copy",
                               interval=0.02, proc=run)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        killer.stop()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    first_output = output_of(run, tail=20000)

    assert killer.error is None
    assert killer.killed and killer.tables_at_kill, "the module of site %d was never caught copying" % KILLED_SITE
    assert left_by_killed == []
    wait_for(lambda: not session_members(run.pid), 30, "the killed run's processes to be gone")

    # What the kill left: a running migration, one site in progress, its work tables, and the run's locks.
    state = setup.state()
    migration_id = state["id"]
    assert state["status"] == "running"
    assert sites_with_status(state, "in_progress") == [interrupted]
    assert sites_with_status(state, "timeout") == [LOCKED_SITE]
    assert sites_with_status(state, "failed") == [KILLED_SITE]
    assert "killed by signal 9" in state["sites"][str(KILLED_SITE)]["error"]
    assert "did not finish within %d s" % SITE_TIMEOUT in state["sites"][str(LOCKED_SITE)]["error"]
    completed_before = sites_with_status(state, "completed")
    assert set(completed_before) >= {1, 2, 3, 5, 7, 8}, first_output
    assert max(completed_before) < interrupted
    assert any(t.startswith("m%d__" % interrupted) for t in setup.migration_tables())
    for name in SWEPT_ONLY_BY_THE_SWEEP:
        assert name not in setup.migration_tables() + setup.target_tables(), "%s was not swept" % name
    locks = setup.lock_files()
    assert len(locks) == 2 and all(lock["pid"] == run.pid for lock in locks.values()), locks
    assert not pid_alive(run.pid)
    created = {site_id: setup.create_times(site_id) for site_id in completed_before}
    blocker.close()

    resumed = setup.run(resume="latest", site_timeout=120)

    assert resumed.returncode == 0, resumed.stdout[-8000:]
    state = setup.state()
    assert state["id"] == migration_id and state["status"] == "completed"
    assert state["network_tables"]["status"] == "completed" and state["network_tables"]["attempts"] == 1
    assert state["resumes"][-1]["interrupted"] == [interrupted]
    problems = [problem for site_id in range(1, SITES + 1) for problem in setup.site_problems(site_id)]
    assert problems == []
    attempts = {int(site_id): record["attempts"] for site_id, record in state["sites"].items()}
    expected = {site_id: 2 if site_id in (LOCKED_SITE, KILLED_SITE, interrupted) else 1
                for site_id in range(1, SITES + 1)}
    assert attempts == expected
    assert {site_id: setup.create_times(site_id) for site_id in completed_before} == created
    assert all(record["status"] == "completed" for record in state["sites"].values())
    assert "interrupted" in setup.site_log(migration_id, interrupted)
    assert setup.migration_tables() == []
    assert setup.stray_target_tables() == []
    assert setup.lock_files() == {}
    assert re.search(r"localhost\s*:.*failed=0", resumed.stdout)
