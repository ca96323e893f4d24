"""One writer per site: the server-side locks a migration holds, and a module that dies with its playbook.

While a site is migrated, the pipeline holds the site's named lock on the target's server and on the
migration database's server.  A second run of the site waits for it (``lock_wait``) and then fails as
``site_in_use`` naming the holder; a sweep never drops the tables of a site whose lock is held; and a
module whose ansible-playbook was killed stops and undoes its work instead of writing on.
"""

import contextlib
import os
import signal
import subprocess
import textwrap
import threading
import time

import pytest
from helpers import ANSIBLE_PLAYBOOK, MigrationSetup, connect, playbook_env, processes, query, write_inventory
from role_helpers import module_processes

from ansible_collections.wfu.multisite.plugins.module_utils import cleanup, pipeline, server_locks
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import Database
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import SiteMigration
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"


@pytest.fixture(scope="module")
def setup(servers):
    migration = MigrationSetup(servers, NetworkSpec(url=DEV, sites=3, posts_per_site=4),
                               NetworkSpec(url=UAT, sites=3, posts_per_site=2, seed=2))
    yield migration
    migration.drop()


def databases(setup):
    return (Database.from_params(setup.target_env()["db"], role="target", env="uat"),
            Database.from_params(setup.migration_db(), role="migration"))


@contextlib.contextmanager
def target_table_locked(setup, table):
    """Another session holds ``LOCK TABLES <table> WRITE`` in the target: the swap waits, with the site's work
    tables in the migration database and its staging tables in the target."""
    conn = connect(setup.target_server, setup.target_database)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLES `%s` WRITE" % table)
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        conn.close()


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def in_background(setup, site_id, **options):
    """Run a site in a thread; return (thread, outcome dict)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = setup.site(site_id, options=options).run()
        except MigrationError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


def test_a_site_held_by_another_connection_fails_as_in_use_naming_the_holder(setup):
    target, migration = databases(setup)
    # Tables of the run that holds the site: the refused run must not clean them away.
    query(setup.migration_server, setup.migration_database, "CREATE TABLE m2__wp_2_posts (id INT)")
    before = setup.target_fingerprint()
    try:
        for held in (target, migration):
            server = setup.target_server if held is target else setup.migration_server
            with contextlib.closing(connect(server)) as holder:
                name = server_locks.acquire(holder, held, 2, 0)
                started = time.monotonic()
                with pytest.raises(MigrationError) as raised:
                    setup.site(2, options={"lock_wait": 1}).run(timeout=60)
                waited = time.monotonic() - started
            error = raised.value
            assert (error.failure_class, error.reason, error.phase, error.site_id) == (
                "systemic", "site_in_use", "lock", 2), str(error)
            assert "site 2 is in use in %s: connection %d (" % (held, holder.thread_id()) in str(error)
            assert name in str(error) and 1 <= waited < 10
            assert "m2__wp_2_posts" in setup.migration_tables()
            assert setup.target_fingerprint() == before
    finally:
        query(setup.migration_server, setup.migration_database, "DROP TABLE IF EXISTS m2__wp_2_posts")


def test_a_second_run_of_a_site_waits_for_the_first_and_a_sweep_leaves_it_alone(setup):
    """Without the locks the second run's clean, or the sweep, would drop the first run's work tables mid-copy."""
    target, migration = databases(setup)
    with target_table_locked(setup, "wp_3_posts"):
        first, first_outcome = in_background(setup, 3)
        wait_for(lambda: tbl.target_leftovers(setup.target_tables(), "wp_", 3), 30, "the first run's staging")
        second, second_outcome = in_background(setup, 3, lock_wait=120)
        swept = cleanup.sweep(migration, target=target)
        held = {(entry["site_id"], entry["database"]) for entry in swept["in_use"]}
        assert held == {(3, str(target)), (3, str(migration))}
        assert not tbl.work_tables_of(swept["migration_db"], 3) and not swept["target"]
        time.sleep(1)
        assert second.is_alive() and first.is_alive()
    first.join(120)
    second.join(120)
    assert "error" not in first_outcome and "error" not in second_outcome, (first_outcome, second_outcome)
    assert second_outcome["result"]["durations"]["lock"] > first_outcome["result"]["durations"]["lock"]
    assert first_outcome["result"]["locks"] == [server_locks.lock_name(target, 3),
                                                server_locks.lock_name(migration, 3)]
    assert setup.target_site_tables(3) == setup.expected_target_tables(3)
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert tbl.target_leftovers(setup.target_tables(), "wp_") == []


def test_listing_tables_does_not_wait_behind_a_swap_that_waits(servers, fresh_db):
    """A swap's RENAME waiting for a locked live table holds the locks of the other tables it renames; a sweep or a
    site that lists the database meanwhile answers at once (reading information_schema's TABLE_TYPE would wait)."""
    database = fresh_db("target")
    server = servers["target"]
    query(server, database, "CREATE TABLE wfu_stage__wp_9_posts (id INT PRIMARY KEY)")
    query(server, database, "CREATE TABLE wp_9_posts (id INT PRIMARY KEY)")
    query(server, database, "CREATE VIEW wp_9_view AS SELECT id FROM wp_9_posts")
    holder, swapper, reader = connect(server, database), connect(server, database), connect(server, database)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES wp_9_posts WRITE")
        swap = threading.Thread(target=lambda: swapper.cursor().execute(
            "RENAME TABLE wfu_stage__wp_9_posts TO wp_9_new, wp_9_posts TO wfu_old__wp_9_posts"), daemon=True)
        swap.start()
        for _attempt in range(100):
            if query(server, None, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                                   "'RENAME TABLE wfu_stage__wp_9_posts%%'")[0][0]:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        with reader.cursor() as cur:
            cur.execute("SET SESSION max_statement_time = 5")
        assert tbl.list_tables(reader, database) == ["wfu_stage__wp_9_posts", "wp_9_posts"]
        assert tbl.list_views(reader, database) == ["wp_9_view"]
        assert swap.is_alive()
    finally:
        with holder.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        swap.join(30)
        for conn in (holder, swapper, reader):
            conn.close()
    assert tbl.list_tables(connect(server, None), "no_such_database_here") == []


def test_a_failed_run_leaves_its_leftovers_to_a_run_that_took_the_site_meanwhile(setup, monkeypatch):
    """Between a failure and its cleanup the site's locks are free (the call's connections are gone): when another
    run takes the site then, the work tables under the site's names are that run's, and the cleanup keeps off."""
    _target, migration = databases(setup)
    other = connect(setup.migration_server)
    real_cleanup = SiteMigration._cleanup_after_failure

    def another_run_takes_the_site(self, unreachable):
        server_locks.acquire(other, migration, 2, 0)
        return real_cleanup(self, unreachable)

    def replace_fails(*_args, arriving=None, **_kwargs):
        # A replace that follows its table's load is called as the copy starts: fail once the table is there.
        if arriving is not None:
            arriving.wait(60)
        raise RuntimeError("injected failure in the replace")

    monkeypatch.setattr(SiteMigration, "_cleanup_after_failure", another_run_takes_the_site)
    monkeypatch.setattr(pipeline, "replace_in_tables", replace_fails)
    try:
        with pytest.raises(MigrationError) as raised:
            setup.site(2).run(timeout=60)
        assert any("holds its lock now" in note and "connection %d" % other.thread_id() in note
                   for note in raised.value.cleanup), raised.value.cleanup
        assert tbl.work_tables_of(setup.migration_tables(), 2)
    finally:
        other.close()
    assert cleanup.sweep(databases(setup)[1], site_id=2)["migration_db"]
    assert tbl.work_tables_of(setup.migration_tables(), 2) == []


def test_a_module_whose_playbook_is_killed_stops_and_undoes_its_work(setup, tmp_path):
    """kill -9 of the ansible-playbook process group misses the module (workers call setsid): it must stop
    by itself, within seconds, and drop its work and staging tables, while the swap it was doing still waits."""
    environments = {"dev": {"url": DEV, "db": setup.source_env()["db"]}, "uat": {"url": UAT, "db": setup.target_env()["db"]}}
    inventory = write_inventory(tmp_path, environments, setup.migration_db())
    playbook = tmp_path / "site.yml"
    playbook.write_text(textwrap.dedent("""
        - name: Migrate one site
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Migrate site 2
              wfu.multisite.wfu_site_migrate:
                site_id: 2
                source: "{{ wfu_environments.dev | combine({'name': 'dev'}) }}"
                target: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
                migration_db: "{{ wfu_migration_db }}"
                timeout: 600
        """))
    before = setup.target_fingerprint()
    # The module's files (or, on the controller, its forked pipeline child's environment) name this directory.
    module_tmp = str(tmp_path / "ansible-tmp")
    env = dict(playbook_env(), ANSIBLE_REMOTE_TMP=module_tmp)

    def site_processes():
        return [pid for pid in module_processes("wfu_site_migrate", module_tmp) if _state(pid) not in ("Z", None)]

    with target_table_locked(setup, "wp_2_posts"):
        run = subprocess.Popen([ANSIBLE_PLAYBOOK, str(playbook), "-i", inventory], cwd=str(tmp_path),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            wait_for(lambda: tbl.target_leftovers(setup.target_tables(), "wp_", 2), 60, "the module's staging tables")
            modules = site_processes()
            assert modules, "the module process was not found"
            assert any(os.getsid(pid) != os.getpgid(run.pid) for pid in modules), \
                "the module shares the playbook's process group: this test would prove nothing"
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            killed_at = time.monotonic()
            wait_for(lambda: not site_processes(), 10, "the module to stop")
            stopped_after = time.monotonic() - killed_at
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            for pid in site_processes():
                os.kill(pid, signal.SIGKILL)
        # Still inside the table lock: the module stopped on its own, it did not just finish.
        assert stopped_after < 10
        assert tbl.work_tables_of(setup.migration_tables(), 2) == []
        assert tbl.target_leftovers(setup.target_tables(), "wp_") == []
        assert client_programs_on(setup.source.database) == []
    # Nothing was swapped in after the lock went away either.
    time.sleep(1)
    assert setup.target_fingerprint() == before


def _state(pid):
    """The process's state letter (Z: a zombie, gone but not yet reaped), None when there is no such process."""
    with contextlib.suppress(OSError), open("/proc/%d/stat" % pid, "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()[0].decode()
    return None


def client_programs_on(database):
    found = []
    for pid, _ppid, comm, state in processes():
        if comm in ("mariadb", "mariadb-dump") and state != "Z":
            with contextlib.suppress(OSError), open("/proc/%d/cmdline" % pid, "rb") as handle:
                if database.encode() in handle.read():
                    found.append(pid)
    return found
