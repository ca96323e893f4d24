"""The database state backend between processes: claims with one winner, locks that die with their holder.

Every run here is a separate Python process that calls the real ``wfu_migration_state`` code
(``state_actions.run_action``, what the module and the action plugin run) against the session's migration
server, with its settings (password included) handed over on stdin, never on an argv.  A run's locks and
claims are held by its keeper process, in the run's process group: the tests kill that group with SIGKILL,
as AWX's cancel does, and stop the keeper with SIGSTOP to stand for a container that vanished without its
connection being closed.  Verdicts come from the task results and from the rows of the ``wfu_state_*``
tables, read with a plain PyMySQL connection.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import query, table_names

from ansible_collections.wfu.multisite.plugins.module_utils import cleanup
from ansible_collections.wfu.multisite.plugins.module_utils.db import Database

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")
RACERS = 16
STATE_TABLES = ["wfu_state_claims", "wfu_state_locks", "wfu_state_logs", "wfu_state_meta", "wfu_state_migrations",
                "wfu_state_runs"]

# One run: reads its base parameters, then one action per line (JSON), answers one JSON line each.
# "sleep" keeps the run alive until it is killed.
RUN = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, %r)
    from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
        USER_ERRORS, argument_spec, run_action, task_failure)
    base = dict({name: spec.get("default") for name, spec in argument_spec().items()}, **json.loads(input()))
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        given = json.loads(line)
        if given.get("action") == "sleep":
            time.sleep(3600)
        params = dict(base, **given)
        try:
            result = run_action(params, holder_pid=os.getpid())
        except USER_ERRORS as exc:
            result = dict(task_failure(exc, params), failed=True)
        print(json.dumps(result, default=str), flush=True)
""") % COLLECTIONS


class Run:
    """One run (a process in a session of its own) of the state actions on the database backend."""

    def __init__(self, base, home):
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home)
        self.proc = subprocess.Popen([sys.executable, "-c", RUN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, start_new_session=True)
        self.proc.stdin.write(json.dumps(base) + "\n")
        self.proc.stdin.flush()
        self.pid = json.loads(self.proc.stdout.readline())["ready"]

    def send(self, **given):
        self.proc.stdin.write(json.dumps(given) + "\n")
        self.proc.stdin.flush()

    def answer(self):
        line = self.proc.stdout.readline()
        assert line, "the run %d ended without answering" % self.pid
        return json.loads(line)

    def do(self, **given):
        self.send(**given)
        return self.answer()

    def kill_group(self):
        """SIGKILL of the run's process group (the run and its keeper), as AWX cancels a job."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()

    def end(self):
        if self.proc.poll() is None:
            self.kill_group()


@pytest.fixture
def state_db(servers, fresh_db):
    return dict(servers["migration"].connection(), database=fresh_db("migration", prefix="wfustate"))


@pytest.fixture
def runs(tmp_path, state_db):
    """``start(name, **params)``: a run with its own HOME and state_dir, on the database backend of ``state_db``."""
    started = []

    def start(name, **params):
        base = dict(dict(state_backend="database", state_db=state_db, state_dir=str(tmp_path / name / "state")),
                    **params)
        run = Run(base, str(tmp_path / name / "home"))
        started.append(run)
        return run

    yield start
    for run in started:
        run.end()


def rows(servers, state_db, sql):
    return query(servers["migration"], state_db["database"], sql)


def keeper_pid(servers, state_db, holder_pid):
    for (holder,) in rows(servers, state_db, "SELECT holder FROM wfu_state_runs"):
        holder = json.loads(holder)
        if holder["pid"] == holder_pid:
            return holder["keeper_pid"]
    return None


def wait_until(condition, what, timeout=60, detail=lambda: ""):
    """Poll ``condition`` until it holds (a bound against a hang, not a measured time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting for %s: %s" % (what, detail())
        time.sleep(0.1)


def test_sixteen_racers_for_one_site_give_exactly_one_winner(runs, servers, state_db):
    first = runs("creator")
    migration_id = first.do(action="create", source_env="dev", target_env="uat", sites=[1, 2, 3])["migration_id"]
    racers = [runs("racer-%d" % number) for number in range(RACERS)]
    for racer in racers:  # all are started and connected before any claims
        racer.send(action="claim", migration_id=migration_id, site_id=2)
    results = [racer.answer() for racer in racers]

    winners = [result for result in results if result["claimed"]]
    assert len(winners) == 1, results
    winner = winners[0]["holder"]
    for result in results:
        if not result["claimed"]:
            assert result["holder"]["pid"] == winner["pid"]
            assert "site 2 of migration %s is claimed by pid %d on host" % (migration_id, winner["pid"]) \
                in result["claim_refused"]
            assert "still running" in result["claim_refused"]
    claims = rows(servers, state_db, "SELECT migration_id, site_id, holder FROM wfu_state_claims")
    assert [(row[0], row[1], json.loads(row[2])["pid"]) for row in claims] == [(migration_id, 2, winner["pid"])]
    # The winner claiming again keeps it; a loser's release is refused while the winner lives.
    owner = next(racer for racer in racers if racer.pid == winner["pid"])
    again = owner.do(action="claim", migration_id=migration_id, site_id=2)
    assert again["claimed"] is True and again["already_held"] is True and again["changed"] is False
    loser = next(racer for racer in racers if racer.pid != winner["pid"])
    refused = loser.do(action="release", migration_id=migration_id, site_id=2)
    assert refused["failed"] is True and "claimed by pid %d" % winner["pid"] in refused["msg"]
    # A completed site is no longer claimed by the run that completed it.
    owner.do(action="site", migration_id=migration_id, site_id=2, status="in_progress")
    owner.do(action="site", migration_id=migration_id, site_id=2, status="completed")
    assert rows(servers, state_db, "SELECT COUNT(*) FROM wfu_state_claims") == ((0,),)


def test_a_killed_holder_needs_no_unlock_and_a_live_one_is_named(runs, servers, state_db):
    # A lease far longer than the wait below: only the server's release of the killed keeper's lock can free it.
    holder = runs("job-1", awx_job_id="101", state_lease_seconds=3600)
    migration_id = holder.do(action="create", source_env="dev", target_env="uat", sites=[1, 2, 3])["migration_id"]
    assert holder.do(action="lock", target_env="uat", migration_id=migration_id)["changed"] is True
    assert holder.do(action="claim", migration_id=migration_id, site_id=2)["claimed"] is True
    holder.do(action="site", migration_id=migration_id, site_id=1, status="completed")
    holder.do(action="site", migration_id=migration_id, site_id=2, status="in_progress")

    # While it lives, another job (another HOME, another state_dir) is refused with its name.
    other = runs("job-2", awx_job_id="102")
    refused = other.do(action="lock", target_env="uat")
    assert refused["failed"] is True
    assert "held by migration %s (pid %d on host" % (migration_id, holder.pid) in refused["msg"]
    assert "AWX job 101" in refused["msg"] and "still running" in refused["msg"]
    claim = other.do(action="claim", migration_id=migration_id, site_id=2)
    assert claim["claimed"] is False and "claimed by pid %d" % holder.pid in claim["claim_refused"]
    assert other.do(action="load", migration_id="latest")["failed"] is True

    holder.send(action="sleep")
    holder.kill_group()
    # The server drops the keeper's lock with its connection; no unlock, no force.
    lock_state = {}

    def holder_gone():
        lock_state.update(other.do(action="status", migration_id=migration_id)["lock"])
        return lock_state["liveness"] == "dead"

    wait_until(holder_gone, "the killed holder's lock to be seen as dead")
    taken = other.do(action="lock", target_env="uat")
    assert taken["changed"] is True and taken["stale_lock_taken_over"] is True and taken["forced"] is False
    assert taken["previous_holder"]["pid"] == holder.pid
    resumed = other.do(action="load", migration_id="latest", target_env="uat")
    assert resumed["migration_id"] == migration_id and resumed["interrupted"] == [2]
    assert resumed["migration"]["sites_by_status"]["completed"] == [1]
    redo = other.do(action="claim", migration_id=migration_id, site_id=2)
    assert redo["claimed"] is True and redo["dead_holder"] is True
    assert redo["previous_holder"]["pid"] == holder.pid and "clean the site's leftovers and redo it" in \
        redo["claim_note"]
    locks = rows(servers, state_db, "SELECT name, holder FROM wfu_state_locks")
    assert [(name, json.loads(held)["pid"]) for name, held in locks] == [("uat", other.pid)]


def test_a_run_lock_stays_with_the_workflow_while_any_of_its_slices_lives(runs, servers, state_db):
    """Slices of one sliced job share the run lock; the slice whose row it is dies: the lock stays the workflow's
    while another slice lives (another job is refused, naming that slice), and the finish job of the workflow
    waits for the live slice before it closes the migration and releases the lock."""
    first = runs("slice-1", awx_job_id="201", awx_workflow_job_id="200", state_lease_seconds=3600)
    second = runs("slice-2", awx_job_id="202", awx_workflow_job_id="200", state_lease_seconds=3600)
    migration_id = first.do(action="create", source_env="dev", target_env="uat", sites=[1, 2])["migration_id"]
    assert first.do(action="lock", target_env="uat", migration_id=migration_id)["changed"] is True
    assert second.do(action="lock", target_env="uat", migration_id=migration_id)["already_held"] is True
    assert second.do(action="claim", migration_id=migration_id, site_id=2)["claimed"] is True
    second.do(action="site", migration_id=migration_id, site_id=2, status="in_progress")
    first.send(action="sleep")
    first.kill_group()
    # The row still names the first slice, which is gone; the lock is the second's now.
    other = runs("another-job", awx_job_id="301", awx_workflow_job_id="300")
    seen = {}

    def second_named():
        seen.update(other.do(action="status", migration_id=migration_id)["lock"])
        return seen["pid"] == second.pid

    wait_until(second_named, "the lock to be seen as the live slice's", detail=lambda: seen)
    assert seen["liveness"] == "alive" and seen["awx_job_id"] == "202"
    refused = other.do(action="lock", target_env="uat")
    assert refused.get("failed") is True, refused
    assert "pid %d" % second.pid in refused["msg"] and "AWX job 202" in refused["msg"]

    finish = runs("finish", awx_job_id="203", awx_workflow_job_id="200")
    early = finish.do(action="conclude", migration_id=migration_id, conclude_wait=0)
    assert early.get("failed") is True, early
    assert "site 2 is being migrated by pid %d" % second.pid in early["msg"]
    assert "pid %d on host" % second.pid in early["msg"].split("; ")[1]
    assert "shares the run lock of uat, still runs" in early["msg"]
    assert other.do(action="status", migration_id=migration_id)["migration"]["status"] == "running"
    assert [name for name, in rows(servers, state_db, "SELECT name FROM wfu_state_locks")] == ["uat"]

    finish.send(action="conclude", migration_id=migration_id, conclude_wait=60)
    time.sleep(2)
    second.send(action="sleep")
    second.kill_group()
    closed = finish.answer()
    assert not closed.get("failed"), closed
    assert closed["lock_released"] is True and closed["migration"]["status"] != "running"
    assert other.do(action="lock", target_env="uat")["changed"] is True


def test_a_holder_whose_lease_ran_out_is_gone_though_its_connection_stays(runs, servers, state_db):
    holder = runs("vanished", state_lease_seconds=5)
    assert holder.do(action="lock", target_env="uat")["changed"] is True
    keeper = keeper_pid(servers, state_db, holder.pid)
    assert keeper is not None
    os.kill(keeper, signal.SIGSTOP)  # its connection stays open, its lease is no longer renewed
    try:
        other = runs("next", state_lease_seconds=5)
        first = other.do(action="lock", target_env="uat")
        if not first.get("failed"):
            pytest.fail("the lock was taken while the holder's lease still ran: %s" % first)
        assert "pid %d" % holder.pid in first["msg"]
        used = rows(servers, state_db, "SELECT IS_USED_LOCK(lock_name) FROM wfu_state_runs WHERE "
                                       "JSON_VALUE(holder, '$.pid') = %d" % holder.pid)
        assert used[0][0] is not None  # the server still sees the keeper's lock
        result = {}

        def lease_over():
            result.clear()
            result.update(other.do(action="lock", target_env="uat"))
            result["runs"] = rows(servers, state_db, "SELECT JSON_VALUE(holder, '$.pid'), expires > NOW(6), "
                                                     "IS_USED_LOCK(lock_name) FROM wfu_state_runs")
            return not result.get("failed")

        wait_until(lease_over, "the stopped keeper's lease to run out", timeout=30, detail=lambda: result)
        assert result["stale_lock_taken_over"] is True and result["previous_holder"]["pid"] == holder.pid
    finally:
        os.kill(keeper, signal.SIGCONT)


def test_a_newer_schema_is_refused_and_nothing_changes(runs, servers, state_db):
    run = runs("old-collection")
    migration_id = run.do(action="create", source_env="dev", target_env="uat", sites=[1])["migration_id"]
    query(servers["migration"], state_db["database"],
          "UPDATE wfu_state_meta SET value = '2' WHERE name = 'schema_version'")
    before = {name: rows(servers, state_db, "SELECT * FROM %s" % name) for name in STATE_TABLES
              if name != "wfu_state_runs"}
    later = runs("later")
    for given in ({"action": "status"}, {"action": "list"}, {"action": "load", "migration_id": migration_id},
                  {"action": "create", "source_env": "dev", "target_env": "uat", "sites": [1]},
                  {"action": "lock", "target_env": "uat"},
                  {"action": "validate", "source_env": "dev", "target_env": "uat", "environments": {},
                   "migration_db": {}}):
        failed = later.do(**given)
        assert failed["failed"] is True, given
        assert "written by a newer wfu.multisite" in failed["msg"]
        assert "database %s on %s" % (state_db["database"], "127.0.0.1:%d" % state_db["port"]) in failed["msg"]
        assert "%s.wfu_state_meta" % state_db["database"] in failed["msg"] and "upgrade the collection" in failed["msg"]
    assert {name: rows(servers, state_db, "SELECT * FROM %s" % name) for name in before} == before


def test_foreign_tables_under_the_prefix_are_refused(runs, servers, state_db):
    query(servers["migration"], state_db["database"], "CREATE TABLE wfu_state_migrations (id INT PRIMARY KEY)")
    failed = runs("first").do(action="create", source_env="dev", target_env="uat")
    assert failed["failed"] is True and "no wfu_state_meta" in failed["msg"] and "Nothing was changed" in failed["msg"]
    assert table_names(servers["migration"], state_db["database"]) == ["wfu_state_migrations"]


def test_the_sweep_of_the_migration_database_leaves_the_state(runs, servers, state_db):
    run = runs("sweep")
    migration_id = run.do(action="create", source_env="dev", target_env="uat", sites=[3])["migration_id"]
    run.do(action="lock", target_env="uat")
    run.do(action="claim", migration_id=migration_id, site_id=3)
    query(servers["migration"], state_db["database"], "CREATE TABLE m3__wp_3_posts (id INT)")
    query(servers["migration"], state_db["database"], "CREATE TABLE mnet__wp_blogs (id INT)")
    before = {name: rows(servers, state_db, "SELECT * FROM %s" % name) for name in STATE_TABLES
              if name != "wfu_state_runs"}
    swept = cleanup.sweep(Database.from_params(state_db, role="migration"))
    assert sorted(swept["migration_db"]) == ["m3__wp_3_posts", "mnet__wp_blogs"]
    assert table_names(servers["migration"], state_db["database"]) == STATE_TABLES
    assert {name: rows(servers, state_db, "SELECT * FROM %s" % name) for name in before} == before


def test_an_unreachable_state_database_is_named_without_its_password(runs, state_db):
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = runs("nowhere", state_db=dict(state_db, port=port, password="Zq8-state-secret"))
    failed = run.do(action="validate", source_env="dev", target_env="uat", environments={}, migration_db={})
    assert failed["failed"] is True
    assert "the state database" in failed["msg"] and "127.0.0.1:%d" % port in failed["msg"]
    assert "Zq8-state-secret" not in json.dumps(failed)


# -- the role and the playbooks on the database backend --------------------------------------------------------------

def test_env_migrate_on_the_database_is_seen_from_another_home(servers, tmp_path):
    from helpers import ANSIBLE_PLAYBOOK
    from role_helpers import SOURCE_URL, MigrationSetup
    from tools.wpnetwork import NetworkSpec

    setup = MigrationSetup(servers, tmp_path / "run", NetworkSpec(url=SOURCE_URL, subdomain=True, sites=3, seed=9,
                                                                  posts_per_site=1))
    try:
        run = setup.run(source_env="dev", target_env="uat", wfu_state_backend="database")
        assert run.returncode == 0, run.stdout[-6000:]
        assert not os.path.exists(setup.state_dir)  # nothing on files
        found = query(servers["migration"], setup.migration_db, "SELECT id, status, state FROM wfu_state_migrations")
        assert len(found) == 1 and found[0][1] == "completed"
        migration_id, state = found[0][0], json.loads(found[0][2])
        assert sorted(state["sites"]) == ["1", "2", "3"]
        assert all(record["status"] == "completed" and record["attempts"] == 1 for record in state["sites"].values())
        assert setup.sites_in_target() == [1, 2, 3]
        logs = query(servers["migration"], setup.migration_db, "SELECT DISTINCT name FROM wfu_state_logs")
        assert {"site-1", "site-2", "site-3"} <= {row[0] for row in logs}
        # The migration database holds nothing of the run but the state; no lock or claim is left.
        assert table_names(servers["migration"], setup.migration_db) == STATE_TABLES
        assert query(servers["migration"], setup.migration_db, "SELECT COUNT(*) FROM wfu_state_locks") == ((0,),)
        assert query(servers["migration"], setup.migration_db, "SELECT COUNT(*) FROM wfu_state_claims") == ((0,),)
        assert servers["migration"].password not in run.stdout

        # Another controller: a fresh HOME and another state_dir, the same inventory (the same migration db).
        env = dict(setup.env(), HOME=str(tmp_path / "other-home"))
        os.makedirs(env["HOME"])
        for playbook, words in (("wfu.multisite.migration_list", migration_id),
                                ("wfu.multisite.migration_status", "completed")):
            seen = subprocess.run([ANSIBLE_PLAYBOOK, playbook, "-i", setup.inventory, "-e", "wfu_state_backend=database",
                                   "-e", "wfu_state_dir=%s" % (tmp_path / "elsewhere")], cwd=setup.directory, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
            assert seen.returncode == 0, seen.stdout[-4000:]
            assert migration_id in seen.stdout and words in seen.stdout, seen.stdout[-4000:]
            assert servers["migration"].password not in seen.stdout
        files_only = subprocess.run([ANSIBLE_PLAYBOOK, "wfu.multisite.migration_list", "-i", setup.inventory, "-e",
                                     "wfu_state_dir=%s" % (tmp_path / "elsewhere")], cwd=setup.directory, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                                    check=False)
        assert files_only.returncode == 0 and migration_id not in files_only.stdout  # files: another place
    finally:
        setup.drop()


def db_state(servers, setup):
    found = query(servers["migration"], setup.migration_db, "SELECT state FROM wfu_state_migrations") \
        if "wfu_state_migrations" in table_names(servers["migration"], setup.migration_db) else ()
    assert len(found) <= 1
    return json.loads(found[0][0]) if found else None


def sites_in(state, status):
    return sorted(int(key) for key, record in (state or {}).get("sites", {}).items() if record["status"] == status)


def test_a_cancelled_job_is_resumed_by_the_next_from_another_home_without_unlock(servers, tmp_path):
    from helpers import connect
    from role_helpers import SOURCE_URL, MigrationSetup, module_processes
    from tools.wpnetwork import NetworkSpec

    setup = MigrationSetup(servers, tmp_path / "job-1", NetworkSpec(url=SOURCE_URL, subdomain=True, sites=3, seed=23,
                                                                    posts_per_site=1))

    def job(name, **extra_vars):
        """Another AWX-like job: its own HOME and state_dir, the same inventory (the same migration database)."""
        home = tmp_path / name
        os.makedirs(home / "home")
        extra_vars.update(wfu_state_backend="database", wfu_state_dir=str(home / "state"))
        return subprocess.run(setup.argv(extra_vars), cwd=setup.directory, env=dict(setup.env(), HOME=str(home / "home")),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False)

    blocker = connect(setup.source, setup.source_db)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES wp_3_posts WRITE")  # the copy of site 3 waits
        run = setup.start(source_env="dev", target_env="uat", site_timeout=120, wfu_state_backend="database")
        wait_until(lambda: sites_in(db_state(servers, setup), "in_progress") == [3], "site 3 in progress", 180)
        migration_id = db_state(servers, setup)["id"]

        refused = job("job-2", resume="latest")
        assert refused.returncode != 0
        assert "pid %d on host" % run.pid in refused.stdout and "still running" in refused.stdout, \
            refused.stdout[-4000:]
        assert sites_in(db_state(servers, setup), "in_progress") == [3]

        os.killpg(run.pid, signal.SIGKILL)  # AWX cancel
        run.wait(timeout=60)
    finally:
        blocker.close()
    wait_until(lambda: not module_processes("wfu_site_migrate", setup.module_tmp), "the killed job's modules to stop")
    state = db_state(servers, setup)
    assert (sites_in(state, "completed"), sites_in(state, "in_progress")) == ([1, 2], [3])
    assert len(rows(servers, {"database": setup.migration_db}, "SELECT name FROM wfu_state_locks")) == 2

    resumed = job("job-3", resume="latest")

    try:
        assert resumed.returncode == 0, resumed.stdout[-6000:]
        state = db_state(servers, setup)
        assert state["id"] == migration_id and state["status"] == "completed"
        assert {key: record["attempts"] for key, record in state["sites"].items()} == {"1": 1, "2": 1, "3": 2}
        assert state["resumes"][-1]["interrupted"] == [3]
        assert setup.sites_in_target() == [1, 2, 3]
        assert [problem for site_id in (1, 2, 3) for problem in setup.site_problems(site_id)] == []
        # No unlock and no force: the dead job's locks were taken over, and the output says so.
        assert "Took over lock 'uat' of pid %d on host" % run.pid in \
            " ".join(resumed.stdout.split()), resumed.stdout[-6000:]
        assert rows(servers, {"database": setup.migration_db}, "SELECT COUNT(*) FROM wfu_state_locks") == ((0,),)
        assert table_names(servers["migration"], setup.migration_db) == STATE_TABLES
    finally:
        setup.drop()
