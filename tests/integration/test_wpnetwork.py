"""The synthetic network loads into MariaDB as WordPress would have written it, deterministically."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils.db import Database
from tools.wpnetwork import (
    EXTERNAL_URLS, LIBRARY_URL, MAILTO, WEBDEV_URL, NetworkExistsError, NetworkSpec, generate_sql, load_network,
    site_urls,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE_TABLES = {"posts", "postmeta", "options", "comments", "commentmeta", "terms", "term_taxonomy",
               "term_relationships", "termmeta", "links"}
GLOBAL_TABLES = {"blogs", "blogmeta", "site", "sitemeta", "users", "usermeta", "signups", "registration_log"}
SERIALIZED = re.compile(r"^(?:[aOsidbC]:|N;)")

# Checks every value in one php process: does it unserialize, and does serialize() give the same bytes back?
PHP_CHECK = r'''
$out = [];
foreach (json_decode(file_get_contents("php://stdin"), true) as $value) {
    $data = @unserialize($value);
    $ok = $data !== false || $value === "b:0;";
    $out[] = [$ok, $ok && serialize($data) === $value, is_object($data) ? get_class($data) : gettype($data)];
}
echo json_encode($out);
'''


def _query(server, database, sql, args=None):
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _tables(server, database):
    return {row[0] for row in _query(server, None, "SELECT TABLE_NAME FROM information_schema.TABLES "
                                                   "WHERE TABLE_SCHEMA = %s", (database,))}


def _dump(server, database):
    with Database.from_params(server.connection()).client_options() as (option_argument, option_fd):
        result = subprocess.run([shutil.which("mariadb-dump") or "mysqldump", option_argument,
                                 "--skip-dump-date", "--skip-comments", database],
                                capture_output=True, check=True, pass_fds=(option_fd,))
    return result.stdout


def _expected_tables(spec):
    names = {spec.prefix + t for t in GLOBAL_TABLES}
    for blog_id in spec.blog_ids():
        names |= {spec.prefix + ("" if blog_id == 1 else "%d_" % blog_id) + t for t in SITE_TABLES}
    return names


def test_subdirectory_network_loads_with_wordpress_tables_urls_and_flags(servers, fresh_db):
    server = servers["source"]
    database = fresh_db("source")
    spec = NetworkSpec(site_ids=[1, 2, 4, 5, 6, 7, 8], posts_per_site=3)
    summary = load_network(server.connection(), database, spec)

    assert _tables(server, database) == _expected_tables(spec)
    assert [s["blog_id"] for s in summary["sites"]] == [1, 2, 4, 5, 6, 7, 8]
    assert summary["sites"][1]["tables"] == ["wp_2_" + t for t in ("termmeta", "terms", "term_taxonomy",
                                                                   "term_relationships", "commentmeta", "comments",
                                                                   "links", "options", "postmeta", "posts")]
    collations = _query(server, None, "SELECT DISTINCT TABLE_COLLATION, ENGINE FROM information_schema.TABLES "
                                      "WHERE TABLE_SCHEMA = %s", (database,))
    assert collations == (("utf8mb4_unicode_520_ci", "InnoDB"),)
    user_columns = [row[0] for row in _query(server, database, "SHOW COLUMNS FROM wp_users")]
    assert user_columns[-2:] == ["spam", "deleted"]
    assert _query(server, database, "SELECT id, domain, path FROM wp_site") == ((1, "dev.example.edu", "/"),)

    urls = site_urls(spec)
    blogs = _query(server, database, "SELECT blog_id, domain, path, public, archived, mature, spam, deleted "
                                     "FROM wp_blogs ORDER BY blog_id")
    for blog_id, domain, path, *_flags in blogs:
        assert urls[blog_id] == "https://" + domain + path.rstrip("/")
        table_prefix = "wp_" if blog_id == 1 else "wp_%d_" % blog_id
        options = dict(_query(server, database, "SELECT option_name, option_value FROM %soptions WHERE option_name "
                                                "IN ('siteurl', 'home')" % table_prefix))
        assert options == {"siteurl": urls[blog_id], "home": urls[blog_id]}
    assert [row[0] for row in blogs if row[3] == 0] == [4]
    assert [[row[0] for row in blogs if row[column]] for column in range(4, 8)] == [[5], [6], [7], [8]]
    assert _query(server, database, "SELECT option_value FROM wp_4_options WHERE option_name = 'blog_public'") == (("0",),)
    assert _query(server, database, "SELECT meta_value FROM wp_sitemeta WHERE meta_key = 'subdomain_install'") == (("0",),)
    assert len(_query(server, database, "SELECT blog_id FROM wp_blogmeta WHERE meta_key = 'db_version'")) == 7


def test_subdomain_network_with_another_prefix_and_gaps_in_the_ids(servers, fresh_db):
    server = servers["source"]
    database = fresh_db("source")
    spec = NetworkSpec(subdomain=True, prefix="wpx9_", site_ids=[1, 2, 3, 20, 21], posts_per_site=4)
    load_network(server.connection(), database, spec)

    tables = _tables(server, database)
    assert tables == _expected_tables(spec)
    assert len([t for t in tables if t.startswith("wpx9_2_")]) == 10
    assert len([t for t in tables if t.startswith("wpx9_20_")]) == 10
    assert _query(server, database, "SELECT blog_id, domain, path FROM wpx9_blogs ORDER BY blog_id") == (
        (1, "dev.example.edu", "/"), (2, "news.dev.example.edu", "/"), (3, "admissions.dev.example.edu", "/"),
        (20, "history.dev.example.edu", "/"), (21, "webteam.dev.example.edu", "/"))
    assert _query(server, database, "SELECT option_value FROM wpx9_20_options WHERE option_name = 'home'") == (
        ("https://history.dev.example.edu",),)
    # Prefix-dependent names: the roles option and the users' capabilities.
    assert _query(server, database, "SELECT COUNT(*) FROM wpx9_20_options WHERE option_name = 'wpx9_20_user_roles'") == ((1,),)
    assert _query(server, database, "SELECT user_id FROM wpx9_usermeta WHERE meta_key = 'wpx9_20_capabilities'") == ((20,),)
    assert _query(server, database, "SELECT meta_value FROM wpx9_sitemeta WHERE meta_key = 'subdomain_install'") == (("1",),)


def test_same_seed_gives_identical_dumps_and_another_seed_differs(servers, fresh_db):
    spec = dict(posts_per_site=5, site_ids=[1, 2, 12])
    first, second, other = fresh_db("source"), fresh_db("target"), fresh_db("source")
    load_network(servers["source"].connection(), first, NetworkSpec(**spec))
    load_network(servers["target"].connection(), second, NetworkSpec(**spec))
    load_network(servers["source"].connection(), other, NetworkSpec(seed=2, **spec))

    dump = _dump(servers["source"], first)
    assert len(dump) > 100_000 and b"INSERT INTO `wp_12_posts`" in dump
    assert dump == _dump(servers["target"], second)
    assert dump != _dump(servers["source"], other)


def test_every_serialized_value_unserializes_in_php(servers, fresh_db):
    if shutil.which("php") is None:
        pytest.skip("php-cli is not installed")
    server = servers["source"]
    database = fresh_db("source")
    spec = NetworkSpec(sites=4, posts_per_site=12)
    load_network(server.connection(), database, spec)

    values = {}
    sources = [("wp_%soptions" % ("" if blog_id == 1 else "%d_" % blog_id), "option_name", "option_value")
               for blog_id in spec.blog_ids()]
    sources += [("wp_%spostmeta" % ("" if blog_id == 1 else "%d_" % blog_id), "meta_id", "meta_value")
                for blog_id in spec.blog_ids()]
    sources += [("wp_sitemeta", "meta_key", "meta_value"), ("wp_usermeta", "umeta_id", "meta_value"),
                ("wp_4_commentmeta", "meta_id", "meta_value"), ("wp_4_termmeta", "meta_id", "meta_value"),
                ("wp_signups", "signup_id", "meta")]
    for table, key_column, value_column in sources:
        for key, value in _query(server, database, "SELECT %s, %s FROM %s" % (key_column, value_column, table)):
            if value and SERIALIZED.match(value):
                values["%s %s" % (table, key)] = value
    options_of_one_site = [name for name in values if name.startswith("wp_3_options ")]
    assert len(options_of_one_site) >= 25 and len(values) >= 200

    result = subprocess.run(["php", "-r", PHP_CHECK], input=json.dumps(list(values.values())),
                            capture_output=True, text=True, check=True)
    checked = dict(zip(values, json.loads(result.stdout)))
    assert [name for name, outcome in checked.items() if not outcome[0]] == []
    # serialize() gives back the same bytes except where PHP 8 spells things differently on purpose:
    # floats written with 17 digits by old PHP, and C: values that ArrayObject now writes as O:.
    differs = {name for name, outcome in checked.items() if not outcome[1]}
    expected = {name for name, value in values.items()
                if any(len(re.sub(r"\D", "", number)) >= 17 for number in re.findall(r"d:([-\d.]+);", value))
                or value.startswith("C:")}
    assert differs == expected and expected
    assert checked["wp_3_options wfu_display_cache"][2] == "ArrayObject"
    assert checked["wp_3_options wfu_legacy_settings"][2] == "string"
    assert checked["wp_3_options wfu_maintenance_mode"][2] == "boolean"
    assert checked["wp_sitemeta wfu_network_settings"][2] == "array"


def test_content_carries_every_kind_of_url_a_migration_meets(servers, fresh_db):
    server = servers["source"]
    database = fresh_db("source")
    spec = NetworkSpec(sites=4, posts_per_site=10)
    load_network(server.connection(), database, spec)
    urls = site_urls(spec)
    own, main, sister = urls[3], urls[1], urls[2]

    content = "\n".join(row[0] for row in _query(server, database, "SELECT post_content FROM wp_3_posts"))
    for needle in (own + "/", main + "/about/", sister + "/events/", LIBRARY_URL + "/hours/", WEBDEV_URL + "/guides/",
                   MAILTO, "//dev.example.edu/admissions/wp-content/uploads/sites/3/", "😀", "日本語", "𝄞"):
        assert needle in content, needle
    escaped = own.replace("/", "\\/")
    assert _query(server, database, "SELECT COUNT(*) FROM wp_3_postmeta WHERE meta_key = '_elementor_data' "
                                    "AND LOCATE(%s, meta_value) > 0", (escaped,))[0][0] > 0
    assert escaped in _query(server, database, "SELECT option_value FROM wp_3_options "
                                               "WHERE option_name = 'wfu_header_json'")[0][0]
    assert escaped in _query(server, database, "SELECT post_content FROM wp_3_posts "
                                               "WHERE post_type = 'wp_global_styles'")[0][0]
    guids = [row[0] for row in _query(server, database, "SELECT guid FROM wp_3_posts")]
    assert guids and all(guid.startswith(own + "/") for guid in guids)
    assert any("/wp-content/uploads/sites/3/" in guid for guid in guids)
    author_urls = {row[0] for row in _query(server, database, "SELECT comment_author_url FROM wp_3_comments")}
    assert author_urls & {own, sister, LIBRARY_URL}
    assert _query(server, database, "SELECT user_url FROM wp_users WHERE ID = 3") == ((own,),)
    menu_urls = {row[0] for row in _query(server, database, "SELECT meta_value FROM wp_3_postmeta "
                                                            "WHERE meta_key = '_menu_item_url'")}
    assert {main + "/about/", sister + "/", LIBRARY_URL + "/"} <= menu_urls
    assert all(url.startswith(("https://", "mailto:")) for url in EXTERNAL_URLS)
    # Sizes of serialized strings survive the round trip through MariaDB (4-byte UTF-8 intact).
    theme_mods = _query(server, database, "SELECT option_value FROM wp_3_options WHERE option_name LIKE 'theme_mods_%%' "
                                          "AND autoload = 'yes'")[0][0]
    assert 'O:8:"stdClass":5:{' in theme_mods and own + "/wp-content/uploads/sites/3/" in theme_mods
    attachment = _query(server, database, "SELECT meta_value FROM wp_3_postmeta "
                                          "WHERE meta_key = '_wp_attachment_metadata' LIMIT 1")[0][0]
    caption = "Café au lait ☕ 😀"
    assert 's:4:"file";' in attachment and "d:0.5;" in attachment
    assert 's:%d:"%s";' % (len(caption.encode("utf-8")), caption) in attachment
    assert _query(server, database, "SELECT COUNT(*) FROM wp_3_postmeta WHERE meta_value LIKE %s",
                  ("%d:64.950000000000003;%",))[0][0] + _query(
        server, database, "SELECT COUNT(*) FROM wp_postmeta WHERE meta_value LIKE %s", ("%d:64.950000000000003;%",))[0][0] > 0


def test_load_refuses_to_overwrite_unless_asked(servers, fresh_db):
    server = servers["source"]
    database = fresh_db("source")
    spec = NetworkSpec(sites=2, posts_per_site=3)
    load_network(server.connection(), database, spec)
    posts = _query(server, database, "SELECT COUNT(*) FROM wp_2_posts")
    with pytest.raises(NetworkExistsError, match="replace"):
        load_network(server.connection(), database, spec)
    _query(server, database, "CREATE TABLE unrelated (id int)")
    summary = load_network(server.connection(), database, spec, replace=True)
    assert summary["bytes"] > 0 and posts[0][0] > 5
    assert _query(server, database, "SELECT COUNT(*) FROM wp_2_posts") == posts
    assert "unrelated" in _tables(server, database)


def test_large_site_loads_fast_and_the_generator_memory_stays_flat(servers, fresh_db):
    server = servers["source"]
    database = fresh_db("source")
    target = 30_000_000
    spec = NetworkSpec(sites=2, posts_per_site=5, large_sites={2: target})

    started = time.monotonic()
    generated = sum(len(statement.encode("utf-8")) for statement in generate_sql(spec))
    rate = generated / 1e6 / (time.monotonic() - started)
    summary = load_network(server.connection(), database, spec)
    print("generated %.1f MB at %.0f MB/s; loaded in %.1f s" % (generated / 1e6, rate, summary["seconds"]))
    assert rate > 10
    assert target <= summary["sites"][1]["bytes"] < target * 1.05
    stored = _query(server, database, "SELECT (SELECT SUM(LENGTH(post_content)) FROM wp_2_posts) + "
                                      "(SELECT SUM(LENGTH(meta_value)) FROM wp_2_postmeta)")[0][0]
    assert stored > 25_000_000
    assert _query(server, database, "SELECT COUNT(*) FROM wp_2_posts WHERE post_type = 'revision'")[0][0] > 300

    def peak(size):
        tracemalloc.start()
        try:
            for statement in generate_sql(NetworkSpec(sites=2, posts_per_site=5, large_sites={2: size})):
                del statement
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(3_000_000), peak(target)
    assert large < small + 4_000_000, (small, large)


def test_command_line_writes_sql_and_loads_with_the_password_from_the_environment(servers, fresh_db):
    server = servers["source"]
    database = fresh_db("source", prefix="cli")
    args = [sys.executable, "-m", "tools.wpnetwork", "--sites", "3", "--posts-per-site", "3", "--seed", "5"]
    sql = subprocess.run(args + ["--sql"], cwd=ROOT, capture_output=True, check=True).stdout.decode("utf-8")
    statements = list(generate_sql(NetworkSpec(sites=3, posts_per_site=3, seed=5)))
    assert sql.split("\n", 1)[1] == "".join(statement + ";\n" for statement in statements)

    env = dict(os.environ, WFU_DB_PASSWORD=server.password)
    load = args + ["--database", database, "--host", server.host, "--port", str(server.port), "--user", server.user]
    result = subprocess.run(load, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [s["url"] for s in summary["sites"]] == list(site_urls(NetworkSpec(sites=3)).values())
    assert server.password not in result.stdout + result.stderr
    again = subprocess.run(load, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert again.returncode == 2 and "--replace" in again.stderr
    subprocess.run(load + ["--replace"], cwd=ROOT, env=env, capture_output=True, stdin=subprocess.DEVNULL, check=True)
