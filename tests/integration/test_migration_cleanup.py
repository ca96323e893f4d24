"""The sweep (wfu_migration_cleanup) against real servers: what it drops, what it never touches, and its time limit.

A sweep of one site drops that site's marked tables; a full sweep empties the migration database of
everything no live run owns.  Never touched: ``wfu_state_*`` tables, and the tables of a site whose
server-side lock a live connection holds (a run is migrating it).
"""

import contextlib
import textwrap
import time

import pytest
from helpers import fingerprint, frozen, query, run_playbook, table_names, write_inventory

from ansible_collections.wfu.multisite.plugins.module_utils import cleanup, server_locks
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, Database
from tools.mariadb_servers import ServerSet

MIGRATION_TABLES = ["m2__wp_2_posts", "m2__wp_2_options", "m20__wp_20_posts", "mnet__wp_blogs", "m2_wp_2_posts",
                    "wp_7_posts", "notes", "wfu_state_migrations", "wfu_state_sites"]
MIGRATION_VIEWS = ["old_report"]
TARGET_TABLES = ["wp_2_posts", "wp_2_options", "wp_blogs", "wp_20_posts", "wfu_stage__wp_2_posts", "wfu_old__wp_2_options",
                 "wfu_stage__wp_20_posts", "wfu_old__wp_blogs", "wfu_stage_wp_2_posts", "wfu_stage__other_posts"]


@pytest.fixture
def leftovers(servers, fresh_db):
    """``(migration, target)`` Databases holding the tables above (and a view in the migration database)."""
    migration, target = fresh_db("migration"), fresh_db("target")
    for server, database, names in (("migration", migration, MIGRATION_TABLES), ("target", target, TARGET_TABLES)):
        for name in names:
            query(servers[server], database, "CREATE TABLE `%s` (id INT PRIMARY KEY)" % name)
    for name in MIGRATION_VIEWS:
        query(servers["migration"], migration, "CREATE VIEW `%s` AS SELECT id FROM notes" % name)
    return (Database.from_params(servers["migration"].connection(migration), role="migration"),
            Database.from_params(servers["target"].connection(target), role="target", env="uat"))


def test_sweep_of_one_site_drops_its_marked_tables_only(servers, leftovers):
    migration, target = leftovers
    mig, tgt = servers["migration"], servers["target"]
    fingerprints = (fingerprint(mig, migration.database, MIGRATION_TABLES), fingerprint(tgt, target.database))

    dry = cleanup.sweep(migration, site_id=2, target=target, check_mode=True)
    assert dry == {"migration_db": ["m2__wp_2_options", "m2__wp_2_posts"],
                   "target": ["wfu_old__wp_2_options", "wfu_stage__wp_2_posts"], "restored": [], "in_use": [],
                   "changed": True}
    assert (fingerprint(mig, migration.database, MIGRATION_TABLES), fingerprint(tgt, target.database)) == fingerprints

    assert cleanup.sweep(migration, site_id="2", target=target) == dry
    assert cleanup.sweep(migration, site_id=2, target=target) == {"migration_db": [], "target": [], "restored": [],
                                                                  "in_use": [], "changed": False}
    assert sorted(table_names(mig, migration.database)) == sorted(
        set(MIGRATION_TABLES + MIGRATION_VIEWS) - {"m2__wp_2_posts", "m2__wp_2_options"})
    network = cleanup.sweep(migration, site_id="network", target=target)
    assert (network["migration_db"], network["target"]) == (["mnet__wp_blogs"], ["wfu_old__wp_blogs"])


def test_full_sweep_empties_the_migration_database_except_the_state_tables(servers, leftovers):
    migration, target = leftovers
    mig, tgt = servers["migration"], servers["target"]
    before = table_names(mig, migration.database)

    dry = cleanup.sweep(migration, target=target, check_mode=True)
    assert table_names(mig, migration.database) == before
    # Everything but the state store's tables: ours, the ones another tool left (wp_7_posts, notes), views.
    everything_else = sorted(set(MIGRATION_TABLES + MIGRATION_VIEWS) - {"wfu_state_migrations", "wfu_state_sites"})
    assert dry["migration_db"] == everything_else and dry["in_use"] == []

    kept = cleanup.sweep(migration, target=target, keep_backup_tables=True)
    assert kept["migration_db"] == everything_else
    assert kept["target"] == ["wfu_stage__other_posts", "wfu_stage__wp_20_posts", "wfu_stage__wp_2_posts"]
    assert table_names(mig, migration.database) == ["wfu_state_migrations", "wfu_state_sites"]
    everything = cleanup.sweep(migration, target=target)
    assert everything == {"migration_db": [], "target": ["wfu_old__wp_2_options", "wfu_old__wp_blogs"],
                          "restored": [], "in_use": [], "changed": True}
    assert cleanup.sweep(migration, target=target)["changed"] is False
    # In the target only marked tables go; a look-alike without the double underscore stays.
    assert table_names(tgt, target.database) == sorted(["wp_2_posts", "wp_2_options", "wp_blogs", "wp_20_posts",
                                                        "wfu_stage_wp_2_posts"])


def test_sweep_leaves_the_tables_of_a_site_that_a_live_connection_holds(servers, leftovers):
    """A run migrating site 20 (and the network tables) holds their locks: no sweep drops their tables."""
    migration, target = leftovers
    mig, tgt = servers["migration"], servers["target"]
    with contextlib.closing(mig.connect()) as run_on_migration, contextlib.closing(tgt.connect()) as run_on_target:
        server_locks.acquire(run_on_migration, migration, 20, 0)
        server_locks.acquire(run_on_migration, migration, "network", 0)
        server_locks.acquire(run_on_target, target, 20, 0)
        for check_mode in (True, False):
            result = cleanup.sweep(migration, target=target, check_mode=check_mode)
            in_use = {(entry["site_id"], entry["database"]): entry for entry in result["in_use"]}
            assert set(in_use) == {(20, str(migration)), ("network", str(migration)), (20, str(target))}
            assert in_use[(20, str(migration))]["tables"] == ["m20__wp_20_posts"]
            assert in_use[("network", str(migration))]["tables"] == ["mnet__wp_blogs"]
            assert in_use[(20, str(target))]["tables"] == ["wfu_stage__wp_20_posts"]
            assert "connection %d (" % run_on_migration.thread_id() in in_use[(20, str(migration))]["holder"]
            assert "connection %d (" % run_on_target.thread_id() in in_use[(20, str(target))]["holder"]
            assert not {"m20__wp_20_posts", "mnet__wp_blogs", "wfu_stage__wp_20_posts"} & set(
                result["migration_db"] + result["target"])
        assert {"m20__wp_20_posts", "mnet__wp_blogs"} <= set(table_names(mig, migration.database))
        one_site = cleanup.sweep(migration, site_id=20, target=target)
        assert (one_site["migration_db"], one_site["target"], len(one_site["in_use"])) == ([], [], 2)
        assert "wfu_stage__wp_20_posts" in table_names(tgt, target.database)
    # The holder's connection is gone, and its locks with it.
    after = cleanup.sweep(migration, target=target)
    assert (after["migration_db"], after["target"], after["in_use"]) == (
        ["m20__wp_20_posts", "mnet__wp_blogs"], ["wfu_stage__wp_20_posts"], [])


def test_sweep_refuses_a_migration_db_that_is_an_environment(servers, leftovers):
    migration, target = leftovers
    before = table_names(servers["migration"], migration.database)
    same_place = Database.from_params(dict(servers["migration"].connection(migration.database), host="localhost"))
    with pytest.raises(ConfigError, match="environment uat"):
        cleanup.sweep(migration, protected={"dev": target, "uat": same_place})
    assert table_names(servers["migration"], migration.database) == before


def test_full_sweep_refuses_a_database_that_holds_a_network(servers, fresh_db):
    database = fresh_db("migration")
    for name in ("wp_blogs", "wp_site", "wp_sitemeta", "wp_options", "m3__wp_3_posts"):
        query(servers["migration"], database, "CREATE TABLE `%s` (id INT)" % name)
    migration = Database.from_params(servers["migration"].connection(database), role="migration")
    with pytest.raises(ConfigError, match="WordPress network tables wp_"):
        cleanup.sweep(migration)
    assert len(table_names(servers["migration"], database)) == 5
    # A site's own sweep stays possible: it drops only marked tables.
    assert cleanup.sweep(migration, site_id=3)["migration_db"] == ["m3__wp_3_posts"]


def test_cleanup_puts_back_a_replaced_table_whose_live_table_is_missing(servers, fresh_db):
    """After an undo that could not finish, wfu_old__X may be the only copy of X: it is restored, not dropped."""
    migration, target = fresh_db("migration"), fresh_db("target")
    query(servers["target"], target, "CREATE TABLE `wfu_old__wp_7_posts` (id INT PRIMARY KEY)")
    query(servers["target"], target, "INSERT INTO `wfu_old__wp_7_posts` VALUES (1), (2)")
    query(servers["target"], target, "CREATE TABLE `wfu_stage__wp_7_posts` (id INT PRIMARY KEY)")
    result = cleanup.sweep(Database.from_params(servers["migration"].connection(migration)), site_id=7,
                           target=Database.from_params(servers["target"].connection(target)))
    assert (result["target"], result["restored"]) == (["wfu_stage__wp_7_posts"], ["wfu_old__wp_7_posts"])
    assert table_names(servers["target"], target) == ["wp_7_posts"]
    assert query(servers["target"], target, "SELECT COUNT(*) FROM wp_7_posts")[0][0] == 2


CLEANUP_TIMEOUT = 5


def test_cleanup_module_returns_within_its_timeout_when_a_server_hangs(servers, tmp_path):
    """The rescue's cleanup must not wait for a server that accepts connections and never answers."""
    with ServerSet(("migration",)) as private:
        server = private["migration"]
        query(server, None, "CREATE DATABASE wp_migration")
        query(server, "wp_migration", "CREATE TABLE m4__wp_4_posts (id INT)")
        inventory = write_inventory(tmp_path, {"uat": {"url": "https://uat.example.edu",
                                                       "db": servers["target"].connection("nothing_here")}},
                                    server.connection("wp_migration"))
        playbook = tmp_path / "cleanup.yml"
        playbook.write_text(textwrap.dedent("""
            - name: Clean up
              hosts: localhost
              gather_facts: false
              tasks:
                - name: Drop site 4's leftovers
                  wfu.multisite.wfu_migration_cleanup:
                    migration_db: "{{ wfu_migration_db }}"
                    site_id: "4"
                    timeout: %d
                  register: swept
                  ignore_errors: true
                - name: Show the result
                  ansible.builtin.debug:
                    msg: "RESULT {{ swept.failure_class }} {{ swept.reason }} {{ swept.msg }}"
            """ % CLEANUP_TIMEOUT))
        with frozen(server):
            started = time.monotonic()
            done = run_playbook(str(playbook), inventory, timeout=120)
            elapsed = time.monotonic() - started
        output = " ".join(done.stdout.split())
        assert "RESULT systemic server_not_answering" in output, done.stdout[-3000:]
        assert "the migration database (127.0.0.1:%d/wp_migration) did not answer" % server.port in output
        # The module's own limit plus the probe that names the server; the rest is ansible-playbook starting.
        assert elapsed < CLEANUP_TIMEOUT + 20, elapsed
        assert server.password not in done.stdout
        assert table_names(server, "wp_migration") == ["m4__wp_4_posts"]
        assert tbl.work_tables_of(table_names(server, "wp_migration")) == ["m4__wp_4_posts"]
