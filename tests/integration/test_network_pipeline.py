"""NetworkMigration against three real MariaDB servers: wp_blogs, wp_site, wp_sitemeta, wp_blogmeta (and users).

The expected addresses in the target come from the generator laid out at the
target's url, not from the pipeline's mapping code.
"""

import contextlib
import errno
from urllib.parse import urlsplit

import pymysql
import pytest
from helpers import (OUTSIDE_HOSTS, MigrationSetup, addresses, count_occurrences, fingerprint, host_leftovers,
                     php_unserializes, query, row_counts, serialized_values, without)

from ansible_collections.wfu.multisite.plugins.module_utils import pipeline
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import NetworkMigration
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
NETWORK = ["blogmeta", "blogs", "registration_log", "signups", "site", "sitemeta"]


@pytest.fixture(scope="module")
def subdir(servers):
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=4, posts_per_site=2),
                           NetworkSpec(url=UAT, sites=3, posts_per_site=2, seed=2))
    yield setup
    setup.drop()


@pytest.fixture(scope="module")
def subdomain(servers):
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, subdomain=True, sites=4, posts_per_site=2),
                           NetworkSpec(url=UAT, subdomain=True, sites=2, posts_per_site=2, seed=2))
    yield setup
    setup.drop()


def network_tables(prefix, users=False):
    return sorted(prefix + name for name in NETWORK + (["usermeta", "users"] if users else []))


def assert_network_migrated(setup, result, before, users=False):
    source, target_prefix = setup.source, setup.target_prefix
    source_tables, expected = network_tables(source.prefix, users), network_tables(target_prefix, users)
    assert result["changed"] is True and result["tables"] == expected
    source_counts = row_counts(source.server, source.database, source_tables)
    assert row_counts(setup.target_server, setup.target_database, expected) == {
        tbl.retarget_table(t, source.prefix, target_prefix): n for t, n in source_counts.items()}

    where = addresses(setup.target_url, source.spec)
    blogs = query(setup.target_server, setup.target_database,
                  "SELECT blog_id, domain, path, registered, public, archived, spam, deleted FROM `%sblogs` "
                  "ORDER BY blog_id" % target_prefix)
    source_blogs = query(source.server, source.database,
                         "SELECT blog_id, domain, path, registered, public, archived, spam, deleted FROM `%sblogs` "
                         "ORDER BY blog_id" % source.prefix)
    assert [row[:3] for row in blogs] == [(blog_id, domain, path) for blog_id, (domain, path, _url) in where.items()]
    assert [row[3:] for row in blogs] == [row[3:] for row in source_blogs]
    target_host = urlsplit(setup.target_url).hostname
    assert query(setup.target_server, setup.target_database,
                 "SELECT domain, path FROM `%ssite`" % target_prefix) == ((target_host, "/"),)
    assert query(setup.target_server, setup.target_database, "SELECT meta_value FROM `%ssitemeta` WHERE meta_key = "
                 "'siteurl'" % target_prefix) == ((setup.target_url + "/",),)

    source_host = urlsplit(source.spec.url).hostname
    assert host_leftovers(setup.target_server, setup.target_database, expected, source_host) == []
    for outside in OUTSIDE_HOSTS:
        assert count_occurrences(setup.target_server, setup.target_database, expected, outside) == \
            count_occurrences(source.server, source.database, source_tables, outside)

    values_before = serialized_values(source.server, source.database, source_tables, source.prefix)
    values_after = serialized_values(setup.target_server, setup.target_database, expected, target_prefix)
    keys = sorted(values_before)
    verdicts = php_unserializes([values_before[k] for k in keys] + [values_after[k] for k in keys])
    assert len(keys) >= 5 and verdicts == [True] * (2 * len(keys))

    # Only the network tables changed; the sites' tables (and the users, unless asked for) are as they were.
    after = setup.target_fingerprint()
    assert without(after, expected) == without(before, expected)
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert tbl.target_leftovers(setup.target_tables(), target_prefix) == []


@pytest.mark.parametrize("network", ["subdir", "subdomain"])
def test_network_tables_arrive_with_the_target_addresses(request, network):
    setup = request.getfixturevalue(network)
    before = setup.target_fingerprint()
    result = setup.network().run(timeout=120)
    assert_network_migrated(setup, result, before)
    # The pending signup of a site that does not exist yet gets the target's address too.
    expected = ("newdept.uat.example.edu", "/") if network == "subdomain" else ("uat.example.edu", "/newdept/")
    assert query(setup.target_server, setup.target_database,
                 "SELECT domain, path FROM wp_signups WHERE domain <> ''") == (expected,)


def test_users_come_along_only_when_asked_and_follow_a_new_prefix(servers):
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=3, posts_per_site=2),
                           NetworkSpec(url=UAT, sites=2, posts_per_site=2, seed=5, prefix="wpx9_"))
    try:
        before = setup.target_fingerprint()
        result = setup.network({"include_users": True}).run()
        assert_network_migrated(setup, result, before, users=True)
        keys = [row[0] for row in query(setup.target_server, setup.target_database,
                                        "SELECT meta_key FROM wpx9_usermeta")]
        source_keys = [row[0] for row in query(setup.source.server, setup.source.database,
                                               "SELECT meta_key FROM wp_usermeta")]
        prefixed = [key for key in source_keys if key.startswith("wp_")]
        assert {"wp_capabilities", "wp_2_capabilities"} <= set(prefixed)
        assert sorted(keys) == sorted("wpx9_" + key[3:] if key.startswith("wp_") else key for key in source_keys)
    finally:
        setup.drop()


def test_network_into_an_empty_target_then_its_sites(servers):
    """A new environment: the network tables first, then the sites; WordPress finds every site."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, subdomain=True, sites=3, posts_per_site=2), None)
    try:
        result = setup.network().run()
        assert result["tables"] == network_tables("wp_")
        for site_id in (1, 2, 3):
            outcome = setup.site(site_id).run()
            assert outcome["new_to_target"] is True and outcome["blog_row_created"] is False
        where = addresses(UAT, setup.source.spec)
        for site_id, (domain, path, url) in where.items():
            options = "wp_options" if site_id == 1 else "wp_%d_options" % site_id
            assert query(setup.target_server, setup.target_database,
                         "SELECT b.domain, b.path, o.option_value FROM wp_blogs b, `%s` o WHERE b.blog_id = %%s AND "
                         "o.option_name = 'home'" % options, (site_id,)) == ((domain, path, url),)
        assert setup.migration_tables() == []
    finally:
        setup.drop()


def test_check_mode_shows_the_address_mapping_and_changes_nothing(subdomain):
    setup = subdomain
    before = (setup.target_fingerprint(), fingerprint(setup.migration_server, setup.migration_database))
    result = setup.network(check_mode=True).run()
    assert result["changed"] is False
    plan = result["plan"]
    assert [t["target"] for t in plan["tables"]] == network_tables("wp_")
    where = addresses(UAT, setup.source.spec)
    assert {site["blog_id"]: site["target"] for site in plan["sites"]} == {
        blog_id: domain + path for blog_id, (domain, path, _url) in where.items()}
    assert (setup.target_fingerprint(), fingerprint(setup.migration_server, setup.migration_database)) == before


def _fail_after(function, error, on_call=1):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        result = function(*args, **kwargs)
        if len(calls) == on_call:
            raise error
        return result

    return wrapper


def inject_copy(monkeypatch):
    monkeypatch.setattr(pipeline, "copy_tables", _fail_after(
        pipeline.copy_tables, pymysql.err.OperationalError(2003, "Can't connect to server on '127.0.0.1'")))


def inject_replace(monkeypatch):
    monkeypatch.setattr(pipeline, "replace_in_tables", _fail_after(pipeline.replace_in_tables,
                                                                   ValueError("injected failure in the replace")))


def inject_stage(monkeypatch):
    monkeypatch.setattr(pipeline, "copy_tables", _fail_after(
        pipeline.copy_tables, OSError(errno.ENOSPC, "No space left on device"), on_call=2))


def inject_lost_row(monkeypatch):
    real_stage = NetworkMigration._stage

    def stage(self, mig_conn, work_to_stage, **kwargs):
        result = real_stage(self, mig_conn, work_to_stage, **kwargs)
        staged_blogs = next(t for t in work_to_stage.values() if t.endswith("_blogs"))
        with contextlib.closing(self.target.db.connect()) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM `%s`.`%s` WHERE blog_id = 2" % (self.target.database, staged_blogs))
        return result

    monkeypatch.setattr(NetworkMigration, "_stage", stage)


def inject_rename(monkeypatch):
    real = tbl.rename_statement
    monkeypatch.setattr(tbl, "rename_statement",
                        lambda database, moves, to_database=None: real(
                            database, list(moves) + [("wfu_missing", "wfu_missing_2")], to_database))


@pytest.mark.parametrize("inject, phase, failure_class", [
    (inject_copy, "copy", "systemic"),
    (inject_replace, "replace", "site"),
    (inject_stage, "stage", "systemic"),
    (inject_lost_row, "verify", "site"),
    (inject_rename, "swap", "site"),
], ids=["copy", "replace", "stage", "verify", "swap"])
def test_failure_leaves_the_network_tables_as_they_were(subdir, monkeypatch, inject, phase, failure_class):
    setup = subdir
    inject(monkeypatch)
    before = (setup.target_fingerprint(), fingerprint(setup.migration_server, setup.migration_database))
    with pytest.raises(MigrationError) as raised:
        setup.network().run(timeout=120)
    assert (raised.value.phase, raised.value.failure_class) == (phase, failure_class), str(raised.value)
    assert (setup.target_fingerprint(), fingerprint(setup.migration_server, setup.migration_database)) == before


# -- sites only the target has ----------------------------------------------------------------------------------------

@pytest.fixture
def with_target_only_site(servers):
    """dev has sites 1-3, uat 1-2 plus site 9, which only uat has (with its wp_blogmeta rows and its tables)."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=3, posts_per_site=2),
                           NetworkSpec(url=UAT, sites=2, posts_per_site=2, seed=2))

    def add_site(domain, path):
        query(setup.target_server, setup.target_database,
              "INSERT INTO wp_blogs (blog_id, site_id, domain, path, registered, last_updated, public, archived, mature, "
              "spam, deleted, lang_id) VALUES (9, 1, %s, %s, '2024-01-02 03:04:05', '2024-01-02 03:04:05', 1, 0, 0, "
              "0, 0, 0)", (domain, path))
        for key, value in (("db_version", "57155"), ("is_uat_lab", "https://uat.example.edu/lab/")):
            query(setup.target_server, setup.target_database,
                  "INSERT INTO wp_blogmeta (blog_id, meta_key, meta_value) VALUES (9, %s, %s)", (key, value))
        query(setup.target_server, setup.target_database, "CREATE TABLE wp_9_options (option_id INT PRIMARY KEY)")

    setup.add_target_only_site = add_site
    yield setup
    setup.drop()


def rows_of_site_9(setup):
    return (query(setup.target_server, setup.target_database,
                  "SELECT blog_id, site_id, domain, path, CAST(registered AS CHAR), public FROM wp_blogs WHERE "
                  "blog_id = 9"),
            query(setup.target_server, setup.target_database,
                  "SELECT meta_key, meta_value FROM wp_blogmeta WHERE blog_id = 9 ORDER BY meta_key"))


def test_a_site_only_the_target_has_keeps_its_network_rows(with_target_only_site):
    setup = with_target_only_site
    setup.add_target_only_site("uat.example.edu", "/lab/")
    before = rows_of_site_9(setup)
    assert before[0] and len(before[1]) == 2
    plan = setup.network(check_mode=True).run()["plan"]
    assert plan["target_only_sites"] == [{"blog_id": 9, "domain": "uat.example.edu", "path": "/lab/"}]
    result = setup.network().run(timeout=120)
    assert result["target_only_sites"] == [{"blog_id": 9, "domain": "uat.example.edu", "path": "/lab/"}]
    # Its rows came along unchanged, and every site of the source arrived as well.
    assert rows_of_site_9(setup) == before
    blog_ids = [row[0] for row in query(setup.target_server, setup.target_database, "SELECT blog_id FROM wp_blogs")]
    assert sorted(blog_ids) == [1, 2, 3, 9]
    source_meta = query(setup.source.server, setup.source.database, "SELECT COUNT(*) FROM wp_blogmeta")[0][0]
    assert query(setup.target_server, setup.target_database, "SELECT COUNT(*) FROM wp_blogmeta")[0][0] == source_meta + 2
    assert "wp_9_options" in setup.target_tables()
    assert tbl.work_tables_of(setup.migration_tables()) == []


def test_a_site_only_the_target_has_at_a_migrated_sites_address_stops_the_network_step(with_target_only_site):
    setup = with_target_only_site
    domain, path, _url = addresses(UAT, setup.source.spec)[3]
    setup.add_target_only_site(domain, path)
    before = (setup.target_fingerprint(), fingerprint(setup.migration_server, setup.migration_database))
    with pytest.raises(MigrationError) as raised:
        setup.network().run(timeout=120)
    message = str(raised.value)
    assert "site 9 exists only in uat, at %s%s, and site 3 of dev would arrive at the same address" % (
        domain, path) in message
    assert "give site 9 in uat another address" in message and raised.value.phase == "prepare"
    assert (setup.target_fingerprint(), fingerprint(setup.migration_server, setup.migration_database)) == before
