"""The network generator without a server: PHP serialization, the spec, determinism, streaming."""

import hashlib
import json
import random
import re
import shutil
import subprocess

import pytest

from tools.wpnetwork import (
    COLUMNS, GLOBAL_SCHEMA, SITE_SCHEMA, STATEMENT_SIZE, NetworkSpec, PhpCustom, PhpFloat, PhpObject, generate_sql,
    network_sites, parse_size, php_float_repr, php_serialize, site_table_names, site_urls, sql_escape,
)

needs_php = pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")

WORDPRESS_SITE_TABLES = {"posts", "postmeta", "options", "comments", "commentmeta", "terms", "term_taxonomy",
                         "term_relationships", "termmeta", "links"}
WORDPRESS_GLOBAL_TABLES = {"blogs", "blogmeta", "site", "sitemeta", "users", "usermeta", "signups", "registration_log"}


def _php(code, data):
    result = subprocess.run(["php", "-r", code], input=json.dumps(data), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _digest(spec):
    digest = hashlib.sha256()
    for statement in generate_sql(spec):
        digest.update(statement.encode("utf-8"))
    return digest.hexdigest()


# -- PHP serialization ---------------------------------------------------------------------------------------------

def test_serialized_string_lengths_count_utf8_bytes():
    assert php_serialize("é") == 's:2:"é";'
    assert php_serialize("日本語") == 's:9:"日本語";'
    assert php_serialize("😀𝄞") == 's:8:"😀𝄞";'
    assert php_serialize({"k": ["a", 1, True, None]}) == 'a:1:{s:1:"k";a:4:{i:0;s:1:"a";i:1;i:1;i:2;b:1;i:3;N;}}'


def test_objects_custom_values_and_literal_floats_are_spelled_like_php():
    assert php_serialize(PhpObject("stdClass", {"url": "https://x.example/é"})) == \
        'O:8:"stdClass":1:{s:3:"url";s:20:"https://x.example/é";}'
    assert php_serialize(PhpCustom("ArrayObject", "x:i:0;a:0:{};m:a:0:{}")) == \
        'C:11:"ArrayObject":21:{x:i:0;a:0:{};m:a:0:{}}'
    assert php_serialize(PhpFloat("64.950000000000003")) == "d:64.950000000000003;"
    assert php_serialize(False) == "b:0;"
    with pytest.raises(TypeError):
        php_serialize({1.5: "float keys do not exist in PHP"})


@needs_php
def test_serializer_matches_php_serialize():
    data = {"title": "Café 😀 日本語 𝄞", "count": -42, "ratio": 0.1, "whole": 3.0, "on": True, "off": False,
            "none": None, "list": ["a", "é", [1, 2, {"deep": "https://dev.example.edu/x/"}]], "empty": [],
            "quote": 'He said "hi"; then left\\', "big": 2 ** 40}
    php = _php('echo json_encode(serialize(json_decode(file_get_contents("php://stdin"), true)));', data)
    assert php_serialize(data) == php


@needs_php
def test_float_spelling_matches_php_for_many_magnitudes():
    rng = random.Random(7)
    floats = [0.0, -0.0, 1.0, 0.5, 1e15, 1e16, 1e17, 1.5e17, 1e-4, 1e-5, 123.456, 1 / 3, 5e-324, 1.7976931348623157e308]
    floats += [rng.uniform(-1, 1) * 10 ** exponent for exponent in (rng.randint(-30, 30) for _count in range(1500))]
    php = _php('$out = []; foreach (json_decode(file_get_contents("php://stdin")) as $f) { $out[] = serialize((float) $f); }'
               ' echo json_encode($out);', floats)
    mismatches = [(number, spelled) for number, spelled in zip(floats, php) if php_serialize(number) != spelled]
    assert mismatches == []
    assert php_float_repr(float("inf")) == "INF"


def test_sql_escape_handles_quotes_backslashes_and_control_characters():
    assert sql_escape("it's a \\ path\n\r\0\x1a") == "it\\'s a \\\\ path\\n\\r\\0\\Z"


# -- the spec -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"prefix": "wp-"}, "prefix"),
    ({"prefix": ""}, "prefix"),
    ({"url": "ftp://dev.example.edu"}, "url"),
    ({"url": "https://dev.example.edu:8443"}, "port"),
    ({"sites": 3, "large_sites": {7: 1000}}, "large_sites"),
    ({"site_ids": [1, 0]}, "positive"),
    ({"prefix": "p" * 45, "sites": 3}, "longer than 64"),
    ({"posts_per_site": 0}, "posts_per_site"),
])
def test_invalid_specs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NetworkSpec(**kwargs)


def test_explicit_site_ids_always_include_the_main_site():
    spec = NetworkSpec(site_ids=[21, 3, 20, 2, 3], large_sites={"20": "5000"})
    assert spec.blog_ids() == [1, 2, 3, 20, 21]
    assert spec.large_sites == {20: 5000}


def test_site_urls_for_subdirectory_subdomain_and_split_host_networks():
    assert site_urls(NetworkSpec(sites=3)) == {
        1: "https://dev.example.edu", 2: "https://dev.example.edu/news", 3: "https://dev.example.edu/admissions"}
    assert site_urls(NetworkSpec(sites=3, subdomain=True, url="http://uat.example.edu")) == {
        1: "http://uat.example.edu", 2: "http://news.uat.example.edu", 3: "http://admissions.uat.example.edu"}
    assert site_urls(NetworkSpec(sites=2, subdomain=True, url="https://www.wfu.edu", subdomain_base="wfu.edu")) == {
        1: "https://www.wfu.edu", 2: "https://news.wfu.edu"}
    sites = network_sites(NetworkSpec(sites=2, url="https://dev.example.edu/network"))
    assert [(s.domain, s.path, s.url) for s in sites] == [
        ("dev.example.edu", "/network/", "https://dev.example.edu/network"),
        ("dev.example.edu", "/network/news/", "https://dev.example.edu/network/news")]


def test_slugs_stay_unique_past_the_name_list():
    sites = network_sites(NetworkSpec(sites=60))
    assert len({s.slug for s in sites}) == 60
    assert len({s.url for s in sites}) == 60


def test_table_names_follow_wordpress():
    assert set(SITE_SCHEMA) == WORDPRESS_SITE_TABLES and set(GLOBAL_SCHEMA) == WORDPRESS_GLOBAL_TABLES
    assert set(COLUMNS) == WORDPRESS_SITE_TABLES | WORDPRESS_GLOBAL_TABLES
    assert site_table_names("wp_", 1)[0] == "wp_termmeta"
    assert set(site_table_names("wpx9_", 20)) == {"wpx9_20_" + t for t in WORDPRESS_SITE_TABLES}
    for key, ddl in {**GLOBAL_SCHEMA, **SITE_SCHEMA}.items():
        declared = re.findall(r"^  (\w+) (?:bigint|int|tinyint|varchar|longtext|mediumtext|text|tinytext|datetime)",
                              ddl, re.MULTILINE)
        assert tuple(declared) == COLUMNS[key], key


# -- the stream ----------------------------------------------------------------------------------------------------

def test_same_spec_gives_identical_sql_and_another_seed_does_not():
    spec = dict(sites=4, posts_per_site=6, subdomain=True)
    assert _digest(NetworkSpec(**spec)) == _digest(NetworkSpec(**spec))
    assert _digest(NetworkSpec(**spec)) != _digest(NetworkSpec(seed=2, **spec))


def test_adding_sites_leaves_existing_subsites_unchanged():
    def site_two(spec):
        return [s for s in generate_sql(spec) if "`wp_2_" in s.split("(", 1)[0]]

    small = site_two(NetworkSpec(sites=3, posts_per_site=5))
    assert small and small == site_two(NetworkSpec(sites=8, posts_per_site=5, large_sites={7: 200_000}))


def test_statements_are_bounded_and_a_large_site_reaches_its_target():
    target = 4_000_000
    spec = NetworkSpec(sites=3, posts_per_site=5, large_sites={3: target})
    sizes = {}
    longest = 0
    for statement in generate_sql(spec):
        longest = max(longest, len(statement))
        match = re.match(r"INSERT INTO `wp_(\d+)_", statement)
        if match:
            sizes[int(match.group(1))] = sizes.get(int(match.group(1)), 0) + len(statement)
    assert longest < STATEMENT_SIZE + 100_000
    assert target <= sizes[3] < target * 1.05
    assert sizes[2] < 200_000


def test_parse_size():
    assert parse_size("150M") == 150_000_000
    assert parse_size("1.5g") == 1_500_000_000
    assert parse_size("2048") == 2048
    with pytest.raises(ValueError):
        parse_size("lots")
