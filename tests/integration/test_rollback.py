"""Backups unique to a migration and the way back to them (wfu_site_rollback, migration_rollback) on real servers.

A site is migrated with ``backup_dir`` and ``backup_name`` by wfu_site_migrate in ansible-playbook (as the role
calls it), then rolled back: the target must be what it was before, table by table (CHECKSUM TABLE, the
definition, row counts).  A backup that is missing, damaged or of another site is refused and changes nothing.
"""

import gzip
import hashlib
import json
import os
import shutil
import textwrap

import pytest
from helpers import MigrationSetup, query, row_counts, run_playbook, table_names, write_inventory

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
MIGRATION = "dev-to-uat-2026-12-03T07-00-00"


@pytest.fixture
def migration(servers, tmp_path):
    """dev (sites 1, 2, 3, 20) → uat (sites 1, 2, 3: site 20 is new to it), an inventory and a backup_dir."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, site_ids=[2, 3, 20], posts_per_site=4),
                           NetworkSpec(url=UAT, site_ids=[2, 3], posts_per_site=2, seed=2))
    environments = {
        "dev": {"url": DEV, "db": setup.source.server.connection(setup.source.database)},
        "uat": {"url": UAT, "db": setup.target_server.connection(setup.target_database), "table_prefix": "wp_"},
    }
    setup.directory = tmp_path
    setup.inventory = write_inventory(tmp_path / "inventory", environments, setup.migration_db())
    setup.backup_dir = tmp_path / "backups"
    setup.backup_dir.mkdir()
    yield setup
    setup.drop()


def state(setup):
    """Everything the target holds: every table's fingerprint and row count, and wp_blogs."""
    tables = setup.target_tables()
    return {"tables": setup.target_fingerprint(), "rows": row_counts(setup.target_server, setup.target_database, tables),
            "blogs": query(setup.target_server, setup.target_database, "SELECT * FROM wp_blogs ORDER BY blog_id")}


def run_tasks(setup, tasks, name="play", check=True, args=()):
    """Run ``tasks`` (YAML text; each registers what it wants under ``results``) and return the registered values."""
    out = setup.directory / (name + ".json")
    playbook = setup.directory / (name + ".yml")
    playbook.write_text(textwrap.dedent("""\
        - name: Test play
          hosts: localhost
          gather_facts: false
          vars:
            uat: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
            dev: "{{ wfu_environments.dev | combine({'name': 'dev'}) }}"
          tasks:
            - name: The tasks under test
              block:
        %s
              always:
                - name: Keep the results
                  ansible.builtin.copy:
                    content: "{{ results | default({}) | to_json }}"
                    dest: "%s"
                    mode: "0600"
        """) % (textwrap.indent(textwrap.dedent(tasks), " " * 8), out))
    done = run_playbook(str(playbook), setup.inventory, *args, check=check)
    with open(out, encoding="utf-8") as handle:
        return json.load(handle), done


def migrate_task(site_id, backup_name=MIGRATION, register="migrated"):
    return """
        - name: Migrate site %(site)s with a backup
          wfu.multisite.wfu_site_migrate:
            site_id: %(site)s
            source: "{{ dev }}"
            target: "{{ uat }}"
            migration_db: "{{ wfu_migration_db }}"
            backup_dir: "%(dir)s"
            backup_name: "%(name)s"
            timeout: 120
          register: %(register)s
        - name: Keep it
          ansible.builtin.set_fact:
            results: "{{ results | default({}) | combine({'%(register)s': %(register)s}) }}"
        """ % {"site": site_id, "dir": "{{ backup_dir }}", "name": backup_name, "register": register}


def rollback_task(site_id, register="rolled_back", backup_name=MIGRATION, check_mode=False, ignore_errors=False):
    return """
        - name: Roll back %(site)s
          wfu.multisite.wfu_site_rollback:
            site_id: "%(site)s"
            target: "{{ uat }}"
            migration_db: "{{ wfu_migration_db }}"
            backup_dir: "%(dir)s"
            backup_name: "%(name)s"
            timeout: 120
          check_mode: %(check)s
          ignore_errors: %(ignore)s
          register: %(register)s
        - name: Keep it
          ansible.builtin.set_fact:
            results: "{{ results | default({}) | combine({'%(register)s': %(register)s}) }}"
        """ % {"site": site_id, "dir": "{{ backup_dir }}", "name": backup_name, "register": register,
               "check": str(check_mode).lower(), "ignore": str(ignore_errors).lower()}


def with_backup_dir(setup):
    return ["-e", "backup_dir=%s" % setup.backup_dir]


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_an_existing_site_comes_back_byte_identical(migration):
    before = state(migration)
    results, _done = run_tasks(migration, migrate_task(2), "migrate", args=with_backup_dir(migration))
    backup = results["migrated"]["backup"]["file"]
    folder = migration.backup_dir / MIGRATION
    assert backup["path"] == str(folder / "site-2.sql.gz") and backup["manifest"] == str(folder / "site-2.json")
    assert backup["sha256"] == sha256(backup["path"]) and backup["size"] == os.path.getsize(backup["path"])
    site_tables = migration.target_site_tables(2)
    assert backup["tables"] == {t: before["rows"][t] for t in site_tables}
    manifest = json.loads((folder / "site-2.json").read_text())
    assert (manifest["site_id"], manifest["migration_id"], manifest["target_database"], manifest["new_to_target"]) == (
        2, MIGRATION, migration.target_database, False)
    assert manifest["tables"] == backup["tables"] and manifest["sha256"] == backup["sha256"]
    assert oct(os.stat(backup["path"]).st_mode & 0o777) == "0o600"
    migrated = state(migration)
    assert migrated["tables"] != before["tables"]

    # Check mode: the plan, nothing changed.
    results, _done = run_tasks(migration, rollback_task(2, check_mode=True), "plan", args=with_backup_dir(migration))
    plan = results["rolled_back"]["plan"]
    assert plan["restore"] == backup["tables"] and plan["drop"] == [] and plan["delete_blog_row"] is False
    assert state(migration) == migrated

    results, _done = run_tasks(migration, rollback_task(2), "rollback", args=with_backup_dir(migration))
    done = results["rolled_back"]
    assert done["changed"] is True and done["restored"] == backup["tables"] and done["blog_row_deleted"] is False
    assert state(migration) == before
    assert tbl.target_leftovers(migration.target_tables(), "wp_") == []

    # A second migration of the site under the same name never overwrites the first backup.
    first = sha256(backup["path"])
    results, _done = run_tasks(migration, migrate_task(2), "again", args=with_backup_dir(migration))
    second = results["migrated"]["backup"]["file"]
    assert second["path"] == str(folder / "site-2-2.sql.gz") and second["manifest"] == str(folder / "site-2-2.json")
    assert sha256(backup["path"]) == first
    # The rollback restores the first one: the target as it was before the migration.
    run_tasks(migration, rollback_task(2), "rollback-again", args=with_backup_dir(migration))
    assert state(migration) == before


def test_a_site_new_to_the_target_is_removed_again(migration):
    before = state(migration)
    assert migration.target_site_tables(20) == []
    results, _done = run_tasks(migration, migrate_task(20), "migrate", args=with_backup_dir(migration))
    backup = results["migrated"]["backup"]["file"]
    assert results["migrated"]["new_to_target"] is True and results["migrated"]["blog_row_created"] is True
    assert backup["path"] is None and backup["tables"] == {} and backup["new_to_target"] is True
    manifest = json.loads((migration.backup_dir / MIGRATION / "site-20.json").read_text())
    assert manifest["new_to_target"] is True and manifest["blog_row_existed"] is False and manifest["file"] is None
    assert migration.target_site_tables(20) == migration.expected_target_tables(20)

    results, _done = run_tasks(migration, rollback_task(20), "rollback", args=with_backup_dir(migration))
    done = results["rolled_back"]
    assert done["blog_row_deleted"] is True and sorted(done["dropped"]) == migration.expected_target_tables(20)
    assert migration.target_site_tables(20) == []
    assert query(migration.target_server, migration.target_database, "SELECT * FROM wp_blogs WHERE blog_id = 20") == ()
    assert state(migration) == before


def damage_truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)


def damage_one_byte(path):
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))


def damage_gzip_keeping_the_manifest_right(path):
    """A dump whose gzip CRC fails, with a manifest that matches its bytes: only the gzip check can see it."""
    with open(path, "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\0\0\0\0")
    manifest = path.replace(".sql.gz", ".json")
    with open(manifest, encoding="utf-8") as handle:
        data = json.load(handle)
    data["sha256"] = sha256(path)
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


@pytest.mark.parametrize("damage, message", [
    (damage_truncate, "has %d bytes, its manifest says"),
    (damage_one_byte, "has sha256"),
    (damage_gzip_keeping_the_manifest_right, "is damaged"),
    (os.unlink, "is missing its dump"),
], ids=["truncated", "one-byte", "gzip-crc", "dump-missing"])
def test_a_damaged_backup_is_refused_and_nothing_changes(migration, damage, message):
    run_tasks(migration, migrate_task(3), "migrate", args=with_backup_dir(migration))
    dump = str(migration.backup_dir / MIGRATION / "site-3.sql.gz")
    size = os.path.getsize(dump)
    damage(dump)
    migrated = state(migration)
    results, _done = run_tasks(migration, rollback_task(3, ignore_errors=True), "rollback",
                               args=with_backup_dir(migration))
    refused = results["rolled_back"]
    assert refused["failed"] is True and dump in refused["msg"], refused["msg"]
    assert (message % (size // 2) if "%d" in message else message) in refused["msg"], refused["msg"]
    assert (refused["phase"], refused["reason"]) == ("verify_backup", "verification")
    assert state(migration) == migrated


def test_a_foreign_or_missing_backup_is_refused(migration):
    run_tasks(migration, migrate_task(2) + migrate_task(3, register="third"), "migrate",
              args=with_backup_dir(migration))
    folder = migration.backup_dir / MIGRATION
    migrated = state(migration)
    # Site 2's backup under site 3's name.
    shutil.copy(folder / "site-2.json", folder / "site-3.json")
    shutil.copy(folder / "site-2.sql.gz", folder / "site-3.sql.gz")
    tasks = (rollback_task(3, register="foreign", ignore_errors=True) +
             rollback_task(2, register="other_migration", backup_name="dev-to-uat-other", ignore_errors=True))
    results, _done = run_tasks(migration, tasks, "rollback", args=with_backup_dir(migration))
    assert results["foreign"]["failed"] is True
    assert "site-3.json is of another site id: it says site_id=2, not 3" in results["foreign"]["msg"]
    assert results["other_migration"]["failed"] is True
    assert "is missing: there is no %s" % (migration.backup_dir / "dev-to-uat-other" / "site-2.json") in \
        results["other_migration"]["msg"]
    # The manifest of another target database.
    data = json.loads((folder / "site-2.json").read_text())
    data["target_database"] = "wp_prod"
    (folder / "site-2.json").write_text(json.dumps(data))
    results, _done = run_tasks(migration, rollback_task(2, ignore_errors=True), "rollback-db",
                               args=with_backup_dir(migration))
    assert "target database" in results["rolled_back"]["msg"] and "wp_prod" in results["rolled_back"]["msg"]
    assert state(migration) == migrated


def test_a_gzip_dump_is_counted_exactly():
    """Rows are counted in the dump's INSERT statements; quoted values with '),(' or quotes do not fool it."""
    from ansible_collections.wfu.multisite.plugins.module_utils.rollback import scan_dump
    import tempfile

    text = (b"CREATE TABLE `wp_2_posts` (\n  `id` int\n) ENGINE=InnoDB;\n"
            b"INSERT INTO `wp_2_posts` VALUES (1,'a),(b'),(2,'it\\'s \\\\'),(3,0x2829),(4,NULL);\n"
            b"INSERT INTO `wp_2_posts` VALUES (5,'x');\n"
            b"INSERT INTO `wp_2_posts` VALUES\n(6,'(;'),\n(7,'y\\');'),\n(8,'z');\n"
            b"CREATE TABLE `wp_2_links` (\n  `id` int\n) ENGINE=InnoDB;\n")
    with tempfile.NamedTemporaryFile(suffix=".sql.gz") as handle:
        with gzip.open(handle.name, "wb") as out:
            out.write(text)
        scanned = scan_dump(handle.name)
    assert scanned["rows"] == {"wp_2_posts": 8, "wp_2_links": 0}
    assert scanned["tables"] == ["wp_2_posts", "wp_2_links"]


def test_the_playbook_rolls_back_a_whole_migration(migration):
    """Network tables, an existing site and a new one, migrated under one migration id; the playbook puts back all."""
    before = state(migration)
    state_dir = os.path.join(os.path.dirname(migration.inventory), "state")
    tasks = """
        - name: Start the migration's state
          wfu.multisite.wfu_migration_state:
            action: create
            state_dir: "%(state)s"
            source_env: dev
            target_env: uat
            sites: [2, 20]
            options:
              backup_dir: "%(dir)s"
          register: created
        - name: Keep it
          ansible.builtin.set_fact:
            results: "{{ {'id': created.migration_id} }}"
        - name: Migrate the network tables with a backup
          wfu.multisite.wfu_network_migrate:
            source: "{{ dev }}"
            target: "{{ uat }}"
            migration_db: "{{ wfu_migration_db }}"
            backup_dir: "%(dir)s"
            backup_name: "{{ created.migration_id }}"
            timeout: 120
        - name: Record the network tables
          wfu.multisite.wfu_migration_state:
            action: network
            state_dir: "%(state)s"
            migration_id: "{{ created.migration_id }}"
            status: completed
        - name: Migrate the sites with a backup
          wfu.multisite.wfu_site_migrate:
            site_id: "{{ item }}"
            source: "{{ dev }}"
            target: "{{ uat }}"
            migration_db: "{{ wfu_migration_db }}"
            backup_dir: "%(dir)s"
            backup_name: "{{ created.migration_id }}"
            timeout: 120
          loop: [2, 20]
        - name: Record the sites
          wfu.multisite.wfu_migration_state:
            action: site
            state_dir: "%(state)s"
            migration_id: "{{ created.migration_id }}"
            site_id: "{{ item }}"
            status: completed
          loop: [2, 20]
        """ % {"state": state_dir, "dir": migration.backup_dir}
    results, _done = run_tasks(migration, tasks, "migrate")
    migration_id = results["id"]
    assert sorted(os.listdir(migration.backup_dir / migration_id)) == [
        "network.json", "network.sql.gz", "site-2.json", "site-2.sql.gz", "site-20.json"]
    migrated = state(migration)
    assert migrated != before

    planned = run_playbook("wfu.multisite.migration_rollback", migration.inventory, "--check",
                           extra_vars={"migration_id": migration_id, "network_tables": "true"})
    assert "Would roll back migration %s in uat" % migration_id in " ".join(planned.stdout.split())
    assert state(migration) == migrated

    done = run_playbook("wfu.multisite.migration_rollback", migration.inventory,
                        extra_vars={"migration_id": migration_id, "network_tables": "true"})
    text = " ".join(done.stdout.split())
    assert "Rolled back migration %s in uat: site 20 (0 tables restored, 10 dropped, wp_blogs row deleted); " \
           "site 2 (10 tables restored, 0 dropped)" % migration_id in text, text
    assert state(migration) == before
    assert table_names(migration.migration_server, migration.migration_database) == []
    assert not os.path.exists(os.path.join(state_dir, "locks", "uat.lock"))
    # The rollback is in the migration's state, and the check mode run left none there.
    with open(os.path.join(state_dir, migration_id, "state.json"), encoding="utf-8") as handle:
        recorded = json.load(handle)
    [entry] = recorded["rollbacks"]
    assert (entry["sites"], entry["network_tables"], entry["failed_sites"]) == ([20, 2], True, [])
    assert recorded["sites"]["2"]["rolled_back"] == entry["at"] and recorded["sites"]["2"]["status"] == "completed"
    shown = run_playbook("wfu.multisite.migration_status", migration.inventory, extra_vars={"migration_id": migration_id})
    assert "Rolled back" in shown.stdout and "sites 20, 2 and the network tables" in shown.stdout

    # One site asked by id, when its backup is gone: refused, the lock released.
    os.unlink(migration.backup_dir / migration_id / "site-2.json")
    refused = run_playbook("wfu.multisite.migration_rollback", migration.inventory, check=False,
                           extra_vars={"migration_id": migration_id, "site_id": "2"})
    assert refused.returncode != 0 and "site-2.json" in refused.stdout
    assert not os.path.exists(os.path.join(state_dir, "locks", "uat.lock"))
    with open(os.path.join(state_dir, migration_id, "state.json"), encoding="utf-8") as handle:
        entry = json.load(handle)["rollbacks"][-1]
    assert (entry["sites"], entry["failed_sites"], entry["network_tables"]) == ([], [2], False)
    assert "site-2.json" in entry["error"]


# -- the undo of a rollback that fails (in-process, with a fault injected) ------------------------------------------

def in_process_rollback(setup, site_id):
    from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint
    from ansible_collections.wfu.multisite.plugins.module_utils.rollback import Rollback

    return Rollback(Endpoint(setup.target_env()), setup.migration_db(), str(setup.backup_dir), MIGRATION, site_id)


def test_a_load_that_does_not_verify_drops_its_staging_tables_and_changes_nothing(migration, monkeypatch):
    from ansible_collections.wfu.multisite.plugins.module_utils import rollback
    from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError

    migration.site(2, options={"backup_dir": str(migration.backup_dir), "backup_name": MIGRATION}).run(timeout=120)
    migrated = state(migration)
    real = rollback.tbl.exact_row_counts

    def one_row_lost(conn, database, tables):
        counts = real(conn, database, tables)
        return {t: n - 1 if t.startswith(tbl.STAGE_MARK) else n for t, n in counts.items()}

    monkeypatch.setattr(rollback.tbl, "exact_row_counts", one_row_lost)
    with pytest.raises(MigrationError) as raised:
        in_process_rollback(migration, 2).run(timeout=120)
    monkeypatch.undo()
    error = raised.value
    assert (error.phase, error.reason) == ("verify", "verification"), str(error)
    assert "after loading the backup" in error.message and error.cleanup == ["dropped 10 staging tables"]
    assert state(migration) == migrated


def test_a_failure_after_the_swap_swaps_back(migration, monkeypatch):
    from ansible_collections.wfu.multisite.plugins.module_utils import rollback
    from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError

    migration.site(20, options={"backup_dir": str(migration.backup_dir), "backup_name": MIGRATION}).run(timeout=120)
    migrated = state(migration)
    real, calls = rollback.qualified, []

    def broken_delete(database, table):
        calls.append(table)
        # The first use reads wp_blogs (the plan); the second is the DELETE after the swap.
        return real(database, table) if len(calls) < 2 else real(database, "no_such_table")

    monkeypatch.setattr(rollback, "qualified", broken_delete)
    with pytest.raises(MigrationError) as raised:
        in_process_rollback(migration, 20).run(timeout=120)
    monkeypatch.undo()
    assert raised.value.phase == "swap" and raised.value.cleanup == ["swapped the tables back"], str(raised.value)
    assert state(migration) == migrated
    assert tbl.target_leftovers(migration.target_tables(), "wp_") == []


def test_what_a_killed_backup_left_is_passed_over(migration):
    """A dump without its manifest (the call was killed before its swap) and a temporary file: the next backup
    takes the next name, and the rollback restores that one."""
    before = state(migration)
    folder = migration.backup_dir / MIGRATION
    folder.mkdir()
    (folder / "site-2.sql.gz").write_bytes(b"half a dump")
    (folder / "site-2-2.sql.gz.new.partial").write_bytes(b"a temporary file")
    result = migration.site(2, options={"backup_dir": str(migration.backup_dir), "backup_name": MIGRATION}).run(
        timeout=120)
    assert result["backup"]["file"]["path"] == str(folder / "site-2-2.sql.gz")
    assert sorted(os.listdir(folder)) == ["site-2-2.json", "site-2-2.sql.gz", "site-2.sql.gz"]
    done = in_process_rollback(migration, 2).run(timeout=120)
    assert done["backup"]["manifest"] == str(folder / "site-2-2.json")
    assert state(migration) == before


# -- retention ------------------------------------------------------------------------------------------------------

def test_keep_backups_keeps_the_newest_migrations_of_the_target(migration):
    names = ["dev-to-uat-2026-12-0%dT07-00-00" % day for day in (1, 2, 3)]
    tasks = "".join(migrate_task(2, backup_name=name, register="m%d" % index) for index, name in enumerate(names))
    run_tasks(migration, tasks, "three", args=with_backup_dir(migration))
    # Another environment's set, and an old set that holds a file of someone else's: neither is removed.
    other = migration.backup_dir / "dev-to-prod-2026-11-01T07-00-00"
    other.mkdir()
    shutil.copy(migration.backup_dir / names[0] / "site-2.json", other / "site-2.json")
    manifest = json.loads((other / "site-2.json").read_text())
    (other / "site-2.json").write_text(json.dumps(dict(manifest, target_env="prod", created="2026-11-01T07:00:00Z")))
    foreign = migration.backup_dir / "dev-to-uat-2026-11-20T07-00-00"
    foreign.mkdir()
    (foreign / "site-2.json").write_text(json.dumps(dict(manifest, created="2026-11-20T00:00:00Z")))
    (foreign / "notes.txt").write_text("mine")
    before = sorted(os.listdir(migration.backup_dir))
    args = {"target_env": "uat", "backup_dir": str(migration.backup_dir), "keep_backups": "2"}

    planned = run_playbook("wfu.multisite.migration_cleanup", migration.inventory, "--check", extra_vars=args)
    assert "Backups of uat: kept 2, would remove 1 (%s)" % names[0] in " ".join(planned.stdout.split())
    assert sorted(os.listdir(migration.backup_dir)) == before

    done = run_playbook("wfu.multisite.migration_cleanup", migration.inventory, extra_vars=args)
    text = " ".join(done.stdout.split())
    assert "kept 2, removed 1 (%s), left dev-to-uat-2026-11-20T07-00-00: they hold other files" % names[0] in text
    assert sorted(os.listdir(migration.backup_dir)) == sorted(set(before) - {names[0]})
    assert sorted(os.listdir(migration.backup_dir / names[2])) == ["site-2.json", "site-2.sql.gz"]

    refused = run_playbook("wfu.multisite.migration_cleanup", migration.inventory, check=False,
                           extra_vars={"target_env": "uat", "keep_backups": "0", "backup_dir": str(migration.backup_dir)})
    assert refused.returncode != 0 and "keep_backups needs a number of migrations" in refused.stdout
