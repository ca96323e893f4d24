"""The pipeline's modules and the migrate_site playbook in real ansible-playbook runs.

The inventory holds the environments the way a user's does: group_vars with
wfu_environments (passwords included) and wfu_migration_db.  While a migration
runs, a thread reads the command line of every process on the machine and
looks for the password.
"""

import json
import os
import subprocess
import textwrap

import pytest
from helpers import (CmdlineWatcher, MigrationSetup, addresses, fingerprint, query, run_playbook, table_names,
                     write_inventory)

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
SITE_TABLES = sorted(("commentmeta", "comments", "links", "options", "postmeta", "posts", "term_relationships",
                      "term_taxonomy", "termmeta", "terms"))


@pytest.fixture(scope="module")
def migration(servers, tmp_path_factory):
    """dev (sites 1, 2, 3, 20; site 2 holds a few MB) → uat, with an inventory for ansible-playbook."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, site_ids=[2, 3, 20], posts_per_site=4,
                                                large_sites={2: 3_000_000}),
                           NetworkSpec(url=UAT, site_ids=[2, 3, 20], posts_per_site=2, seed=2))
    # Sizes come from InnoDB's statistics: make them current, as they are on a server that has been up a while.
    query(setup.source.server, setup.source.database, "ANALYZE TABLE " + ", ".join(
        "`%s`" % t for site_id in (1, 2, 3, 20) for t in setup.source.site_tables(site_id)))
    directory = tmp_path_factory.mktemp("inventory")
    environments = {
        "dev": {"url": DEV, "db": setup.source.server.connection(setup.source.database)},
        "uat": {"url": UAT, "db": setup.target_server.connection(setup.target_database), "table_prefix": "wp_"},
    }
    setup.inventory = write_inventory(directory, environments, setup.migration_db())
    setup.password = servers["source"].password
    yield setup
    setup.drop()


def write_playbook(directory, name, text):
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(text))
    return path


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_the_cmdline_watcher_sees_a_password_on_argv():
    """The watcher below must be able to fail: a short-lived process with the secret in its argv is caught."""
    secret = "not-a-real-password-%d" % os.getpid()
    with CmdlineWatcher(secret) as watcher:
        subprocess.run(["sh", "-c", "sleep 0.3", secret], check=True)
    assert [leak[1] for leak in watcher.leaks][:1] == ["sh"]


def test_migrate_site_playbook_keeps_the_password_off_argv_and_output(migration, tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()  # work_dir must be an existing directory, as for env_migrate
    with CmdlineWatcher(migration.password, interval=0.005) as watcher:
        done = run_playbook("wfu.multisite.migrate_site", migration.inventory, "-vvv",
                            extra_vars={"site_id": 2, "source_env": "dev", "target_env": "uat",
                                        "work_dir": str(work_dir)})
    url = addresses(UAT, migration.source.spec)[2][2]
    assert "Site 2 is at %s in uat" % url in done.stdout
    assert migration.password not in done.stdout
    assert watcher.leaks == []
    # The watcher did see the processes that matter: the dump, the client, the module's Python.
    assert watcher.seen.get("mariadb-dump") and watcher.seen.get("mariadb") and watcher.scans > 20
    assert query(migration.target_server, migration.target_database,
                 "SELECT option_value FROM wp_2_options WHERE option_name IN ('siteurl', 'home')") == ((url,), (url,))
    assert migration.migration_tables() == []
    # Option files held the password only while the tools ran.
    assert os.listdir(work_dir) == []


def test_migrate_site_playbook_in_check_mode_shows_the_plan(migration):
    before = (migration.target_fingerprint(), fingerprint(migration.migration_server, migration.migration_database))
    done = run_playbook("wfu.multisite.migrate_site", migration.inventory, "--check",
                        extra_vars={"site_id": 3, "source_env": "dev", "target_env": "uat"})
    assert "Plan for site 3" in done.stdout and "wp_3_posts" in done.stdout
    assert "uat.example.edu" in done.stdout and migration.password not in done.stdout
    assert (migration.target_fingerprint(), fingerprint(migration.migration_server,
                                                        migration.migration_database)) == before


def test_failed_site_is_reported_and_its_leftovers_dropped(migration):
    """Site 7 is not in the network; leftovers of an earlier attempt at it are swept by the playbook's rescue."""
    query(migration.migration_server, migration.migration_database, "CREATE TABLE m7__wp_7_posts (id INT)")
    query(migration.target_server, migration.target_database, "CREATE TABLE wfu_stage__wp_7_posts (id INT)")
    target_before = migration.target_fingerprint(
        [t for t in migration.target_tables() if not t.startswith(tbl.STAGE_MARK)])
    done = run_playbook("wfu.multisite.migrate_site", migration.inventory, check=False,
                        extra_vars={"site_id": 7, "source_env": "dev", "target_env": "uat"})
    assert done.returncode != 0
    assert "Site 7 was not migrated (site failure in phase prepare)" in " ".join(done.stdout.split())
    assert "wp_blogs" in done.stdout and migration.password not in done.stdout
    assert migration.migration_tables() == []
    assert migration.target_fingerprint() == target_before


def test_sites_info_lists_sites_with_their_own_tables(migration, tmp_path):
    out = tmp_path / "sites.json"
    playbook = write_playbook(tmp_path, "sites.yml", """
        - name: List the sites of dev
          hosts: localhost
          gather_facts: false
          tasks:
            - name: All sites, site 2 large by size
              wfu.multisite.wfu_sites_info:
                db: "{{ wfu_environments.dev.db }}"
                large_site_bytes: 2000000
              register: all_sites
            - name: Subsites only, 20 excluded, 3 large by name
              wfu.multisite.wfu_sites_info:
                db: "{{ wfu_environments.dev.db }}"
                exclude_main_site: true
                exclude_sites: "20"
                large_sites: [3]
              register: some_sites
            - name: Keep the results
              ansible.builtin.copy:
                content: "{{ {'all': all_sites, 'some': some_sites} | to_json }}"
                dest: "{{ out }}"
                mode: "0600"
        """)
    done = run_playbook(playbook, migration.inventory, extra_vars={"out": str(out)})
    assert migration.password not in done.stdout
    results = read_json(out)
    everything, some = results["all"], results["some"]
    assert everything["changed"] is False
    by_id = {site["id"]: site for site in everything["sites"]}
    assert sorted(by_id) == [1, 2, 3, 20]
    where = addresses(DEV, migration.source.spec)
    for site_id, site in by_id.items():
        assert (site["domain"], site["path"]) == where[site_id][:2]
        assert site["tables"] == sorted(tbl.site_table_prefix("wp_", site_id) + name for name in SITE_TABLES)
        assert site["bytes"] > 0 and site["main"] is (site_id == 1)
    assert [site["id"] for site in everything["sites"] if site["large"]] == [2]
    assert everything["summary"]["count"] == 4 and everything["summary"]["large"] == [2]
    assert [(site["id"], site["large"]) for site in some["sites"]] == [(2, False), (3, True)]


def test_cleanup_module_dry_run_sweep_idempotence_and_refusal(migration, tmp_path):
    for name in ("m5__wp_5_posts", "m6__wp_6_posts", "notes"):
        query(migration.migration_server, migration.migration_database, "CREATE TABLE `%s` (id INT)" % name)
    for name in ("wfu_stage__wp_5_posts", "wfu_old__wp_6_posts", "wp_6_posts"):
        query(migration.target_server, migration.target_database, "CREATE TABLE `%s` (id INT)" % name)
    out = tmp_path / "cleanup.json"
    playbook = write_playbook(tmp_path, "cleanup.yml", """
        - name: Clean up
          hosts: localhost
          gather_facts: false
          module_defaults:
            wfu.multisite.wfu_migration_cleanup:
              migration_db: "{{ wfu_migration_db }}"
              target: "{{ wfu_environments.uat.db }}"
              protected_databases: "{{ wfu_environments.values() | map(attribute='db') | list }}"
              protected_names: "{{ wfu_environments.keys() | list }}"
          tasks:
            - name: Dry run for site 5
              wfu.multisite.wfu_migration_cleanup:
                site_id: "5"
              check_mode: true
              register: dry
            - name: Site 5
              wfu.multisite.wfu_migration_cleanup:
                site_id: "5"
              register: first
            - name: Site 5 again
              wfu.multisite.wfu_migration_cleanup:
                site_id: "5"
              register: second
            - name: Everything
              wfu.multisite.wfu_migration_cleanup:
              register: everything
            - name: Everything again
              wfu.multisite.wfu_migration_cleanup:
              register: again
            - name: A migration database that is an environment's database
              wfu.multisite.wfu_migration_cleanup:
                migration_db: "{{ wfu_environments.dev.db }}"
              register: refused
              ignore_errors: true
            - name: Keep the results
              ansible.builtin.copy:
                content: "{{ {'dry': dry, 'first': first, 'second': second, 'everything': everything,
                              'again': again, 'refused': refused} | to_json }}"
                dest: "{{ out }}"
                mode: "0600"
        """)
    done = run_playbook(playbook, migration.inventory, extra_vars={"out": str(out)})
    assert migration.password not in done.stdout
    results = read_json(out)
    assert (results["dry"]["changed"], results["dry"]["migration_db"], results["dry"]["target"]) == (
        True, ["m5__wp_5_posts"], ["wfu_stage__wp_5_posts"])
    # The real run found what the dry run listed: the dry run dropped nothing.
    assert (results["first"]["changed"], results["first"]["migration_db"], results["first"]["target"]) == (
        True, ["m5__wp_5_posts"], ["wfu_stage__wp_5_posts"])
    assert results["second"]["changed"] is False
    # A full sweep empties the migration database: also the tables no run of ours made (notes).
    assert (results["everything"]["migration_db"], results["everything"]["target"]) == (
        ["m6__wp_6_posts", "notes"], ["wfu_old__wp_6_posts"])
    assert results["everything"]["in_use"] == []
    assert results["again"]["changed"] is False
    assert results["refused"]["failed"] is True and "refusing" in results["refused"]["msg"]
    assert "environment dev" in results["refused"]["msg"]
    assert table_names(migration.migration_server, migration.migration_database) == []
    assert tbl.target_leftovers(migration.target_tables(), "wp_") == []
