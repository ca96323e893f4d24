"""The run locks seen from outside a live run: other playbooks are refused, a forced unlock warns, a killed run resumes.

A run of ``wfu.multisite.env_migrate`` holds ``<state_dir>/locks/uat.lock`` (the target) and the migration
database's lock, both naming its ansible-playbook process.  To keep the run live for exactly as long as a test
needs, another session holds ``LOCK TABLES ... WRITE`` on one table of a later site, in the source (the copy of
that site waits) or in the target (its swap waits, with its work and staging tables in place): the run migrates
the sites before it, then waits on that site until the test closes the session.  Meanwhile ``migrate_site``,
``migration_cleanup`` and ``force_unlock`` without force must be refused naming the holder's pid and change
nothing; ``force=true`` removes the lock and says whose it was.  A run killed with ``kill -9`` of its process
group leaves its state and locks, and ``-e resume=latest`` (first narrowed by ``exclude_sites``) finishes the
job without migrating a completed site again.  Outcomes are read from the lock files, the state and the databases.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
from helpers import ANSIBLE_PLAYBOOK, connect, query, table_names
from role_helpers import (SOURCE_URL, TARGET_URL, MigrationSetup, module_processes, output_of, sites_with_status,
                          wait_for)

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from tools.wpnetwork import NetworkSpec, load_network

TARGET_LOCK = "uat.lock"
# Bounds a site in case the blocker were never released; the tests release it within seconds.
SITE_TIMEOUT = 120


@pytest.fixture
def make_setup(servers, tmp_path):
    made = []

    def make(sites, seed, name="run", target_loaded=False):
        """A network of ``sites`` sites in dev; with ``target_loaded`` uat already holds one (a refresh)."""
        spec = NetworkSpec(url=SOURCE_URL, subdomain=True, sites=sites, seed=seed, posts_per_site=1)
        setup = MigrationSetup(servers, tmp_path / name, spec)
        made.append(setup)
        if target_loaded:
            load_network(setup.target.connection(), setup.target_db,
                         NetworkSpec(url=TARGET_URL, subdomain=True, sites=sites, seed=seed + 100, posts_per_site=1))
        return setup

    yield make
    for setup in made:
        setup.drop()


# -- holding a run at one site ---------------------------------------------------------------------------------------

class SiteBlocker:
    """Another session's ``LOCK TABLES wp_<site>_posts WRITE``: in the source the run's copy of that site waits,
    in the target its swap.  A query that opens that table waits as well (``information_schema`` over the whole
    schema does, for CREATE_TIME), so the tests read table names only, or one other table at a time."""

    def __init__(self, setup, site_id, where):
        server, database = {"source": (setup.source, setup.source_db), "target": (setup.target, setup.target_db)}[where]
        self.conn = connect(server, database)
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLES wp_%d_posts WRITE" % site_id)

    def release(self):
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def at_the_swap(setup, site_id):
    """Every table of the site is staged in the target (its swap waits), and neither database changes any more;
    returns the site's work tables in the migration database then."""
    source_tables = tbl.site_tables(table_names(setup.source, setup.source_db), setup.spec.prefix, site_id)
    staged = {tbl.stage_table(name) for name in source_tables}
    before = (setup.migration_tables(), setup.target_tables())
    if not staged <= set(before[1]):
        return None
    time.sleep(0.5)
    if (setup.migration_tables(), setup.target_tables()) != before:
        return None
    return tbl.work_tables_of(before[0], site_id)


@contextlib.contextmanager
def run_held_at(setup, site_id, where="source", **extra_vars):
    """Start a new dev → uat run and yield it once it is in ``site_id``, held there (``where``: the source's
    table is locked, or the target's, and then the site has reached its swap); kill it if the test fails."""
    blocker = SiteBlocker(setup, site_id, where)
    run = setup.start(source_env="dev", target_env="uat", site_timeout=SITE_TIMEOUT, **extra_vars)
    run.blocker = blocker
    try:
        wait_for(lambda: site_id in sites_with_status(setup.state(), "in_progress"), 120,
                 "site %d in progress" % site_id, proc=run)
        if where == "target":
            wait_for(lambda: at_the_swap(setup, site_id), 60, "site %d waiting at its swap" % site_id, proc=run)
        yield run
    finally:
        blocker.release()
        if run.poll() is None:
            kill_run(setup, run)


def kill_run(setup, run):
    """``kill -9`` of the run's process group; wait until its processes and its module processes (they run in a
    session of their own and stop by themselves once the playbook is gone) have ended."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    wait_for(lambda: not session_members(run.pid), 30, "the killed run's processes to be gone")
    wait_for(lambda: not module_processes("wfu_site_migrate", setup.module_tmp), 60,
             "the killed run's module processes to stop")


def session_members(session_id):
    """pids of the live (non-zombie) processes of a session; a run started by ``setup.start`` has its own."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open("/proc/%s/stat" % entry, encoding="utf-8", errors="replace") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
                    members.append(int(entry))
    return members


def read_locks(setup):
    """``setup.lock_files()``, retried when a lock goes between listing the folder and reading it."""
    for _attempt in range(20):
        try:
            return setup.lock_files()
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.01)
    return setup.lock_files()


def wait_for_end_watching_locks(setup, run, timeout=180):
    """Wait for the run to end; until it does, every lock file present must name it. Returns the pids seen."""
    seen = set()
    deadline = time.monotonic() + timeout
    while run.poll() is None:
        assert time.monotonic() < deadline, "the run did not end within %ss:\n%s" % (timeout, output_of(run))
        locks = read_locks(setup)
        holders = {name: lock.get("pid") for name, lock in locks.items()}
        assert all(pid == run.pid for pid in holders.values()), (run.pid, holders)
        seen.update(holders.values())
        time.sleep(0.05)
    return seen


# -- other playbooks --------------------------------------------------------------------------------------------------

def playbook_argv(setup, playbook, extra_vars):
    """argv of ``ansible-playbook wfu.multisite.<playbook>`` with the setup's inventory (its group_vars name the
    environments, the migration database and ``wfu_state_dir``), as ``MigrationSetup.argv`` builds env_migrate's."""
    argv = [ANSIBLE_PLAYBOOK, "wfu.multisite.%s" % playbook, "-i", setup.inventory,
            "-e", json.dumps({"wfu_state_dir": setup.state_dir})]
    for key, value in extra_vars.items():
        argv += ["-e", json.dumps({key: value})]
    return argv


def start_playbook(setup, playbook, **extra_vars):
    return subprocess.Popen(playbook_argv(setup, playbook, extra_vars), cwd=setup.directory, env=setup.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_playbooks(setup, requests, timeout=240):
    """Run several playbooks side by side; ``{label: (returncode, output)}``."""
    started = {label: start_playbook(setup, playbook, **extra_vars)
               for label, (playbook, extra_vars) in requests.items()}
    done = {}
    for label, proc in started.items():
        try:
            output, _errors = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        done[label] = (proc.returncode, output)
    return done


def flat(text):
    """Output with every run of whitespace made one space (Ansible wraps long warnings)."""
    return " ".join(text.split())


def attempts(state):
    return {int(site_id): record["attempts"] for site_id, record in state["sites"].items()}


def create_times(setup, site_id):
    """``{table: CREATE_TIME}`` of a site's tables in the target (a table migrated again is created anew).

    One table at a time: a query over the whole schema would open the table another session holds locked
    and wait for it.
    """
    found = {}
    for name in tbl.site_tables(setup.target_tables(), setup.spec.prefix, site_id):
        rows = query(setup.target, None, "SELECT CREATE_TIME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                                         "AND TABLE_NAME = %s", (setup.target_db, name))
        found[name] = rows[0][0]
    return found


def migration_lock_name(locks):
    names = [name for name in locks if name.startswith("migration-db-")]
    assert len(names) == 1, locks
    return names[0]


# -- the tests --------------------------------------------------------------------------------------------------------

def test_other_playbooks_are_refused_while_a_run_is_live(make_setup):
    setup = make_setup(sites=6, seed=61, target_loaded=True)
    held_site = 4

    with run_held_at(setup, held_site, where="target") as run:
        state = setup.state()
        migration_id = state["id"]
        assert sites_with_status(state, "completed") == [1, 2, 3]
        locks_before = read_locks(setup)
        holder_pid = locks_before[TARGET_LOCK]["pid"]
        assert holder_pid == run.pid
        assert set(locks_before) == {TARGET_LOCK, migration_lock_name(locks_before)}
        assert all(lock["pid"] == holder_pid for lock in locks_before.values()), locks_before
        assert locks_before[TARGET_LOCK]["migration_id"] == migration_id
        # Site 4 waits at its swap: its work tables and staging tables are what a cleanup would drop.
        work_tables_before = setup.migration_tables()
        target_tables_before = setup.target_tables()
        assert tbl.work_tables_of(work_tables_before, held_site), work_tables_before
        assert tbl.target_leftovers(target_tables_before, setup.spec.prefix, held_site), target_tables_before
        site2_created = create_times(setup, 2)

        refused = run_playbooks(setup, {
            "migrate_site": ("migrate_site", {"site_id": 2, "source_env": "dev", "target_env": "uat"}),
            "cleanup": ("migration_cleanup", {"target_env": "uat"}),
            "force_unlock": ("migration_cleanup", {"force_unlock": "uat"}),
        })

        assert run.poll() is None, "the live run ended while the others were refused:\n" + output_of(run)
        for label, (returncode, output) in refused.items():
            assert returncode != 0, (label, output[-4000:])
            assert "Traceback" not in output, (label, output[-4000:])
            text = flat(output)
            assert re.search(r"\(pid %d on host " % holder_pid, text), (label, output[-4000:])
            assert "which is still running" in text, (label, output[-4000:])
            assert "kill %d" % holder_pid in text, (label, output[-4000:])
        assert "lock 'uat' (target environment uat) is held by migration %s" % migration_id \
            in flat(refused["migrate_site"][1])
        # The cleanup asks for the migration database's lock first; the live run holds it.
        assert "lock '%s'" % migration_lock_name(locks_before)[:-len(".lock")] in flat(refused["cleanup"][1])
        assert "remove it with force: true" in flat(refused["force_unlock"][1])
        assert "Site 2 was not migrated" in flat(refused["migrate_site"][1])

        # Nothing was touched: the locks are still the live run's, its work tables and the target are as they were.
        assert read_locks(setup) == locks_before
        held = setup.state()["sites"][str(held_site)]
        assert held["status"] == "in_progress", held
        assert setup.migration_tables() == work_tables_before, held
        assert setup.target_tables() == target_tables_before, held
        assert create_times(setup, 2) == site2_created
        assert setup.state()["sites"]["2"]["attempts"] == 1

        run.blocker.release()
        holders_seen = wait_for_end_watching_locks(setup, run)

    output = output_of(run, tail=20000)
    assert run.returncode == 0, output
    assert holders_seen == {run.pid}
    state = setup.state()
    assert state["id"] == migration_id and state["status"] == "completed"
    assert sites_with_status(state, "completed") == [1, 2, 3, 4, 5, 6]
    assert sites_with_status(state, "failed") == sites_with_status(state, "timeout") == []
    assert attempts(state) == {site_id: 1 for site_id in range(1, 7)}
    assert [problem for site_id in range(1, 7) for problem in setup.site_problems(site_id)] == []
    assert create_times(setup, 2) == site2_created
    assert read_locks(setup) == {}
    assert setup.migration_tables() == []
    assert setup.stray_target_tables() == []


def test_forced_unlock_removes_a_live_runs_lock_and_says_whose_it_was(make_setup):
    setup = make_setup(sites=4, seed=62)

    with run_held_at(setup, 3) as run:
        migration_id = setup.state()["id"]
        locks_before = read_locks(setup)
        assert locks_before[TARGET_LOCK]["pid"] == run.pid
        db_lock = migration_lock_name(locks_before)

        returncode, output = next(iter(run_playbooks(setup, {
            "forced": ("migration_cleanup", {"force_unlock": "uat", "force": True})}).values()))

        assert returncode == 0, output[-4000:]
        assert "Traceback" not in output
        assert run.poll() is None, output_of(run)
        text = flat(output)
        warning = re.search(r"\[WARNING\]: (Removed lock 'uat' of .*?If it still runs, it now runs beside this one\.)",
                            text)
        assert warning, output[-4000:]
        assert re.search(r"Removed lock 'uat' of migration %s \(pid %d on host \S+, since [^)]*\), whose run is still "
                         r"running\." % (re.escape(migration_id), run.pid), warning.group(1)), warning.group(1)
        locks = read_locks(setup)
        assert TARGET_LOCK not in locks
        # Only the lock asked for went: the migration database's is still the live run's.
        assert locks == {db_lock: locks_before[db_lock]}

        run.blocker.release()
        run.wait(timeout=180)

    output = output_of(run, tail=30000)
    assert "Traceback" not in output, output
    state = setup.state()
    assert state["status"] != "running", output
    assert read_locks(setup) == {}


def test_a_bad_setting_leaves_no_migration_and_no_lock(make_setup):
    setup = make_setup(sites=2, seed=63)

    run = setup.run(source_env="dev", target_env="uat", site_timeout=-5)

    assert run.returncode != 0
    assert "site_timeout must be at least 1, not -5" in run.stdout, run.stdout[-3000:]
    assert setup.migration_ids() == []
    assert read_locks(setup) == {}
    assert setup.target_tables() == [] and setup.migration_tables() == []


def test_a_killed_run_resumes_with_filters_then_completes(make_setup):
    setup = make_setup(sites=4, seed=64)

    with run_held_at(setup, 3) as run:
        kill_run(setup, run)

    # What the kill left: a running migration with site 3 in progress, and the dead run's two locks.
    state = setup.state()
    migration_id = state["id"]
    assert state["status"] == "running"
    assert (sites_with_status(state, "completed"), sites_with_status(state, "in_progress"),
            sites_with_status(state, "pending")) == ([1, 2], [3], [4])
    locks = read_locks(setup)
    assert len(locks) == 2 and all(lock["pid"] == run.pid for lock in locks.values()), locks
    created = {site_id: create_times(setup, site_id) for site_id in (1, 2)}

    narrowed = setup.run(resume="latest", exclude_sites="4")

    assert narrowed.returncode != 0, narrowed.stdout[-6000:]
    assert "Traceback" not in narrowed.stdout
    state = setup.state()
    assert state["id"] == migration_id and state["status"] == "paused", narrowed.stdout[-6000:]
    assert state["resumes"][-1]["interrupted"] == [3]
    assert (sites_with_status(state, "completed"), sites_with_status(state, "pending")) == ([1, 2, 3], [4])
    assert attempts(state) == {1: 1, 2: 1, 3: 2, 4: 0}
    assert setup.sites_in_target() == [1, 2, 3]
    assert {site_id: create_times(setup, site_id) for site_id in (1, 2)} == created
    assert "Migration %s ended paused" % migration_id in flat(narrowed.stdout)
    assert read_locks(setup) == {}

    resumed = setup.run(resume="latest")

    assert resumed.returncode == 0, resumed.stdout[-6000:]
    state = setup.state()
    assert state["id"] == migration_id and state["status"] == "completed"
    assert sites_with_status(state, "completed") == [1, 2, 3, 4]
    assert attempts(state) == {1: 1, 2: 1, 3: 2, 4: 1}
    assert {site_id: create_times(setup, site_id) for site_id in (1, 2)} == created
    assert [problem for site_id in range(1, 5) for problem in setup.site_problems(site_id)] == []
    assert read_locks(setup) == {}
    assert setup.migration_tables() == []
    assert setup.stray_target_tables() == []


def test_the_migration_database_lock_names_the_live_migration(make_setup):
    setup = make_setup(sites=3, seed=65)

    with run_held_at(setup, 2) as run:
        migration_id = setup.state()["id"]
        locks = read_locks(setup)
        db_lock = migration_lock_name(locks)
        returncode, output = next(iter(run_playbooks(setup, {"cleanup": ("migration_cleanup", {})}).values()))
        run.blocker.release()
        run.wait(timeout=120)

    assert returncode != 0 and "(pid %d on host " % run.pid in flat(output), output[-4000:]
    assert run.returncode == 0, output_of(run)
    # A refusal over the migration database's lock should say which migration the live run is doing,
    # as one over the target's lock does.
    assert "is held by migration %s (pid %d" % (migration_id, run.pid) in flat(output), output[-4000:]
    assert locks[db_lock]["migration_id"] == migration_id, locks[db_lock]
