"""SiteMigration against three real MariaDB servers: what arrives in the target, and what a failure leaves behind.

Every network here is generated (tools/wpnetwork.py): ``dev`` in the source, a
different ``uat`` network in the target, so a migrated site is recognisable.
The expected target addresses come from the generator laid out at the target's
url, not from the pipeline's own mapping code.
"""

import contextlib
import errno
import gzip
import os
import signal
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pymysql
import pytest
from helpers import (OUTSIDE_HOSTS, MigrationSetup, addresses, client_children, connect, count_occurrences, fingerprint,
                     create_database, drop_database, host_leftovers, php_unserializes, query, row_counts,
                     serialized_values, without)

from ansible_collections.wfu.multisite.plugins.module_utils import copy_engine, pipeline
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, Database
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import PipelineTimeout, SiteMigration
from tools.mariadb_servers import ServerSet, start_server_again, stop_server
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
SITE_TABLES = sorted(("commentmeta", "comments", "links", "options", "postmeta", "posts", "term_relationships",
                      "term_taxonomy", "termmeta", "terms"))


@pytest.fixture(scope="module")
def subdir(servers):
    """Subdirectory network: sites 1-5 in dev, 1-3 in uat (4 and 5 are new to the target)."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=5, posts_per_site=5),
                           NetworkSpec(url=UAT, sites=3, posts_per_site=3, seed=2))
    yield setup
    setup.drop()


@pytest.fixture(scope="module")
def subdomain(servers):
    """Subdomain network (news.dev.example.edu): sites 1-3 in dev, 1-2 in uat."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, subdomain=True, sites=3, posts_per_site=5),
                           NetworkSpec(url=UAT, subdomain=True, sites=2, posts_per_site=3, seed=2))
    yield setup
    setup.drop()


def options_table(prefix, site_id):
    return tbl.site_table_prefix(prefix, site_id) + "options"


def site_options(setup, site_id, names):
    table = options_table(setup.target_prefix, site_id)
    rows = query(setup.target_server, setup.target_database,
                 "SELECT option_name, option_value FROM `%s` WHERE option_name IN (%s)"
                 % (table, ", ".join(["%s"] * len(names))), tuple(names))
    return dict(rows)


def assert_serialized_values_survive(setup, site_id, target_tables):
    """Every value that PHP could unserialize in the source, PHP can unserialize in the target."""
    source = setup.source
    before = serialized_values(source.server, source.database, source.site_tables(site_id), source.prefix)
    after = serialized_values(setup.target_server, setup.target_database, target_tables, setup.target_prefix)
    keys = sorted(before)
    assert set(keys) <= set(after), "serialized-looking values lost their shape: %s" % sorted(set(keys) - set(after))
    verdicts = php_unserializes([before[k] for k in keys] + [after[k] for k in keys])
    valid_before = {k for k, ok in zip(keys, verdicts[:len(keys)]) if ok}
    valid_after = {k for k, ok in zip(keys, verdicts[len(keys):]) if ok}
    assert len(valid_before) >= 20
    assert sorted(valid_before - valid_after) == []
    target_host = urlsplit(setup.target_url).hostname
    assert sum(target_host in after[k] and before[k] != after[k] for k in valid_before) >= 5


def assert_site_migrated(setup, site_id, result, target_before, new_to_target):
    """What a migrated site must look like in the target, and that nothing else there changed."""
    source = setup.source
    source_tables = source.site_tables(site_id)
    expected = setup.expected_target_tables(site_id)
    blogs = setup.target_prefix + "blogs"

    assert result["changed"] is True and result["site_id"] == site_id
    assert setup.target_site_tables(site_id) == expected == result["tables"]
    source_counts = row_counts(source.server, source.database, source_tables)
    target_counts = row_counts(setup.target_server, setup.target_database, expected)
    assert sorted(target_counts.values()) != [] and \
        {tbl.retarget_table(t, source.prefix, setup.target_prefix): n for t, n in source_counts.items()} == target_counts
    assert result["rows"] == sum(source_counts.values())

    domain, path, url = addresses(setup.target_url, source.spec)[site_id]
    assert result["url"] == url
    assert site_options(setup, site_id, ["siteurl", "home"]) == {"siteurl": url, "home": url}

    source_host = urlsplit(source.spec.url).hostname
    assert host_leftovers(setup.target_server, setup.target_database, expected, source_host) == []
    for outside in OUTSIDE_HOSTS:
        occurrences = count_occurrences(source.server, source.database, source_tables, outside)
        assert occurrences > 0
        assert count_occurrences(setup.target_server, setup.target_database, expected, outside) == occurrences

    # Nothing else in the target changed; a new site gained exactly its wp_blogs row.
    after = setup.target_fingerprint()
    assert without(after, expected + [blogs]) == without(target_before, expected + [blogs])
    assert query(setup.target_server, setup.target_database,
                 "SELECT domain, path FROM `%s` WHERE blog_id = %%s" % blogs, (site_id,)) == ((domain, path),)
    assert result["new_to_target"] is new_to_target and result["blog_row_created"] is new_to_target
    if not new_to_target:
        assert after[blogs] == target_before[blogs]

    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert tbl.target_leftovers(setup.target_tables(), setup.target_prefix) == []
    assert set(result["durations"]) >= {"copy", "replace", "stage", "verify", "swap"}
    assert_serialized_values_survive(setup, site_id, expected)


@pytest.mark.parametrize("network, site_id, new_to_target", [
    ("subdir", 1, False), ("subdir", 2, False), ("subdir", 4, True),
    ("subdomain", 1, False), ("subdomain", 2, False), ("subdomain", 3, True),
], ids=["subdir-main", "subdir-existing", "subdir-new", "subdomain-main", "subdomain-existing", "subdomain-new"])
def test_site_arrives_rewritten_and_alone(request, network, site_id, new_to_target):
    setup = request.getfixturevalue(network)
    assert bool(setup.target_site_tables(site_id)) is not new_to_target
    before = setup.target_fingerprint()
    result = setup.site(site_id).run(timeout=120)
    assert_site_migrated(setup, site_id, result, before, new_to_target)


def test_migrating_a_site_again_gives_the_same_tables(subdir):
    setup = subdir
    setup.site(3).run()
    first = setup.target_fingerprint(setup.expected_target_tables(3))
    result = setup.site(3).run()
    assert result["new_to_target"] is False
    assert setup.target_fingerprint(setup.expected_target_tables(3)) == first


def test_check_mode_returns_the_plan_and_changes_nothing(subdir):
    setup = subdir
    target_before = setup.target_fingerprint()
    migration_before = fingerprint(setup.migration_server, setup.migration_database)
    result = setup.site(5, check_mode=True).run()
    plan = result["plan"]
    assert result["changed"] is False
    assert [entry["source"] for entry in plan["tables"]] == setup.source.site_tables(5)
    assert [entry["target"] for entry in plan["tables"]] == setup.expected_target_tables(5)
    assert plan["new_to_target"] is True and not any(entry["exists_in_target"] for entry in plan["tables"])
    domain, path, _url = addresses(UAT, setup.source.spec)[5]
    assert plan["target"] == {"domain": domain, "path": path}
    assert plan["bytes"] > 0 and {"search": "dev.example.edu", "replace": "uat.example.edu",
                                  "whole_host": True} in plan["rules"]
    assert setup.target_fingerprint() == target_before
    assert fingerprint(setup.migration_server, setup.migration_database) == migration_before


# -- table prefixes -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_prefixes(servers, subdir):
    """Source wp_ → target wpx9_, and source wfu7_ → target wp_ (the subdirectory network's target)."""
    to_wpx9 = MigrationSetup(servers, NetworkSpec(url=DEV, sites=2, posts_per_site=4),
                             NetworkSpec(url=UAT, sites=2, posts_per_site=2, seed=3, prefix="wpx9_"))
    from_wfu7 = MigrationSetup(servers, NetworkSpec(url=DEV, sites=3, posts_per_site=4, seed=4, prefix="wfu7_"), None,
                               target_network=subdir.target)
    yield to_wpx9, from_wfu7
    to_wpx9.drop()
    from_wfu7.drop()


@pytest.mark.parametrize("case, site_id", [(0, 2), (0, 1), (1, 3)], ids=["wp-to-wpx9-site2", "wp-to-wpx9-main",
                                                                         "wfu7-to-wp-site3"])
def test_tables_and_prefixed_options_follow_the_target_prefix(odd_prefixes, case, site_id):
    setup = odd_prefixes[case]
    before = setup.target_fingerprint()
    result = setup.site(site_id).run()
    expected = setup.expected_target_tables(site_id)
    assert all(t.startswith(tbl.site_table_prefix(setup.target_prefix, site_id)) for t in expected)
    assert result["tables"] == expected == setup.target_site_tables(site_id)
    old_key = tbl.site_table_prefix(setup.source.prefix, site_id) + "user_roles"
    new_key = tbl.site_table_prefix(setup.target_prefix, site_id) + "user_roles"
    options = site_options(setup, site_id, [old_key, new_key, "siteurl"])
    assert set(options) == {new_key, "siteurl"}
    assert php_unserializes([options[new_key]]) == [True] and "administrator" in options[new_key]
    assert options["siteurl"] == addresses(setup.target_url, setup.source.spec)[site_id][2]
    # No table of the source's prefix appeared in the target; every other table is as it was.
    assert [t for t in setup.target_tables() if t.startswith(setup.source.prefix)
            and not t.startswith(setup.target_prefix)] == []
    assert without(setup.target_fingerprint(), expected) == without(before, expected)


# -- ownership: wp_2_ is not wp_20_ ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crowded(servers):
    """Sites 1, 2, 3, 20 and 21 on both sides."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, site_ids=[2, 3, 20, 21], posts_per_site=3),
                           NetworkSpec(url=UAT, site_ids=[2, 3, 20, 21], posts_per_site=2, seed=2))
    yield setup
    setup.drop()


@pytest.mark.parametrize("site_id", [2, 20])
def test_site_owns_exactly_its_numbered_tables(crowded, monkeypatch, site_id):
    setup = crowded
    copied = []
    real_copy = pipeline.copy_tables

    def recording_copy(source, tables, *args, **kwargs):
        copied.append(list(tables))
        return real_copy(source, tables, *args, **kwargs)

    monkeypatch.setattr(pipeline, "copy_tables", recording_copy)
    before = setup.target_fingerprint()
    result = setup.site(site_id).run()
    own = ["wp_%d_%s" % (site_id, name) for name in SITE_TABLES]
    # One copy per table (they overlap with the replace and the stage): from the source, then into the target.
    from_source = sorted(t for tables in copied for t in tables if not tbl.WORK_TABLE_RE.match(t))
    into_target = sorted(t for tables in copied for t in tables if tbl.WORK_TABLE_RE.match(t))
    assert from_source == sorted(own) and into_target == sorted(tbl.work_table(site_id, t) for t in own)
    assert result["tables"] == own
    after = setup.target_fingerprint()
    assert without(after, own) == without(before, own)
    assert set(after) == set(before) and after["wp_%d_options" % site_id] != before["wp_%d_options" % site_id]
    assert site_options(setup, site_id, ["home"])["home"] == addresses(UAT, setup.source.spec)[site_id][2]


# -- failures at every phase leave the target as it was ----------------------------------------------------------------

def fail_after(function, error, on_call=1):
    """``function`` that does its real work and then raises ``error`` on its ``on_call``-th call."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        result = function(*args, **kwargs)
        if len(calls) == on_call:
            raise error
        return result

    return wrapper


def _stage_then(change):
    """``_stage`` that then runs ``change(database, staged tables)`` in the target, when it returns a statement
    (tables are staged one at a time)."""
    real_stage = SiteMigration._stage

    def stage(self, mig_conn, work_to_stage, **kwargs):
        result = real_stage(self, mig_conn, work_to_stage, **kwargs)
        statement = change(self.target.database, sorted(work_to_stage.values()))
        if statement:
            with contextlib.closing(self.target.db.connect()) as conn, conn.cursor() as cur:
                cur.execute(statement)
        return result

    return stage


def fail_when(function, error, when):
    """``function`` that does its real work and then raises ``error`` on the first call ``when(*args)`` accepts."""
    calls = []

    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        if not calls and when(*args):
            calls.append(1)
            raise error
        return result

    return wrapper


def inject_copy(monkeypatch, _tmp_path):
    error = pymysql.err.OperationalError(2013, "Lost connection to server during query")
    monkeypatch.setattr(pipeline, "copy_tables", fail_after(pipeline.copy_tables, error, on_call=1))


def inject_replace(monkeypatch, _tmp_path):
    monkeypatch.setattr(pipeline, "replace_in_tables",
                        fail_after(pipeline.replace_in_tables, RuntimeError("injected failure after the replace")))


def inject_stage(monkeypatch, _tmp_path):
    error = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pipeline, "copy_tables", fail_when(pipeline.copy_tables, error,
                                                           lambda _source, _tables, dest, *_: dest.role == "target"))


def _in_one_of(staged, suffix, statement):
    table = next((t for t in staged if t.endswith(suffix)), None)
    return statement % table if table else None


def inject_lost_row(monkeypatch, _tmp_path):
    monkeypatch.setattr(SiteMigration, "_stage", _stage_then(
        lambda db, staged: _in_one_of(staged, "_posts", "DELETE FROM `" + db + "`.`%s` LIMIT 1")))


def inject_wrong_siteurl(monkeypatch, _tmp_path):
    monkeypatch.setattr(SiteMigration, "_stage", _stage_then(
        lambda db, staged: _in_one_of(staged, "options", "UPDATE `" + db + "`.`%s` SET option_value = "
                                      "'https://elsewhere.example.org' WHERE option_name = 'siteurl'")))


def inject_backup(_monkeypatch, tmp_path):
    # backup_dir under a regular file: the dump to a file cannot even start.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    return {"backup_dir": str(blocker / "backups")}


def inject_rename(monkeypatch, _tmp_path):
    real = tbl.rename_statement
    calls = []

    def statement(database, moves, to_database=None):
        calls.append(1)
        # A move of a table that does not exist makes the whole RENAME TABLE fail on the server.
        extra = [("wfu_missing_table", "wfu_missing_table_2")] if len(calls) == 1 else []
        return real(database, list(moves) + extra, to_database)

    monkeypatch.setattr(tbl, "rename_statement", statement)


def inject_verify_after_swap(monkeypatch, _tmp_path):
    real = SiteMigration._verify_urls

    def verify(self, conn, table, expected_url):
        if not table.startswith(tbl.STAGE_MARK):
            raise self._error("injected: %s of the swapped-in site is wrong" % table, table=table)
        return real(self, conn, table, expected_url)

    monkeypatch.setattr(SiteMigration, "_verify_urls", verify)


class _ReplyLost:
    """A real connection whose rename reaches the server, but whose reply never comes back."""

    def __init__(self, conn):
        self.conn = conn

    def get_server_info(self):
        return self.conn.get_server_info()

    @contextlib.contextmanager
    def cursor(self):
        yield self

    def execute(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
        if "RENAME TABLE" in sql or "RENAME TABLE" in str(args):
            raise pymysql.err.OperationalError(2013, "Lost connection to server during query")


def inject_lost_rename_reply(monkeypatch, _tmp_path):
    real_swap = SiteMigration._swap
    monkeypatch.setattr(SiteMigration, "_swap", lambda self, conn, *args: real_swap(self, _ReplyLost(conn), *args))


def inject_blog_row(monkeypatch, _tmp_path):
    def insert_fails(*_args):
        raise pymysql.err.OperationalError(2006, "MySQL server has gone away")

    monkeypatch.setattr(SiteMigration, "_ensure_blog_row", insert_fails)


@pytest.mark.parametrize("inject, site_id, phase, failure_class", [
    (inject_copy, 2, "copy", "systemic"),
    (inject_replace, 2, "replace", "site"),
    (inject_stage, 2, "stage", "systemic"),
    (inject_stage, 5, "stage", "systemic"),
    (inject_lost_row, 2, "verify", "site"),
    (inject_wrong_siteurl, 2, "verify", "site"),
    (inject_backup, 2, "backup", "systemic"),
    (inject_rename, 2, "swap", "site"),
    (inject_lost_rename_reply, 2, "swap", "systemic"),
    (inject_verify_after_swap, 2, "swap", "site"),
    (inject_verify_after_swap, 5, "swap", "site"),
    (inject_blog_row, 5, "swap", "systemic"),
], ids=["copy", "replace", "stage", "stage-new-site", "verify-rows", "verify-siteurl", "backup", "swap-rename",
        "swap-reply-lost", "swap-verify", "swap-verify-new-site", "swap-blog-row-new-site"])
def test_failure_leaves_target_and_migration_db_as_they_were(
        subdir, monkeypatch, tmp_path, inject, site_id, phase, failure_class):
    setup = subdir
    options = inject(monkeypatch, tmp_path)
    target_before = setup.target_fingerprint()
    migration_before = fingerprint(setup.migration_server, setup.migration_database)
    with pytest.raises(MigrationError) as raised:
        setup.site(site_id, options=options).run(timeout=120)
    error = raised.value
    assert (error.phase, error.failure_class, error.site_id) == (phase, failure_class, site_id), str(error)
    assert setup.target_fingerprint() == target_before
    assert fingerprint(setup.migration_server, setup.migration_database) == migration_before
    assert tbl.work_tables_of(setup.migration_tables(), site_id) == []
    assert client_children() == []


# -- the per-table steps overlap: a failure in any thread stops the others and leaves nothing behind ----------------

def _assert_nothing_left(setup, target_before, migration_before, site_id=2):
    assert setup.target_fingerprint() == target_before
    assert fingerprint(setup.migration_server, setup.migration_database) == migration_before
    assert tbl.work_tables_of(setup.migration_tables(), site_id) == []
    assert tbl.target_leftovers(setup.target_tables(), setup.target_prefix) == []
    assert client_children() == []


def every_table_alone(monkeypatch):
    """Each table goes through the pipeline on its own, as a site's large tables do (the sites here are small)."""
    monkeypatch.setattr(pipeline, "SMALL_TABLE_BYTES", 0)


def test_small_tables_go_through_in_one_copy_each_way_and_a_large_one_alone(subdir, monkeypatch):
    """A site's small tables are copied into the migration database in one copy, replaced, and staged in one copy;
    a table above SMALL_TABLE_BYTES goes on its own.  The site comes out migrated all the same."""
    setup = subdir
    source = setup.source
    site_tables = source.site_tables(3)
    with contextlib.closing(source.server.connect()) as conn:
        sizes = tbl.table_stats(conn, source.database, site_tables)
    # The largest table goes alone; all the others are small.
    largest = max(site_tables, key=lambda table: (sizes[table]["bytes"], table))
    monkeypatch.setattr(pipeline, "SMALL_TABLE_BYTES", max(sizes[t]["bytes"] for t in site_tables if t != largest))
    assert sizes[largest]["bytes"] > pipeline.SMALL_TABLE_BYTES
    real = pipeline.copy_tables
    copies = []

    def copy(source_db, tables, dest, *args, **kwargs):
        copies.append(("target" if dest.role == "target" else "migration", sorted(tables)))
        return real(source_db, tables, dest, *args, **kwargs)

    monkeypatch.setattr(pipeline, "copy_tables", copy)
    target_before = setup.target_fingerprint()
    result = setup.site(3).run(timeout=120)
    small = sorted(t for t in site_tables if t != largest)
    work_small = sorted(tbl.work_table(3, t) for t in small)
    assert sorted(copies, key=repr) == sorted([
        ("migration", [largest]), ("migration", small), ("target", [tbl.work_table(3, largest)]),
        ("target", work_small)], key=repr)
    assert_site_migrated(setup, 3, result, target_before, new_to_target=False)
    assert sorted(result["overlap"]["tables"]) == sorted(site_tables)


def test_a_copy_failing_after_other_tables_were_staged_leaves_nothing_behind(subdir, monkeypatch):
    """The last table's copy fails while the earlier ones are already replaced and staged in the target."""
    setup = subdir
    every_table_alone(monkeypatch)
    real = pipeline.copy_tables
    sources, staged = [], []

    def copy(source, tables, dest, *args, **kwargs):
        if dest.role == "target":
            staged.extend(tables)
        elif len(sources) == len(SITE_TABLES) - 1:
            # Wait until the stager has put an earlier table into the target, then fail this copy half-way.
            for _attempt in range(200):
                if staged:
                    break
                time.sleep(0.05)
            real(source, tables, dest, *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        else:
            sources.extend(tables)
        return real(source, tables, dest, *args, **kwargs)

    monkeypatch.setattr(pipeline, "copy_tables", copy)
    target_before = setup.target_fingerprint()
    migration_before = fingerprint(setup.migration_server, setup.migration_database)
    with pytest.raises(MigrationError) as raised:
        setup.site(2).run(timeout=120)
    assert staged, "no table had been staged when the last copy failed"
    assert (raised.value.phase, raised.value.failure_class, raised.value.reason) == ("copy", "systemic", "disk_full")
    assert any("staging tables" in note for note in raised.value.cleanup), raised.value.cleanup
    _assert_nothing_left(setup, target_before, migration_before)


def test_a_stage_failing_stops_the_copy_running_beside_it(subdir, monkeypatch):
    """The stager fails while the copier waits in a statement on the source: that statement is killed on the
    server (it would run for minutes), the copy stops, and the stage's failure is the one reported."""
    setup = subdir
    every_table_alone(monkeypatch)
    real_copy, real_stage = SiteMigration._copy_to_work, SiteMigration._stage
    seen = {"copies": 0, "slept": None}
    sleeping = threading.Event()

    def copy(self, tables, work_names, connections=(None, None)):
        seen["copies"] += 1
        if seen["copies"] == 2:
            conn = self.source.db.connect(deadline=self.deadline)
            try:
                with conn.cursor() as cur:
                    sleeping.set()
                    cur.execute("SELECT /* wfu-overlap-test */ SLEEP(300)")
                    seen["slept"] = cur.fetchone()[0]
            except pymysql.err.MySQLError as exc:
                seen["slept"] = exc.args[0]
            finally:
                conn.close()
        return real_copy(self, tables, work_names, connections)

    def stage(self, mig_conn, work_to_stage, **kwargs):
        real_stage(self, mig_conn, work_to_stage, **kwargs)
        sleeping.wait(30)
        for _attempt in range(200):
            if query(setup.source.server, None, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                                                "'%%wfu-overlap-test%%' AND ID <> CONNECTION_ID()"):
                break
            time.sleep(0.05)
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(SiteMigration, "_copy_to_work", copy)
    monkeypatch.setattr(SiteMigration, "_stage", stage)
    target_before = setup.target_fingerprint()
    migration_before = fingerprint(setup.migration_server, setup.migration_database)
    with pytest.raises(MigrationError) as raised:
        setup.site(2).run(timeout=600)
    assert (raised.value.phase, raised.value.failure_class) == ("stage", "systemic"), str(raised.value)
    # SLEEP() returns 1 when KILL QUERY ends it (0 when it ran its full time).
    assert seen["slept"] in (1, 1317), seen
    assert seen["copies"] == 2, "the copier went on to the next table after the failure"
    _assert_nothing_left(setup, target_before, migration_before)


def test_a_replace_failing_in_the_calling_thread_stops_the_workers(subdir, monkeypatch):
    """The second table's search-replace fails: the copier and the stager stop and everything is dropped."""
    setup = subdir
    every_table_alone(monkeypatch)
    real = pipeline.replace_in_tables
    calls = []

    def replace(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure in the second replace")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "replace_in_tables", replace)
    target_before = setup.target_fingerprint()
    migration_before = fingerprint(setup.migration_server, setup.migration_database)
    with pytest.raises(MigrationError) as raised:
        setup.site(2).run(timeout=120)
    assert (raised.value.phase, raised.value.failure_class) == ("replace", "site"), str(raised.value)
    assert len(calls) == 2
    _assert_nothing_left(setup, target_before, migration_before)


def test_each_table_is_counted_once_per_copy(subdir, monkeypatch):
    """COUNT(*) runs once on the source and once on each destination the rows arrive in, never more."""
    setup = subdir
    counted = []
    real = tbl.exact_row_counts

    def counting(conn, database, tables):
        counted.extend((database, table) for table in tables)
        return real(conn, database, tables)

    monkeypatch.setattr(tbl, "exact_row_counts", counting)
    result = setup.site(2).run(timeout=120)
    per_table = {}
    for database, table in counted:
        per_table[(database, table)] = per_table.get((database, table), 0) + 1
    assert max(per_table.values()) == 1, per_table
    # The source's tables, the work tables (by a dump into the migration DB) and the staged tables.
    assert len(counted) <= 3 * len(result["tables"])
    assert sorted(result["overlap"]["tables"]) == sorted(setup.source.site_tables(2))
    assert all(set(steps) == {"copy", "replace", "stage"} for steps in result["overlap"]["tables"].values())


def test_a_site_opens_one_connection_per_database_and_thread(subdir, monkeypatch):
    """Whatever the number of tables: the source and the target once, the migration DB for the lock holder (the
    stager writes through it), the copier and the search-replace."""
    setup = subdir
    opened = []
    real = Database.connect

    def connect_counted(self, *args, **kwargs):
        opened.append(self.role)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Database, "connect", connect_counted)
    result = setup.site(2).run(timeout=120)
    assert len(result["tables"]) == len(SITE_TABLES)
    assert sorted(opened) == ["migration"] * 3 + ["source", "target"], opened


def test_target_server_going_down_is_systemic_and_harmless(servers, monkeypatch):
    """A real outage: the target server is stopped between the search-replace and the staging."""
    private = ServerSet(("target",))
    private.start()
    setup = None
    try:
        setup = MigrationSetup({"source": servers["source"], "target": private["target"],
                                "migration": servers["migration"]},
                               NetworkSpec(url=DEV, sites=2, posts_per_site=3),
                               NetworkSpec(url=UAT, sites=2, posts_per_site=2, seed=2))
        before = setup.target_fingerprint()
        real_replace = pipeline.replace_in_tables

        def replace_then_stop_target(*args, **kwargs):
            result = real_replace(*args, **kwargs)
            stop_server(private["target"])
            return result

        monkeypatch.setattr(pipeline, "replace_in_tables", replace_then_stop_target)
        with pytest.raises(MigrationError) as raised:
            setup.site(2).run(timeout=60)
        error = raised.value
        assert (error.phase, error.failure_class, error.reason) == ("stage", "systemic", "connection")
        assert tbl.work_tables_of(setup.migration_tables()) == []
        start_server_again(private["target"])
        assert setup.target_fingerprint() == before
    finally:
        if setup is not None:
            setup.drop()
        private.stop()


# -- timeouts ---------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def table_locked(server, database, table):
    """Another session holds ``LOCK TABLES <table> WRITE`` until the block ends."""
    conn = connect(server, database)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLES `%s` WRITE" % table)
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        conn.close()


def test_timeout_while_the_source_table_is_locked(subdir):
    """The lock is taken before the run: the copy waits on the source and the deadline ends it."""
    setup = subdir
    target_before = setup.target_fingerprint()
    with table_locked(setup.source.server, setup.source.database, "wp_2_posts"):
        started = time.monotonic()
        with pytest.raises(PipelineTimeout) as raised:
            setup.site(2).run(timeout=1)
        assert time.monotonic() - started < 10
    assert (raised.value.phase, raised.value.failure_class) == ("copy", "site")
    assert setup.target_fingerprint() == target_before
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert client_children() == []


def test_timeout_while_mariadb_dump_waits_kills_the_dump(subdir, monkeypatch):
    """The lock is taken just before the dump starts: the deadline must end mariadb-dump and its loader."""
    setup = subdir
    lock = contextlib.ExitStack()
    real_tools = copy_engine.required_client_tools
    seen, done = set(), threading.Event()

    def look_at_children():
        while not done.wait(0.02):
            seen.update(p[1] for p in client_children())

    def lock_then_find_tools():
        if not seen:
            seen.add("locked")
            lock.enter_context(table_locked(setup.source.server, setup.source.database, "wp_2_posts"))
            watcher = threading.Thread(target=look_at_children, daemon=True)
            watcher.start()
            lock.callback(watcher.join)
            lock.callback(done.set)
        return real_tools()

    monkeypatch.setattr(copy_engine, "required_client_tools", lock_then_find_tools)
    target_before = setup.target_fingerprint()
    with lock, pytest.raises(PipelineTimeout) as raised:
        setup.site(2).run(timeout=2)
    assert raised.value.phase == "copy"
    # While the deadline ran, mariadb-dump waited for the lock and the loader for its input; now neither is left.
    assert seen == {"locked", "mariadb", "mariadb-dump"}
    assert client_children() == []
    assert setup.target_fingerprint() == target_before
    assert tbl.work_tables_of(setup.migration_tables()) == []


def test_timeout_while_the_swap_waits_for_a_lock(subdir, monkeypatch):
    """The live table is locked in the target: the RENAME waits, the deadline ends it, nothing is swapped."""
    setup = subdir
    real_swap = SiteMigration._swap

    def swap_with_one_second_left(self, *args):
        signal.alarm(1)  # the pipeline's own deadline, brought forward to the moment the RENAME starts waiting
        return real_swap(self, *args)

    monkeypatch.setattr(SiteMigration, "_swap", swap_with_one_second_left)
    target_before = setup.target_fingerprint()
    with table_locked(setup.target_server, setup.target_database, "wp_2_posts"):
        with pytest.raises(PipelineTimeout) as raised:
            setup.site(2).run(timeout=120)
    assert raised.value.phase == "swap"
    time.sleep(0.5)
    assert setup.target_fingerprint() == target_before
    assert tbl.target_leftovers(setup.target_tables(), "wp_") == []
    assert tbl.work_tables_of(setup.migration_tables()) == []
    busy = [row for row in query(setup.target_server, None, "SHOW PROCESSLIST") if row[4] not in ("Sleep", "Daemon")
            and row[7] != "SHOW PROCESSLIST"]
    assert busy == []


def test_pipeline_refuses_a_migration_db_that_is_an_environment(subdir):
    with pytest.raises(ConfigError, match="migration database"):
        SiteMigration(2, pipeline.Endpoint(subdir.source_env()), pipeline.Endpoint(subdir.target_env()),
                      subdir.target_server.connection(subdir.target_database)).run()


# -- migration database on the target's server ------------------------------------------------------------------------

@pytest.fixture
def beside_target(servers):
    """The migration database lives on the target's server: staging is a cross-database RENAME, not a copy."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=3, posts_per_site=5),
                           NetworkSpec(url=UAT, sites=2, posts_per_site=3, seed=2))
    drop_database(setup.migration_server, setup.migration_database)
    setup.migration_server = servers["target"]
    setup.migration_database = create_database(servers["target"], prefix="mig")
    yield setup
    drop_database(setup.migration_server, setup.migration_database)
    setup.drop()


@pytest.mark.parametrize("site_id, new_to_target", [(2, False), (3, True)])
def test_migration_db_on_the_target_server_stages_by_rename(beside_target, site_id, new_to_target):
    setup = beside_target
    before = setup.target_fingerprint()
    result = setup.site(site_id).run(timeout=120)
    assert_site_migrated(setup, site_id, result, before, new_to_target=new_to_target)
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert tbl.target_leftovers(setup.target_tables(), "wp_") == []


def test_verification_accepts_the_other_scheme_and_a_wordpress_directory(subdir):
    """siteurl http://… or …/wp (WordPress in a directory) is the site's address; a source host is not."""
    setup = subdir
    source = setup.source
    options = source.site_tables(3)
    options = next(t for t in options if t.endswith("_options"))
    original = dict(query(source.server, source.database,
                          "SELECT option_name, option_value FROM `%s` WHERE option_name IN ('siteurl', 'home')" % options))
    try:
        query(source.server, source.database, "UPDATE `%s` SET option_value = REPLACE(option_value, 'https://', 'http://') "
              "WHERE option_name = 'home'" % options)
        query(source.server, source.database, "UPDATE `%s` SET option_value = CONCAT(option_value, '/wp') "
              "WHERE option_name = 'siteurl'" % options)
        result = setup.site(3).run(timeout=120)
        values = site_options(setup, 3, ["siteurl", "home"])
        assert values == {"siteurl": result["url"] + "/wp", "home": result["url"].replace("https://", "http://")}
    finally:
        for name, value in original.items():
            query(source.server, source.database, "UPDATE `%s` SET option_value = %%s WHERE option_name = %%s" % options,
                  (value, name))


# -- tables only the target has -----------------------------------------------------------------------------------

@pytest.fixture
def target_has_more(servers):
    """Site 2 of uat has a table dev's site 2 has not (a plugin's): wp_2_plugin_log, with one row."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=2, posts_per_site=3),
                           NetworkSpec(url=UAT, sites=2, posts_per_site=2, seed=2))
    query(setup.target_server, setup.target_database, "CREATE TABLE wp_2_plugin_log (id INT PRIMARY KEY, note TEXT)")
    query(setup.target_server, setup.target_database, "INSERT INTO wp_2_plugin_log VALUES (1, 'kept in uat')")
    yield setup
    setup.drop()


def test_tables_only_the_target_has_are_reported_and_kept_by_default(target_has_more):
    setup = target_has_more
    plan = setup.site(2, check_mode=True).run()["plan"]
    assert (plan["target_only_tables"], plan["target_only_rule"]) == (["wp_2_plugin_log"], "keep")
    result = setup.site(2).run(timeout=120)
    assert (result["target_only_tables"], result["target_only_rule"]) == (["wp_2_plugin_log"], "keep")
    assert query(setup.target_server, setup.target_database, "SELECT note FROM wp_2_plugin_log") == (("kept in uat",),)
    assert setup.target_site_tables(2) == sorted(setup.expected_target_tables(2) + ["wp_2_plugin_log"])


def test_move_aside_takes_them_out_in_the_swap_and_keeps_them_with_the_backup(target_has_more, tmp_path, monkeypatch):
    setup = target_has_more
    statements = []
    real = tbl.rename_statement

    def recording(database, moves, to_database=None):
        statements.append(real(database, moves, to_database))
        return statements[-1]

    monkeypatch.setattr(tbl, "rename_statement", recording)
    backups = tmp_path / "backups"
    result = setup.site(2, options={"target_only_tables": "move_aside", "backup_dir": str(backups),
                                    "keep_backup_tables": True}).run(timeout=120)
    assert (result["target_only_tables"], result["target_only_rule"]) == (["wp_2_plugin_log"], "move_aside")
    # Exactly the source's tables now; the moved table went aside in the swap's one statement.
    assert setup.target_site_tables(2) == setup.expected_target_tables(2)
    swap = [s for s in statements if "wfu_stage__wp_2_posts` TO" in s]
    assert len(swap) == 1 and "`wp_2_plugin_log` TO `%s`.`wfu_old__wp_2_plugin_log`" % setup.target_database in swap[0]
    assert "wfu_old__wp_2_plugin_log" in result["backup"]["tables"]
    assert query(setup.target_server, setup.target_database,
                 "SELECT note FROM wfu_old__wp_2_plugin_log") == (("kept in uat",),)
    with gzip.open(result["backup"]["file"], "rt", encoding="utf-8") as dump:
        text = dump.read()
    assert "CREATE TABLE `wp_2_plugin_log`" in text and "kept in uat" in text


def test_an_undone_swap_brings_back_the_tables_moved_aside(target_has_more, monkeypatch, tmp_path):
    setup = target_has_more
    inject_verify_after_swap(monkeypatch, tmp_path)
    before = setup.target_fingerprint()
    with pytest.raises(MigrationError):
        setup.site(2, options={"target_only_tables": "move_aside"}).run(timeout=120)
    assert setup.target_fingerprint() == before


def test_an_unknown_target_only_rule_is_refused_before_anything_happens(target_has_more):
    with pytest.raises(ConfigError, match="target_only_tables must be one of keep, move_aside"):
        target_has_more.site(2, options={"target_only_tables": "drop"})


# -- a backup that does not fit ---------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 KB tmpfs (one page): a site's backup dump (about 10 KB here) fails there with a real ENOSPC."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs", str(mount_point)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % mounted.stderr.decode().strip())
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_backup_that_fills_the_disk_is_removed_and_the_site_left_as_it_was(subdir, small_disk):
    setup = subdir
    before = setup.target_fingerprint()
    with pytest.raises(MigrationError) as raised:
        setup.site(2, options={"backup_dir": str(small_disk)}).run(timeout=120)
    error = raised.value
    assert (error.phase, error.failure_class, error.reason) == ("backup", "systemic", "disk_full"), str(error)
    assert os.listdir(small_disk) == []
    assert setup.target_fingerprint() == before
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert client_children() == []


def test_every_loader_of_a_site_takes_a_lock_of_its_own(subdir, monkeypatch):
    """Each dump a site's call loads goes through a loader whose session takes a named lock of that call, so that
    the cleanup after a failure can end a killed loader's session before it drops tables (see test_copy_engine)."""
    setup = subdir
    real = copy_engine.load_command
    given = []

    def load_command(client_path, options, database, session_lock=None):
        given.append(session_lock)
        return real(client_path, options, database, session_lock)

    monkeypatch.setattr(copy_engine, "load_command", load_command)
    migration = setup.site(4)
    migration.run(timeout=120)
    assert given and None not in given
    assert len(set(given)) == len(given) and sorted(given) == sorted(migration.load_locks)
