"""Search-replace over whole tables in a real MariaDB, checked value by value against ``replace_value``.

The reference for every row is ``search_replace.replace_value`` applied once to
the value the row held before: MariaDB's share of the work (nested REPLACE /
REGEXP_REPLACE) must give the same bytes as Python's ``plain_replace``, and no
row may be replaced twice, whatever path and batch it went through.
"""

import base64
import hashlib
import json
import random
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.wfu.multisite.plugins.module_utils.db import connect
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import (
    SERIALIZED_PREFIXES, HostPair, expand_pairs, is_serialized, plain_replace, replace_value)
from ansible_collections.wfu.multisite.plugins.module_utils.table_replace import replace_in_tables

SERVER = "migration"

PAIRS = [
    ("https://dev.example.edu", "https://uat.example.edu"),
    HostPair("dev.example.edu", "uat.example.edu"),
    HostPair("dev2.example.edu", "u\\1$1\\\\.example.edu"),     # backslashes and $ in a regex replacement
    HostPair("ünï.example.edu", "uni.example.edu"),              # starts with a non-ASCII character
    ("café-dev", "café-uat"),                                    # JSON forms caf\u00e9-dev
    ("100%_off\\", "50%_on\\\\"),                                # LIKE wildcards and a backslash
    ("zq", "a"),                                                 # can turn a plain value into a serialized-looking one
    ("s:9:", "t:"),                                              # and a serialized-looking one into a plain one
    ("aa", "a"),                                                 # overlapping matches in "aaa"
    ("foo", "bar"), ("barbar", "X"),                             # a replacement makes a later pair match
    ("b", "bb"),                                                 # the replacement holds the search string
    ("same", "same"),                                            # changes nothing
    ('say "dev"', 'say "uat" \u2713'),                           # JSON forms say \"dev\", the replacement \u2713
    ("/wp-dev/", "https://cdn.example.edu/"),                    # \/wp-dev\/ replaced before /wp-dev/
]


def php_serialize(value):
    """PHP's serialize() for str, int, bool, None, list and dict (enough to build test data)."""
    if value is None:
        return "N;"
    if isinstance(value, bool):
        return "b:%d;" % value
    if isinstance(value, int):
        return "i:%d;" % value
    if isinstance(value, str):
        return 's:%d:"%s";' % (len(value.encode("utf-8")), value)
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return "a:%d:{%s}" % (len(value), "".join(php_serialize(k) + php_serialize(v) for k, v in items))


SERIALIZED = [
    php_serialize({"siteurl": "https://dev.example.edu/news", "emoji": "😀 dev.example.edu 😀", "n": 3}),
    php_serialize(["café-dev", "https:\\/\\/dev.example.edu\\/x", "100%_off\\", None, True]),
    php_serialize({"dev.example.edu": 1, "key only": "nothing here"}),          # search string only in a key
    php_serialize({"nested": php_serialize({"url": "https://dev.example.edu/"}), "aaa": "aaaa"}),
    php_serialize({"json": json.dumps({"url": "https://dev.example.edu/x/y"})}),
    'O:8:"stdClass":2:{s:4:"home";s:23:"https://dev.example.edu";s:4:"list";a:1:{i:0;s:3:"foo";}}',
    php_serialize("s:9:" + "x" * 5),
    php_serialize("zqzq"),
    'a:1:{s:3:"url";s:99:"https://dev.example.edu";}',                           # wrong length: plain text
    "s:9:corrupt aaaa",                                                           # plain after ("s:9:", "t:")
    "a:not serialized https://dev.example.edu",
    'a:1:{i:0;s:15:"dev.example.edu";}   \n',                                     # trailing whitespace is kept
    "N;",
    "b:1; dev.example.edu",
]

PLAIN = [
    "", "aaa", "aaaa", "baab", "foofoo", "foobar", "barfoo", "same same",
    "https://dev.example.edu/path?x=1", "http://dev.example.edu", "//dev.example.edu/x",
    "dev.example.edu", "webdev.example.edu", "news.dev.example.edu", "dev.example.education",
    "dev.example.edu-old", "dev.example.edu.", ".dev.example.edu", "-dev.example.edu", "@dev.example.edu",
    "😀dev.example.edu😀", "édev.example.edué", "DEV.EXAMPLE.EDU", "Dev.example.edu", "dev.example.EDU",
    "DEV.EXAMPLE.EDU, Dev.Example.Edu and dev.example.edu", "CAFÉ-DEV café-dev Café-Dev", "AA Aa aA aa",
    "https:\\/\\/dev.example.edu\\/wp-content\\/uploads", "caf\\u00e9-dev", "café-dev", "CAFÉ-DEV", "cafe-dev",
    "100%_off\\ and 100%_off\\", "100%Xoff\\", "100%_off", "100X_off\\", "dev2.example.edu", "xdev2.example.edu",
    "ünï.example.edu", "xünï.example.edu", "😀ünï.example.edu-", "a\\b\\\\c dev.example.edu\\",
    "'quoted' \"double\" `back` dev.example.edu", "\x00nul dev.example.edu\x00", "line\nbreak\r\n\tdev.example.edu",
    "trailing spaces https://dev.example.edu   ", "   leading", "zq:aaaa dev.example.edu", "zqzq", " a:1:{leading}",
    "a", "s", "A:1:{upper-case prefix dev.example.edu}", "S:3:\"dev\";", "n; dev.example.edu",
    '{"url":"https:\\/\\/dev.example.edu\\/a","host":"dev.example.edu"}',
    '{"q":"say \\"dev\\"","src":"\\/wp-dev\\/a.jpg"} say "dev" /wp-dev/b.jpg',
    "<a href=\"https://dev.example.edu/x\">dev.example.edu</a> " * 40,
    "nothing to see here",
]


def _connect(servers, database):
    return servers[SERVER].connect(database)


def _rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _run(servers, database, tables, pairs=None, **kwargs):
    return replace_in_tables(servers[SERVER].connection(), database, tables, PAIRS if pairs is None else pairs,
                             **kwargs)


def _checksum(conn, table):
    return _rows(conn, "CHECKSUM TABLE `%s`" % table)[0][1]


def _column_bytes(conn, table, columns):
    select = ", ".join("CAST(`%s` AS BINARY)" % c for c in columns)
    return {row[0]: row[1:] for row in _rows(conn, "SELECT id, %s FROM `%s`" % (select, table))}


def _expected_bytes(value, pairs):
    return None if value is None else replace_value(value, pairs).encode("utf-8")


def _changed(values, pairs):
    return sum(1 for v in values if v is not None and replace_value(v, pairs) != v)


def _php_valid(values):
    """For each value, whether PHP's unserialize() accepts it (one php process for all)."""
    script = ("$out = []; foreach (json_decode(stream_get_contents(STDIN)) as $v) { $s = base64_decode($v); "
              "$out[] = $s === 'b:0;' || @unserialize($s, ['allowed_classes' => false]) !== false; } "
              "echo json_encode($out);")
    data = json.dumps([base64.b64encode(v.encode("utf-8")).decode("ascii") for v in values])
    done = subprocess.run(["php", "-r", script], input=data, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _create_corpus_table(conn, table):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE `%s` (id INT PRIMARY KEY, "
                    "v_ci LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci, "
                    "v_bin TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, "
                    "v_general VARCHAR(3000) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, "
                    "guid VARCHAR(3000) NOT NULL DEFAULT '')" % table)


def _fill(conn, table, values):
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO `%s` (id, v_ci, v_bin, v_general, guid) VALUES (%%s, %%s, %%s, %%s, %%s)" % table,
                        [(i, v, v, v, v) for i, v in enumerate(values)])


CORPUS_COLUMNS = ("v_ci", "v_bin", "v_general", "guid")


def test_every_value_ends_up_as_replace_value_makes_it(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    values = PLAIN + SERIALIZED
    _create_corpus_table(conn, "corpus")
    _fill(conn, "corpus", values)

    result = _run(servers, db, ["corpus"], batch_rows=7)

    after = _column_bytes(conn, "corpus", CORPUS_COLUMNS)
    for i, value in enumerate(values):
        expected = _expected_bytes(value, PAIRS)
        assert after[i] == (expected,) * 4, "row %d: %r" % (i, value)
        if value[:2] not in SERIALIZED_PREFIXES:
            assert plain_replace(value, PAIRS).encode("utf-8") == expected
    report = result["tables"]["corpus"]
    changed = _changed(values, PAIRS)
    assert report["columns"] == {column: changed for column in CORPUS_COLUMNS}
    assert result["rows_changed"] == report["rows_changed"] == 4 * changed
    python_changed = sum(1 for v in values if v[:2] in SERIALIZED_PREFIXES and replace_value(v, PAIRS) != v)
    assert report["method_counts"] == {"python": 4 * python_changed, "server": 4 * (changed - python_changed)}
    assert python_changed and changed - python_changed
    assert report["key"] == ["id"] and report["no_primary_key"] is False
    # Rows that held no search string (in any form) were not even looked at.
    searches = [search for search, replace in expand_pairs(PAIRS) if search != replace]
    assert report["rows_matched"] == 4 * sum(1 for v in values if any(s in v for s in searches))
    assert report["rows_matched"] < 4 * len(values)


def test_serialized_values_stay_valid_for_php(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    _create_corpus_table(conn, "corpus")
    _fill(conn, "corpus", SERIALIZED)

    _run(servers, db, ["corpus"])

    after = [row[0] for row in _rows(conn, "SELECT CAST(v_ci AS BINARY) FROM corpus ORDER BY id")]
    before_valid = _php_valid(SERIALIZED)
    after_valid = _php_valid([value.decode("utf-8") for value in after])
    # PHP also accepts trailing garbage ("b:1; text"), which is plain text to us and may change like text.
    complete = [valid and is_serialized(value) for value, valid in zip(SERIALIZED, before_valid)]
    assert sum(complete) >= 8
    for value, checked, valid_after, new in zip(SERIALIZED, complete, after_valid, after):
        if checked:
            assert valid_after, "no longer unserializable: %r" % new


FRAGMENTS = ["dev.example.edu", "https://", "https:\\/\\/", "uat", "example", ".", "-", "/", "\\", "%", "_", "a",
             "aa", "b", "é", "😀", "ü", "'", '"', "\\u00e9", "café-dev", "100%_off\\", "DEV", "x", " ", "\n", "\x00",
             "s:", "a:", "{", "}", ";", ":", "0", "1", "$1", "\\1"]
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.characters(codec="utf-8")), max_size=12).map("".join)
random_pair = st.tuples(st.booleans(), fragment_text.filter(bool), fragment_text).map(
    lambda p: HostPair(p[1], p[2]) if p[0] else (p[1], p[2]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(fragment_text, min_size=20, max_size=60),
       pairs=st.lists(random_pair, min_size=1, max_size=4))
def test_random_texts_and_pairs_match_python(servers, fresh_db, texts, pairs):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    _create_corpus_table(conn, "corpus")
    values = texts + [p[0] for p in pairs] + [p[0] + p[0] for p in pairs]
    _fill(conn, "corpus", values)

    result = _run(servers, db, ["corpus"], pairs=pairs, batch_rows=16)

    after = _column_bytes(conn, "corpus", ("v_ci", "v_bin"))
    for i, value in enumerate(values):
        assert after[i] == (_expected_bytes(value, pairs),) * 2, "row %d: %r with %r" % (i, value, pairs)
    assert result["tables"]["corpus"]["columns"]["v_bin"] == _changed(values, pairs)


def test_composite_key_and_small_batches(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    values = PLAIN + SERIALIZED
    rows = [(blog, "key-%03d" % i, value) for blog in (1, 2, 3) for i, value in enumerate(values)]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE meta (blog_id INT NOT NULL, name VARCHAR(64) NOT NULL, v LONGTEXT, "
                    "PRIMARY KEY (blog_id, name))")
        cur.executemany("INSERT INTO meta VALUES (%s, %s, %s)", rows)
        # A unique key of NOT NULL columns serves as well when there is no primary key.
        cur.execute("CREATE TABLE options (option_id INT NULL, option_name VARCHAR(64) NOT NULL, v LONGTEXT, "
                    "UNIQUE KEY (option_id), UNIQUE KEY name (option_name))")
        cur.executemany("INSERT INTO options VALUES (NULL, %s, %s)", [(r[1] + str(r[0]), r[2]) for r in rows])

    result = _run(servers, db, ["meta", "options"], batch_rows=5)

    meta = {(b, n): v for b, n, v in _rows(conn, "SELECT blog_id, name, CAST(v AS BINARY) FROM meta")}
    options = dict(_rows(conn, "SELECT option_name, CAST(v AS BINARY) FROM options"))
    for blog, name, value in rows:
        assert meta[(blog, name)] == options[name + str(blog)] == _expected_bytes(value, PAIRS)
    assert result["tables"]["meta"]["key"] == ["blog_id", "name"]
    assert result["tables"]["options"]["key"] == ["option_name"]
    assert result["tables"]["meta"]["columns"]["v"] == 3 * _changed(values, PAIRS)


def test_tables_without_a_key_and_duplicate_rows(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    pairs = [("dev.x", "dev.x.y"), HostPair("dev.example.edu", "uat.example.edu")]
    first = php_serialize(["dev.x"])
    second = replace_value(first, pairs)          # holds dev.x again: must be replaced once, not twice
    values = [first, second, first, second, "X dev.example.edu", "x dev.example.edu", "x dev.example.edu ",
              "x dev.example.edu", "webdev.example.edu", php_serialize({"dev.example.edu": "key only"}),
              "dev.x", "dev.x.y", None, "plain"] * 3
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE log (tag INT, v LONGTEXT COLLATE utf8mb4_unicode_ci, w VARCHAR(200), "
                    "KEY (tag), UNIQUE KEY (w))")
        cur.executemany("INSERT INTO log (tag, v) VALUES (%s, %s)", list(enumerate(values)))
        # The only key holds the column being replaced: keyset pagination would move rows.
        cur.execute("CREATE TABLE redirects (url VARCHAR(191) PRIMARY KEY, target TEXT)")
        cur.executemany("INSERT INTO redirects VALUES (%s, %s)", [
            ("https://dev.example.edu/%d" % i, "https://dev.example.edu/to/%d" % i) for i in range(30)])
    before = _checksum(conn, "log")

    dry = _run(servers, db, ["log", "redirects"], pairs=pairs, dry_run=True)
    assert _checksum(conn, "log") == before
    result = _run(servers, db, ["log", "redirects"], pairs=pairs, batch_rows=4)

    after = dict(_rows(conn, "SELECT tag, CAST(v AS BINARY) FROM log"))
    for tag, value in enumerate(values):
        assert after[tag] == _expected_bytes(value, pairs), "row %d: %r" % (tag, value)
    log = result["tables"]["log"]
    assert log["no_primary_key"] is True and log["key"] is None
    assert log["columns"] == {"v": _changed(values, pairs), "w": 0} and log["columns"]["v"] == 3 * 10
    assert log["method_counts"] == {"server": 0, "python": 3 * 10}
    assert any("log has no primary key" in w for w in result["warnings"])
    assert dry["tables"]["log"]["columns"] == log["columns"]
    assert sorted(r[0] for r in _rows(conn, "SELECT url FROM redirects")) == sorted(
        "https://uat.example.edu/%d" % i for i in range(30))
    assert result["tables"]["redirects"]["columns"] == {"url": 30, "target": 30}
    assert dry["tables"]["redirects"]["columns"] == {"url": 30, "target": 30}
    assert any("redirects.url is part of every usable key" in w for w in result["warnings"])


def test_a_float_key_is_not_trusted_to_find_rows_again(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    values = ["https://dev.example.edu/%d" % i for i in range(10)] + [php_serialize(["dev.example.edu"])]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE measures (k FLOAT PRIMARY KEY, v TEXT)")
        cur.executemany("INSERT INTO measures VALUES (%s, %s)", [(i / 10, v) for i, v in enumerate(values)])

    result = _run(servers, db, ["measures"], batch_rows=3)

    assert result["tables"]["measures"]["no_primary_key"] is True
    assert result["tables"]["measures"]["columns"]["v"] == len(values)
    assert sorted(r[0] for r in _rows(conn, "SELECT CAST(v AS BINARY) FROM measures")) == sorted(
        _expected_bytes(v, PAIRS) for v in values)


def test_skip_columns_guid_and_non_text_columns(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    url = "https://dev.example.edu/?p=1"
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE wp_posts (ID BIGINT UNSIGNED PRIMARY KEY, post_title TEXT, post_excerpt TEXT, "
                    "guid VARCHAR(255), post_content LONGTEXT, raw BLOB, hash VARBINARY(64), upper_title TEXT AS "
                    "(UPPER(post_content)) VIRTUAL)")
        cur.execute("CREATE TABLE wp_postmeta (meta_id INT PRIMARY KEY, post_excerpt TEXT)")
        cur.execute("INSERT INTO wp_posts (ID, post_title, post_excerpt, guid, post_content, raw, hash) "
                    "VALUES (1, %s, %s, %s, %s, %s, %s)", (url,) * 6)
        cur.execute("INSERT INTO wp_postmeta VALUES (1, %s)", (url,))

    result = _run(servers, db, ["wp_posts", "wp_postmeta"], skip_columns=["post_title", "wp_posts.post_excerpt"])

    new = "https://uat.example.edu/?p=1"
    assert _rows(conn, "SELECT post_title, post_excerpt, guid, post_content, CAST(raw AS CHAR), "
                       "CAST(hash AS CHAR), upper_title FROM wp_posts") == ((url, url, new, new, url, url, new.upper()),)
    assert _rows(conn, "SELECT post_excerpt FROM wp_postmeta") == ((new,),)
    posts = result["tables"]["wp_posts"]
    assert posts["columns"] == {"guid": 1, "post_content": 1}
    assert posts["skipped_columns"] == {"post_title": "skip_columns", "post_excerpt": "skip_columns",
                                        "upper_title": "generated column"}
    assert result["tables"]["wp_postmeta"]["columns"] == {"post_excerpt": 1}


def test_dry_run_writes_nothing_and_predicts_the_counts(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    values = PLAIN + SERIALIZED
    _create_corpus_table(conn, "corpus")
    _fill(conn, "corpus", values)
    before = _checksum(conn, "corpus")

    dry = _run(servers, db, ["corpus"], dry_run=True, batch_rows=3)
    assert _checksum(conn, "corpus") == before
    real = _run(servers, db, ["corpus"], batch_rows=3)

    assert _checksum(conn, "corpus") != before
    assert dry["dry_run"] is True and real["dry_run"] is False
    for key in ("rows_changed", "rows_matched", "bytes_matched", "method_counts"):
        assert dry[key] == real[key]
    assert dry["tables"]["corpus"]["columns"] == real["tables"]["corpus"]["columns"]
    assert real["rows_changed"] == 4 * _changed(values, PAIRS)


def test_only_changed_rows_are_written(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    values = PLAIN + SERIALIZED
    stamp = "2001-01-01 00:00:00.000000"
    with conn.cursor() as cur:
        for table, key in (("keyed", "PRIMARY KEY"), ("unkeyed", "KEY")):
            cur.execute("CREATE TABLE %s (id INT NOT NULL, v LONGTEXT, touched TIMESTAMP(6) NOT NULL "
                        "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), %s (id))" % (table, key))
            cur.executemany("INSERT INTO %s (id, v, touched) VALUES (%%s, %%s, %%s)" % table,
                            [(i, v, stamp) for i, v in enumerate(values)])

    result = _run(servers, db, ["keyed", "unkeyed"], batch_rows=4)

    must_change = {i for i, v in enumerate(values) if replace_value(v, PAIRS) != v}
    held_a_search_string = {i for i, v in enumerate(values) if "dev.example.edu" in v} - must_change
    assert held_a_search_string, "the data must hold rows that match but do not change"
    for table in ("keyed", "unkeyed"):
        touched = {i for i, t in _rows(conn, "SELECT id, touched FROM %s" % table) if str(t) != stamp[:19]}
        assert touched == must_change, table
        assert result["tables"][table]["columns"]["v"] == len(must_change)


def test_twenty_thousand_rows_in_small_batches(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    generator = random.Random(20)
    kinds = [
        lambda i: "post %d at https://dev.example.edu/%d and dev.example.edu" % (i, i),
        lambda i: php_serialize({"id": i, "url": "https://dev.example.edu/%d" % i, "e": "😀" * (i % 3)}),
        lambda i: "nothing %d" % i,
        lambda i: "webdev.example.edu/%d" % i,
    ]
    values = [generator.choice(kinds)(i) for i in range(20000)]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, v TEXT)")
        cur.executemany("INSERT INTO big VALUES (%s, %s)", list(enumerate(values)))

    result = _run(servers, db, ["big"], batch_rows=500)

    after = dict(_rows(conn, "SELECT id, CAST(v AS BINARY) FROM big"))
    assert all(after[i] == _expected_bytes(v, PAIRS) for i, v in enumerate(values))
    report = result["tables"]["big"]
    assert report["columns"]["v"] == _changed(values, PAIRS)
    assert report["method_counts"]["python"] == sum(1 for v in values if v.startswith("a:"))
    assert report["rows_matched"] == sum(1 for v in values if "dev.example.edu" in v)


def test_latin1_column_left_alone_without_matches_and_refused_with_them(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE old_plugin (id INT PRIMARY KEY, clean TEXT CHARACTER SET latin1, "
                    "dirty TEXT CHARACTER SET latin1, modern TEXT CHARACTER SET utf8mb4)")
        cur.execute("INSERT INTO old_plugin VALUES (1, 'café', 'plain', 'https://dev.example.edu')")

    result = _run(servers, db, ["old_plugin"])
    assert result["tables"]["old_plugin"]["columns"] == {"clean": 0, "dirty": 0, "modern": 1}
    assert result["tables"]["old_plugin"]["skipped_columns"]["clean"].startswith("not UTF-8")
    assert any("old_plugin.clean" in w for w in result["warnings"])

    with conn.cursor() as cur:
        cur.execute("UPDATE old_plugin SET dirty = 'see https://dev.example.edu/x', modern = 'dev.example.edu'")
    with pytest.raises(MigrationError) as failure:
        _run(servers, db, ["old_plugin"])
    assert failure.value.table == "old_plugin" and "column dirty" in str(failure.value)
    assert failure.value.failure_class == "site"


def test_a_failing_column_is_named_and_its_batch_rolled_back(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE narrow (id INT PRIMARY KEY, v TEXT CHARACTER SET utf8mb3)")
        cur.executemany("INSERT INTO narrow VALUES (%s, %s)", [(1, "dev.example.edu"), (2, "plain dev.example.edu")])

    with pytest.raises(MigrationError) as failure:
        _run(servers, db, ["narrow"], pairs=[HostPair("dev.example.edu", "😀.example.edu")])

    assert failure.value.table == "narrow" and failure.value.phase == "replace"
    assert "column v" in str(failure.value) and failure.value.error_code == 1366
    assert _rows(conn, "SELECT v FROM narrow ORDER BY id") == (("dev.example.edu",), ("plain dev.example.edu",))


def test_a_result_beyond_max_allowed_packet_fails_instead_of_becoming_null(servers, fresh_db):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    value = "a" + "b" * 700000
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE wp_options (option_id INT PRIMARY KEY, option_value LONGTEXT NULL)")
        cur.execute("INSERT INTO wp_options VALUES (1, %s)", (value,))
        cur.execute("SELECT @@GLOBAL.max_allowed_packet, @@GLOBAL.sql_mode")
        packet, sql_mode = cur.fetchone()
        # A permissive server: without strict mode, REPLACE() would quietly write NULL.
        cur.execute("SET GLOBAL max_allowed_packet = 1048576, GLOBAL sql_mode = ''")
    try:
        with pytest.raises(MigrationError) as failure:
            _run(servers, db, ["wp_options"], pairs=[("a", "c" * 400000)])
    finally:
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL max_allowed_packet = %s, GLOBAL sql_mode = %s", (packet, sql_mode))
    assert "column option_value" in str(failure.value) and "max_allowed_packet" in str(failure.value)
    assert _rows(conn, "SELECT option_value = %s FROM wp_options", (value,)) == ((1,),)


def test_bad_arguments_are_refused(servers, fresh_db):
    db = fresh_db(SERVER)
    params = servers[SERVER].connection()
    with pytest.raises(ValueError):
        replace_in_tables(params, db, ["wp_posts; DROP TABLE x"], PAIRS)
    with pytest.raises(ValueError):
        replace_in_tables(params, db, [], [("", "x")])
    with pytest.raises(ValueError):
        replace_in_tables(params, db, [], PAIRS, batch_rows=0)
    with pytest.raises(MigrationError) as failure:
        replace_in_tables(params, db, ["missing"], PAIRS)
    assert failure.value.table == "missing"


def _speed_data(rows, generator):
    words = ["lorem", "ipsum", "dolor", "héllo", "😀", "<p>", "</p>", "https://dev.example.edu/wp-content/x.jpg",
             "dev.example.edu", "wordpress", "the", "and", "of"]
    return [" ".join(generator.choices(words, k=generator.randint(200, 900))) for row in range(rows)]


def test_speed_of_the_two_paths(servers, fresh_db, capsys):
    db = fresh_db(SERVER)
    conn = _connect(servers, db)
    generator = random.Random(7)
    posts = _speed_data(4000, generator)
    meta = [php_serialize({"blocks": [{"html": text[:1500], "url": "https://dev.example.edu/%d" % i}
                                      for i in range(3)], "id": n}) for n, text in enumerate(posts[:3000])]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE wp_posts (ID INT PRIMARY KEY, post_content LONGTEXT)")
        cur.execute("CREATE TABLE wp_postmeta (meta_id INT PRIMARY KEY, meta_value LONGTEXT)")
        cur.executemany("INSERT INTO wp_posts VALUES (%s, %s)", list(enumerate(posts)))
        cur.executemany("INSERT INTO wp_postmeta VALUES (%s, %s)", list(enumerate(meta)))
    pairs = [("https://dev.example.edu", "https://uat.example.edu"), HostPair("dev.example.edu", "uat.example.edu")]

    started = time.monotonic()
    result = _run(servers, db, ["wp_posts", "wp_postmeta"], pairs=pairs)
    seconds = time.monotonic() - started

    lines = []
    for table, method, rows in (("wp_posts", "server", len(posts)), ("wp_postmeta", "python", len(meta))):
        report = result["tables"][table]
        assert report["method_counts"][method] == report["rows_changed"] == rows
        megabytes = report["bytes_matched"] / 1e6
        lines.append("%s path: %.1f MB in %.2f s = %.1f MB/s" % (
            method, megabytes, report["seconds"], megabytes / max(report["seconds"], 1e-6)))
    for table, key, column, before in (("wp_posts", "ID", "post_content", posts),
                                       ("wp_postmeta", "meta_id", "meta_value", meta)):
        after = _rows(conn, "SELECT CAST(%s AS BINARY) FROM %s ORDER BY %s" % (column, table, key))
        assert hashlib.sha256(b"".join(row[0] for row in after)).digest() == hashlib.sha256(
            b"".join(replace_value(v, pairs).encode("utf-8") for v in before)).digest()
    with capsys.disabled():
        print("\nsearch-replace speed (%.1f s in all): %s" % (seconds, "; ".join(lines)))


def test_pymysql_reports_changed_rows_not_found_rows(servers, fresh_db):
    """The counts rely on PyMySQL not asking for CLIENT_FOUND_ROWS: an UPDATE to the same value counts 0."""
    db = fresh_db(SERVER)
    conn = connect(servers[SERVER].connection(), database=db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO t VALUES (1, 'same')")
        assert cur.execute("UPDATE t SET v = REPLACE(v, 'same', 'same')") == 0


# -- following a load: the rows are replaced while they arrive, each once -------------------------------------------

def test_a_replace_that_follows_a_load_replaces_every_row_once(servers, fresh_db):
    """``arriving``: a loader adds rows in key order, chunk by chunk, and adds the next chunk only once the
    replace has reached the end of the previous one (so the replace must work behind the load, or the loader
    gives up); every value ends up exactly as ``replace_value`` makes it from the value loaded."""
    import threading

    db = fresh_db(SERVER)
    chunks = [[v + " #%d" % k if v[:2] not in SERIALIZED_PREFIXES else v for v in PLAIN + SERIALIZED]
              + ["https://dev.example.edu/chunk-%d" % k] for k in range(4)]
    values = [v for chunk in chunks for v in chunk]
    arriving, stalled = threading.Event(), []

    def load():
        conn = _connect(servers, db)  # autocommit: each chunk is visible once inserted
        try:
            time.sleep(0.2)  # the replace starts before the table exists
            _create_corpus_table(conn, "corpus")
            start = 0
            for k, chunk in enumerate(chunks):
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO corpus (id, v_ci, v_bin, v_general, guid) VALUES (%s, %s, %s, %s, %s)",
                                    [(start + i, v, v, v, v) for i, v in enumerate(chunk)])
                start += len(chunk)
                if k == len(chunks) - 1:
                    break
                marker = _expected_bytes(chunk[-1], PAIRS)
                for _poll in range(1200):
                    if _column_bytes(conn, "corpus", ["v_ci"])[start - 1] == (marker,):
                        break
                    time.sleep(0.05)
                else:
                    stalled.append(k)
                    break
        finally:
            conn.close()
            arriving.set()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        result = _run(servers, db, ["corpus"], batch_rows=7, arriving=arriving)
    finally:
        loader.join()
    assert stalled == []
    conn = _connect(servers, db)
    after = _column_bytes(conn, "corpus", CORPUS_COLUMNS)
    assert len(after) == len(values)
    for i, value in enumerate(values):
        assert after[i] == (_expected_bytes(value, PAIRS),) * 4, "row %d: %r" % (i, value)
    changed = _changed(values, PAIRS)
    assert result["tables"]["corpus"]["columns"] == {column: changed for column in CORPUS_COLUMNS}
