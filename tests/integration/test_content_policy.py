"""The content policy against real MariaDB servers: rows left out at copy time, the target's values kept.

The source is a generated network (tools/wpnetwork.py) given what the policy is about: spam and trashed comments
with commentmeta, revisions and autosaves with postmeta and term relationships, a custom post type, transients
and site transients with their timeouts (and option names that merely look like them).  The target already holds
site 2 with its own blog_public, admin_email and active_plugins, and its own active_sitewide_plugins; site 3 is new
to it.  What the target must hold is computed from the source by SQL written here (joins and LEFT(), not the
policy's own LIKE conditions), never hard-coded.
"""

import contextlib
import json
import os

import pytest
from helpers import MigrationSetup, connect, create_database, drop_database, query, row_counts
from role_helpers import MigrationSetup as RoleSetup

from ansible_collections.wfu.multisite.plugins.module_utils import content_policy
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import copy_tables
from ansible_collections.wfu.multisite.plugins.module_utils.db import Database
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint, NetworkMigration, SiteMigration
from tools.wpnetwork import NetworkSpec, php_serialize

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
EXCLUDED_TYPES = ("revision", "event")
EVERYTHING = {"exclude_transients": True, "exclude_spam_comments": True, "exclude_revisions": True,
              "exclude_post_types": ["event"]}
PRESERVE_OPTIONS = ["blog_public", "admin_email", "active_plugins", "wfu_uat_only", "wfu_source_only", "wfu_nowhere"]
PRESERVE_SITEMETA = ["active_sitewide_plugins", "wfu_uat_network_only", "wfu_nowhere"]
# The target's own values of the preserved options of site 2 (and of the network).
TARGET_OPTIONS = {"blog_public": "0", "admin_email": "uat-admins@example.edu",
                  "active_plugins": php_serialize(["query-monitor/query-monitor.php"]), "wfu_uat_only": "kept from uat"}
TARGET_SITEMETA = {"active_sitewide_plugins": php_serialize({"uat-banner/uat-banner.php": 1700000000}),
                   "wfu_uat_network_only": "uat network value"}
# Names that look like transients but are not: an unescaped LIKE '_transient_%' would take them.
LOOKALIKES = ("_transientXkeep", "xtransient_keep", "_site_transientXkeep", "a_transient_b")


def execute(server, database, statements):
    with contextlib.closing(connect(server, database)) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        for statement, args in statements:
            cur.execute(statement, args)
        conn.commit()


def enrich_source_site(server, database, prefix, site_id):
    """Give a source site what the policy is about, with the site's URL inside so the search-replace matters."""
    p = tbl.site_table_prefix(prefix, site_id)
    url = "%s/site%d" % (DEV, site_id)
    statements = []
    comments = [(9001, "trash"), (9002, "trash"), (9003, "spam"), (9004, "spam"), (9005, "1"), (9006, "0")]
    for comment_id, approved in comments:
        statements.append(("INSERT INTO `%scomments` (comment_ID, comment_post_ID, comment_author, comment_author_url, "
                           "comment_content, comment_approved) VALUES (%%s, 1, 'Robot', %%s, %%s, %%s)" % p,
                           (comment_id, url + "/", "see %s/?p=1" % url, approved)))
        for key in ("akismet_result", "akismet_history"):
            statements.append(("INSERT INTO `%scommentmeta` (comment_id, meta_key, meta_value) VALUES (%%s, %%s, %%s)"
                               % p, (comment_id, key, php_serialize({"url": url, "approved": approved}))))
    # Spam the generator made: give it meta too.
    statements.append(("INSERT INTO `%scommentmeta` (comment_id, meta_key, meta_value) SELECT comment_ID, "
                       "'akismet_as_submitted', 'x' FROM `%scomments` WHERE comment_approved = 'spam'" % (p, p), None))
    posts = [(9101, "revision", "1-autosave-v1", "inherit"), (9102, "revision", "1-revision-v9", "inherit"),
             (9201, "event", "open-house", "publish"), (9202, "event", "commencement", "publish"),
             (9301, "tribe_venue", "wait-chapel", "publish")]
    for post_id, post_type, name, status in posts:
        statements.append(("INSERT INTO `%sposts` (ID, post_author, post_content, post_title, post_excerpt, "
                           "post_status, post_name, to_ping, pinged, post_content_filtered, post_parent, guid, "
                           "post_type) VALUES "
                           "(%%s, 1, %%s, %%s, '', %%s, %%s, '', '', '', 1, %%s, %%s)" % p,
                           (post_id, "<a href=\"%s/\">home</a>" % url, name, status, name,
                            "%s/?p=%d" % (url, post_id), post_type)))
        for key in ("_edit_last", "_wfu_link"):
            statements.append(("INSERT INTO `%spostmeta` (post_id, meta_key, meta_value) VALUES (%%s, %%s, %%s)" % p,
                               (post_id, key, url + "/")))
        statements.append(("INSERT INTO `%sterm_relationships` (object_id, term_taxonomy_id, term_order) VALUES "
                           "(%%s, 1, 0)" % p, (post_id,)))
    # The generator's revisions get meta and terms too.
    statements.append(("INSERT INTO `%spostmeta` (post_id, meta_key, meta_value) SELECT ID, '_wp_old_slug', "
                       "post_name FROM `%sposts` WHERE post_type = 'revision' AND ID < 9000" % (p, p), None))
    statements.append(("INSERT IGNORE INTO `%sterm_relationships` (object_id, term_taxonomy_id, term_order) SELECT ID, "
                       "1, 0 FROM `%sposts` WHERE post_type = 'revision' AND ID < 9000" % (p, p), None))
    options = [("_transient_wfu_probe", url), ("_transient_timeout_wfu_probe", "1700000000"),
               ("_site_transient_wfu_probe", url), ("_site_transient_timeout_wfu_probe", "1700000000"),
               ("wfu_source_only", "from dev at %s" % url)] + [(name, "not a transient") for name in LOOKALIKES]
    for name, value in options:
        statements.append(("INSERT INTO `%soptions` (option_name, option_value, autoload) VALUES (%%s, %%s, 'off')" % p,
                           (name, value)))
    execute(server, database, statements)


def give_target_its_own_values(setup, site_id):
    p = tbl.site_table_prefix(setup.target_prefix, site_id)
    statements = [("DELETE FROM `%soptions` WHERE option_name IN (%s)" % (p, ", ".join(["%s"] * len(TARGET_OPTIONS))),
                   tuple(TARGET_OPTIONS))]
    statements += [("INSERT INTO `%soptions` (option_name, option_value, autoload) VALUES (%%s, %%s, 'yes')" % p,
                    (name, value)) for name, value in TARGET_OPTIONS.items()]
    sitemeta = setup.target_prefix + "sitemeta"
    statements.append(("DELETE FROM `%s` WHERE meta_key IN (%s)" % (sitemeta, ", ".join(["%s"] * len(TARGET_SITEMETA))),
                       tuple(TARGET_SITEMETA)))
    statements += [("INSERT INTO `%s` (site_id, meta_key, meta_value) VALUES (1, %%s, %%s)" % sitemeta, (key, value))
                   for key, value in TARGET_SITEMETA.items()]
    execute(setup.target_server, setup.target_database, statements)


@pytest.fixture(params=["dump", "insert_select"])
def policy(servers, request):
    """Sites 1-3 in dev, 1-2 in uat.  ``insert_select``: the migration database lives on the source's server."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=3, posts_per_site=4),
                           NetworkSpec(url=UAT, sites=2, posts_per_site=3, seed=2))
    if request.param == "insert_select":
        drop_database(setup.migration_server, setup.migration_database)
        setup.migration_server = servers["source"]
        setup.migration_database = create_database(servers["source"], prefix="mig")
    setup.route = request.param
    for site_id in (1, 2, 3):
        enrich_source_site(setup.source.server, setup.source.database, setup.source.prefix, site_id)
    give_target_its_own_values(setup, 2)
    yield setup
    if request.param == "insert_select":
        drop_database(setup.migration_server, setup.migration_database)
    setup.drop()


def site_migration(setup, site_id, options, check_mode=False):
    target = Endpoint(dict(setup.target_env(), preserve_options=PRESERVE_OPTIONS))
    return SiteMigration(site_id, Endpoint(setup.source_env()), target, setup.migration_db(), options=options,
                         check_mode=check_mode)


def network_migration(setup, options):
    target = Endpoint(dict(setup.target_env(), preserve_sitemeta=PRESERVE_SITEMETA))
    return NetworkMigration(Endpoint(setup.source_env()), target, setup.migration_db(), options)


# -- what the target must hold, computed from the source ------------------------------------------------------------

def kept_keys(server, database, p, table):
    """The keys of ``table``'s rows the policy keeps, by SQL of our own: joins and LEFT(), no LIKE."""
    types = ", ".join("'%s'" % name for name in EXCLUDED_TYPES)
    removed = "c.comment_approved IN ('spam', 'trash')"
    sql = {
        "posts": "SELECT ID FROM `{p}posts` WHERE post_type NOT IN (%s)" % types,
        "postmeta": "SELECT m.meta_id FROM `{p}postmeta` m LEFT JOIN `{p}posts` x ON x.ID = m.post_id "
                    "WHERE x.ID IS NULL OR x.post_type NOT IN (%s)" % types,
        "term_relationships": "SELECT CONCAT(r.object_id, '/', r.term_taxonomy_id) FROM `{p}term_relationships` r "
                              "LEFT JOIN `{p}posts` x ON x.ID = r.object_id WHERE x.ID IS NULL OR "
                              "x.post_type NOT IN (%s)" % types,
        "comments": "SELECT c.comment_ID FROM `{p}comments` c WHERE NOT %s" % removed,
        "commentmeta": "SELECT m.meta_id FROM `{p}commentmeta` m LEFT JOIN `{p}comments` c ON "
                       "c.comment_ID = m.comment_id WHERE c.comment_ID IS NULL OR NOT %s" % removed,
        "options": "SELECT option_name FROM `{p}options` WHERE BINARY LEFT(option_name, 11) <> '_transient_' AND "
                   "BINARY LEFT(option_name, 16) <> '_site_transient_'",
    }[table].format(p=p)
    return {row[0] for row in query(server, database, sql)}


def all_keys(server, database, p, table):
    key = {"posts": "ID", "postmeta": "meta_id", "comments": "comment_ID", "commentmeta": "meta_id",
           "options": "option_name", "term_relationships": "CONCAT(object_id, '/', term_taxonomy_id)"}[table]
    return {row[0] for row in query(server, database, "SELECT %s FROM `%s%s`" % (key, p, table))}


POLICY_TABLES = ("posts", "postmeta", "term_relationships", "comments", "commentmeta", "options")


def expected_site(setup, site_id):
    """``{table: (keys kept, rows left out)}`` of the source site, by the table's name without the prefix."""
    source = setup.source
    p = tbl.site_table_prefix(source.prefix, site_id)
    expected = {}
    for table in POLICY_TABLES:
        kept = kept_keys(source.server, source.database, p, table)
        expected[table] = (kept, len(all_keys(source.server, source.database, p, table)) - len(kept))
        assert expected[table][1] > 0, "the source's %s%s has nothing the policy leaves out" % (p, table)
    return expected


def target_options(setup, site_id, names):
    p = tbl.site_table_prefix(setup.target_prefix, site_id)
    return dict(query(setup.target_server, setup.target_database,
                      "SELECT option_name, option_value FROM `%soptions` WHERE option_name IN (%s)"
                      % (p, ", ".join(["%s"] * len(names))), tuple(names)))


def source_options(setup, site_id, names):
    p = tbl.site_table_prefix(setup.source.prefix, site_id)
    return dict(query(setup.source.server, setup.source.database,
                      "SELECT option_name, option_value FROM `%soptions` WHERE option_name IN (%s)"
                      % (p, ", ".join(["%s"] * len(names))), tuple(names)))


def assert_site_holds_what_was_asked(setup, site_id, result, expected, inserted_options=()):
    source = setup.source
    tp = tbl.site_table_prefix(setup.target_prefix, site_id)
    sp = tbl.site_table_prefix(source.prefix, site_id)
    for table, (kept, left_out) in expected.items():
        arrived = all_keys(setup.target_server, setup.target_database, tp, table)
        wanted = kept | set(inserted_options) if table == "options" else kept
        assert arrived == wanted, (table, sorted(arrived ^ wanted)[:10])
        assert result["excluded"][tp + table] == left_out
    assert set(result["excluded"]) == {tp + table for table in POLICY_TABLES}
    # Tables the policy does not touch arrive whole.
    others = [t for t in source.site_tables(site_id) if t[len(sp):] not in POLICY_TABLES]
    assert others and row_counts(setup.target_server, setup.target_database,
                                 [tbl.retarget_table(t, source.prefix, setup.target_prefix) for t in others]) == \
        {tbl.retarget_table(t, source.prefix, setup.target_prefix): n
         for t, n in row_counts(source.server, source.database, others).items()}
    # The copy counted the rows kept: net of what was left out.
    copied = sum(len(kept) for kept, _left_out in expected.values()) + sum(row_counts(source.server, source.database,
                                                                                      others).values())
    assert result["rows"] == copied
    assert result["copy_method"] == setup.route
    lookalikes = target_options(setup, site_id, list(LOOKALIKES))
    assert lookalikes == dict.fromkeys(LOOKALIKES, "not a transient")
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert tbl.target_leftovers(setup.target_tables(), setup.target_prefix) == []


def test_an_existing_site_arrives_without_what_was_left_out_and_keeps_the_targets_options(policy):
    setup = policy
    expected = expected_site(setup, 2)
    result = site_migration(setup, 2, EVERYTHING).run(timeout=300)
    assert result["new_to_target"] is False
    # The target's own values of the preserved options, one of them the target has and the source lacks.
    assert_site_holds_what_was_asked(setup, 2, result, expected, inserted_options=["wfu_uat_only"])
    assert target_options(setup, 2, list(TARGET_OPTIONS)) == TARGET_OPTIONS
    assert sorted(result["preserved"]) == sorted(TARGET_OPTIONS)
    # One the target lacks keeps the source's value (after the search-replace); one nobody has stays absent.
    assert target_options(setup, 2, ["wfu_source_only", "wfu_nowhere"]) == {
        "wfu_source_only": "from dev at %s/site2" % UAT}
    # The rest of the options came from the source, rewritten.
    assert target_options(setup, 2, ["siteurl"]) == {"siteurl": result["url"]}


def test_a_site_new_to_the_target_keeps_the_sources_values(policy):
    setup = policy
    expected = expected_site(setup, 3)
    assert setup.target_site_tables(3) == []
    result = site_migration(setup, 3, EVERYTHING).run(timeout=300)
    assert result["new_to_target"] is True and result["preserved"] == []
    assert_site_holds_what_was_asked(setup, 3, result, expected)
    names = ["blog_public", "admin_email", "active_plugins"]
    assert target_options(setup, 3, names) == source_options(setup, 3, names)
    assert target_options(setup, 3, ["wfu_uat_only"]) == {}


def test_the_main_site_uses_the_unnumbered_tables(policy):
    setup = policy
    expected = expected_site(setup, 1)
    result = site_migration(setup, 1, EVERYTHING).run(timeout=300)
    assert_site_holds_what_was_asked(setup, 1, result, expected)
    assert "wp_options" in result["excluded"] and "wp_sitemeta" not in result["excluded"]


def test_without_the_options_everything_arrives(policy):
    setup = policy
    before = row_counts(setup.source.server, setup.source.database, setup.source.site_tables(2))
    result = site_migration(setup, 2, {}).run(timeout=300)
    assert result["excluded"] == {}
    # Every row of the source, and the preserved option only the target had.
    before["wp_2_options"] += 1
    assert row_counts(setup.target_server, setup.target_database, setup.expected_target_tables(2)) == before
    assert target_options(setup, 2, list(TARGET_OPTIONS)) == TARGET_OPTIONS


def test_the_plan_says_what_would_be_left_out_and_kept(policy):
    setup = policy
    expected = expected_site(setup, 2)
    before = setup.target_fingerprint()
    result = site_migration(setup, 2, EVERYTHING, check_mode=True).run()
    plan = result["plan"]
    assert plan["excluded"] == {"wp_2_" + table: left_out for table, (_kept, left_out) in expected.items()}
    assert sorted(plan["preserved"]) == sorted(TARGET_OPTIONS)
    assert setup.target_fingerprint() == before
    assert site_migration(setup, 3, EVERYTHING, check_mode=True).run()["plan"]["preserved"] == []


def test_the_network_leaves_out_site_transients_and_keeps_the_targets_network_options(policy):
    setup = policy
    source, sitemeta = setup.source, setup.source.prefix + "sitemeta"
    keys = query(source.server, source.database, "SELECT site_id, meta_key FROM `%s`" % sitemeta)
    kept = {(site_id, key) for site_id, key in keys if not key.startswith("_site_transient_")}
    assert len(kept) < len(keys)
    plan = NetworkMigration(Endpoint(setup.source_env()), Endpoint(dict(setup.target_env(),
                                                                        preserve_sitemeta=PRESERVE_SITEMETA)),
                            setup.migration_db(), {"exclude_transients": True}, check_mode=True).run()["plan"]
    assert plan["excluded"] == {sitemeta: len(keys) - len(kept)}
    assert plan["preserved"] == sorted(TARGET_SITEMETA)

    result = network_migration(setup, {"exclude_transients": True}).run(timeout=300)
    arrived = set(query(setup.target_server, setup.target_database, "SELECT site_id, meta_key FROM `%s`" % sitemeta))
    assert arrived == kept | {(1, "wfu_uat_network_only")}
    assert result["excluded"] == {sitemeta: len(keys) - len(kept)}
    assert result["preserved"] == sorted(TARGET_SITEMETA)
    values = dict(query(setup.target_server, setup.target_database, "SELECT meta_key, meta_value FROM `%s` WHERE "
                        "meta_key IN (%%s, %%s)" % sitemeta, tuple(TARGET_SITEMETA)))
    assert values == TARGET_SITEMETA
    # Without the option the site transients come along.
    network_migration(setup, {}).run(timeout=300)
    assert row_counts(setup.target_server, setup.target_database, [sitemeta])[sitemeta] == len(keys) + 1


@pytest.mark.parametrize("method", ["insert_select", "dump", "pymysql"])
def test_every_copy_method_filters_and_verifies_net_of_what_was_left_out(servers, fresh_db, method):
    """copy_tables itself, in each method, with the site's conditions."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, sites=2, posts_per_site=3), None)
    try:
        enrich_source_site(setup.source.server, setup.source.database, setup.source.prefix, 2)
        expected = expected_site(setup, 2)
        source = Database.from_params(setup.source.server.connection(setup.source.database))
        dest_server = "source" if method == "insert_select" else "target"
        dest_database = fresh_db(dest_server)
        dest = Database.from_params(servers[dest_server].connection(dest_database))
        tables = setup.source.site_tables(2)
        filters = content_policy.site_filters(EVERYTHING, setup.source.database, "wp_2_", tables)
        result = copy_tables(source, tables, dest, method=method, filters=filters)
        assert result["method"] == method
        assert result["excluded"] == {"wp_2_" + table: left_out for table, (_kept, left_out) in expected.items()}
        for table, (kept, _left_out) in expected.items():
            assert all_keys(servers[dest_server], dest_database, "wp_2_", table) == kept, table
            assert result["tables"]["wp_2_" + table]["rows"] == len(kept)
    finally:
        setup.drop()


# -- through the role: the options saved with the migration, passed on, their outcome recorded ----------------------

def test_the_role_passes_the_policy_on_and_records_what_was_left_out_and_kept(servers, tmp_path):
    setup = RoleSetup(servers, tmp_path, NetworkSpec(url=DEV, subdomain=True, seed=5, site_ids=[1, 2],
                                                     posts_per_site=2))
    try:
        settings_file = os.path.join(setup.directory, "group_vars", "all.yml")
        with open(settings_file, encoding="utf-8") as handle:
            settings = json.load(handle)
        settings["wfu_environments"]["uat"].update(preserve_options=["blog_public", "wfu_uat_only"],
                                                   preserve_sitemeta=["active_sitewide_plugins"])
        with open(settings_file, "w", encoding="utf-8") as handle:
            json.dump(settings, handle)
        enrich_source_site(setup.source, setup.source_db, "wp_", 2)
        p = "wp_2_"
        left_out = {p + table: len(all_keys(setup.source, setup.source_db, p, table)) -
                    len(kept_keys(setup.source, setup.source_db, p, table)) for table in POLICY_TABLES}
        site_transients = query(setup.source, setup.source_db,
                                "SELECT COUNT(*) FROM wp_sitemeta WHERE LEFT(meta_key, 16) = '_site_transient_'")[0][0]
        options = dict(exclude_transients=True, exclude_spam_comments=True, exclude_revisions=True,
                       exclude_post_types="event")

        first = setup.run(source_env="dev", target_env="uat", **options)
        assert first.returncode == 0, first.stdout[-6000:]
        state = setup.state()
        assert state["status"] == "completed"
        assert {key: state["options"][key] for key in options} == dict(options, exclude_post_types=["event"])
        assert state["sites"]["2"]["result"]["excluded"] == left_out
        assert state["sites"]["2"]["result"]["preserved"] == []
        assert state["network_tables"]["result"]["excluded"] == {"wp_sitemeta": site_transients}
        assert query(setup.target, setup.target_db, "SELECT COUNT(*) FROM wp_2_posts WHERE post_type IN "
                     "('revision', 'event')")[0][0] == 0

        # Now uat has the site and the network, with values of its own: a second migration keeps them.
        execute(setup.target, setup.target_db, [
            ("UPDATE wp_2_options SET option_value = '0' WHERE option_name = 'blog_public'", None),
            ("INSERT INTO wp_2_options (option_name, option_value, autoload) VALUES ('wfu_uat_only', 'uat', 'no')",
             None),
            ("UPDATE wp_sitemeta SET meta_value = 'a:0:{}' WHERE meta_key = 'active_sitewide_plugins'", None)])
        second = setup.run(source_env="dev", target_env="uat", **options)
        assert second.returncode == 0, second.stdout[-6000:]
        latest = setup.state(setup.migration_ids()[-1])
        assert latest["sites"]["2"]["result"]["preserved"] == ["blog_public", "wfu_uat_only"]
        assert latest["network_tables"]["result"]["preserved"] == ["active_sitewide_plugins"]
        kept = query(setup.target, setup.target_db, "SELECT option_name, option_value FROM wp_2_options WHERE "
                     "option_name IN ('blog_public', 'wfu_uat_only')")
        assert dict(kept) == {"blog_public": "0", "wfu_uat_only": "uat"}
        assert query(setup.target, setup.target_db, "SELECT meta_value FROM wp_sitemeta WHERE "
                     "meta_key = 'active_sitewide_plugins'") == (("a:0:{}",),)
    finally:
        setup.drop()
