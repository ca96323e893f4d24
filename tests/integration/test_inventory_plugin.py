"""The wfu.multisite.sites inventory plugin through ansible-inventory, as AWX's inventory sync runs it.

Every test reads a generated network in a real MariaDB server with ``ansible-inventory -i <x>.wfu_sites.yml
--list --export``; expectations come from the network's spec (tools/wpnetwork.py) and from information_schema,
not from the plugin's own code.  Strings from the database come back marked unsafe (``{"__ansible_unsafe": ...}``)
by ansible-inventory; ``plain`` takes the markers off for comparison.
"""

import contextlib
import json
import os
import stat
import subprocess

import pytest

from awx_jobs import ANSIBLE_INVENTORY, ansible_env, exported_inventory, inject_credential, load_credential_type
from ansible_collections.wfu.multisite.plugins.module_utils.db import quote_identifier
from helpers import LoadedNetwork, connect, query, unique_name
from tools.wpnetwork import NetworkSpec, network_sites, site_table_names

# Blog ids 5, 7 and 8 are archived, spam and deleted (tools/wpnetwork.py FLAGS_BY_LAST_DIGIT); 4 is not public and
# 6 is mature.
SUBDOMAIN = NetworkSpec(url="https://dev.example.edu", subdomain=True, sites=10, posts_per_site=3,
                        large_sites={3: 1_500_000})
SUBDIRECTORY = NetworkSpec(url="https://uat.example.edu/wp", subdomain=False, sites=6, posts_per_site=3,
                           prefix="wpx_")
FLAGS = ("public", "archived", "mature", "spam", "deleted")


def plain(value):
    """A value of ansible-inventory's JSON without the unsafe markers."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def site_bytes(server, database, spec):
    """Data and index bytes of each site's tables, from information_schema (after ANALYZE, so it is current)."""
    sizes = dict(query(server, None, "SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                                     "WHERE TABLE_SCHEMA = %s", (database,)))
    return {site_id: sum(int(sizes[name]) for name in site_table_names(spec.prefix, site_id))
            for site_id in spec.blog_ids()}


def expected_hostvars(spec, sizes, large=()):
    expected = {}
    for site in network_sites(spec):
        variables = {"wfu_site_id": site.blog_id, "wfu_site_domain": site.domain, "wfu_site_path": site.path,
                     "wfu_site_bytes": sizes[site.blog_id], "wfu_site_large": site.blog_id in large,
                     "ansible_connection": "local"}
        variables.update(("wfu_site_" + flag, bool(site.flags[flag])) for flag in FLAGS)
        expected["site-%d" % site.blog_id] = variables
    return expected


class Network:
    def __init__(self, server, spec):
        self.loaded = LoadedNetwork(server, spec)
        with contextlib.closing(connect(server, self.loaded.database)) as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            for (name,) in cur.fetchall():
                cur.execute("ANALYZE TABLE `%s`" % name)
                cur.fetchall()
        self.server, self.spec, self.database = server, spec, self.loaded.database
        self.sizes = site_bytes(server, self.database, spec)

    def db(self, **changes):
        return dict(self.server.connection(self.database), **changes)


@pytest.fixture(scope="module")
def subdomain_network(servers):
    network = Network(servers["source"], SUBDOMAIN)
    yield network
    network.loaded.drop()


@pytest.fixture(scope="module")
def subdirectory_network(servers):
    network = Network(servers["source"], SUBDIRECTORY)
    yield network
    network.loaded.drop()


def write_source(directory, name="network", **options):
    """An inventory source ``<name>.wfu_sites.yml`` (JSON is YAML) holding ``options``."""
    path = os.path.join(str(directory), name + ".wfu_sites.yml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(dict({"plugin": "wfu.multisite.sites"}, **options), handle, indent=2)
    return path


def run_inventory(source, *args, env=None):
    """ansible-inventory --list --export, a source that does not parse being an error (as in AWX's sync)."""
    return subprocess.run([ANSIBLE_INVENTORY, "-i", source, "--list", "--export", *args], capture_output=True,
                          text=True, timeout=120, check=False,
                          env=dict(ansible_env(), ANSIBLE_INVENTORY_UNPARSED_FAILED="1", **(env or {})))


def sync(source, env=None):
    return plain(exported_inventory(source, env=env))


def site_hosts(inventory, group="wfu_sites"):
    return sorted(inventory.get(group, {}).get("hosts", []), key=lambda name: int(name.split("-")[1]))


def test_subdomain_network_lists_every_site_with_its_variables(subdomain_network, tmp_path):
    inventory = sync(write_source(tmp_path, db=subdomain_network.db()))

    assert site_hosts(inventory) == ["site-%d" % n for n in range(1, 11)]
    assert "wfu_sites" in inventory["all"]["children"]
    assert inventory["_meta"]["hostvars"] == expected_hostvars(SUBDOMAIN, subdomain_network.sizes)
    assert inventory["_meta"]["hostvars"]["site-3"]["wfu_site_domain"] == "admissions.dev.example.edu"
    for variables in inventory["_meta"]["hostvars"].values():
        assert all(isinstance(variables["wfu_site_" + flag], bool) for flag in FLAGS + ("large",)), variables
        assert not any(isinstance(variables[key], bool) or not isinstance(variables[key], int)
                       for key in ("wfu_site_id", "wfu_site_bytes")), variables


def test_only_files_named_wfu_sites_are_read(subdomain_network, tmp_path):
    path = tmp_path / "network.yml"
    path.write_text(json.dumps({"plugin": "wfu.multisite.sites", "db": subdomain_network.db()}))
    done = run_inventory(str(path))

    assert done.returncode != 0
    assert "could not be verified by inventory plugin 'wfu.multisite.sites'" in done.stderr


def test_subdirectory_network_with_its_table_prefix(subdirectory_network, tmp_path):
    inventory = sync(write_source(tmp_path, db=subdirectory_network.db(), table_prefix="wpx_"))

    assert site_hosts(inventory) == ["site-%d" % n for n in range(1, 7)]
    assert inventory["_meta"]["hostvars"] == expected_hostvars(SUBDIRECTORY, subdirectory_network.sizes)
    assert inventory["_meta"]["hostvars"]["site-2"]["wfu_site_path"] == "/wp/news/"
    assert inventory["_meta"]["hostvars"]["site-2"]["wfu_site_domain"] == "uat.example.edu"


def test_wrong_table_prefix_names_the_database_and_the_option(subdirectory_network, tmp_path):
    done = run_inventory(write_source(tmp_path, db=subdirectory_network.db()))

    assert done.returncode != 0
    assert "database %s has no wp_blogs table" % subdirectory_network.database in done.stderr
    assert "table_prefix" in done.stderr


@pytest.mark.parametrize("options, expected", [
    ({"active_only": True}, [1, 2, 3, 4, 6, 9, 10]),
    ({"exclude_main_site": True}, list(range(2, 11))),
    ({"include_sites": "2,3,4"}, [2, 3, 4]),
    ({"include_sites": [2, 3, 9], "exclude_sites": ["3"]}, [2, 9]),
    ({"active_only": True, "exclude_main_site": True, "exclude_sites": [9, 10]}, [2, 3, 4, 6]),
])
def test_site_filters(subdomain_network, tmp_path, options, expected):
    inventory = sync(write_source(tmp_path, db=subdomain_network.db(), **options))

    assert site_hosts(inventory) == ["site-%d" % n for n in expected]
    assert sorted(inventory["_meta"]["hostvars"]) == sorted("site-%d" % n for n in expected)


def test_include_sites_unknown_to_the_network_is_an_error(subdomain_network, tmp_path):
    done = run_inventory(write_source(tmp_path, db=subdomain_network.db(), include_sites=[2, 99]))

    assert done.returncode != 0
    assert "include_sites names sites that are not in %s.wp_blogs: 99" % subdomain_network.database in done.stderr


def test_large_sites_keyed_groups_groups_and_compose(subdomain_network, tmp_path):
    sizes = subdomain_network.sizes
    small = max(size for site_id, size in sizes.items() if site_id != 3)
    assert sizes[3] > small, sizes
    source = write_source(
        tmp_path, db=subdomain_network.db(), large_site_bytes=(sizes[3] + small) // 2, large_sites=["7"],
        keyed_groups=[{"key": "wfu_site_large | ternary('large', 'small')", "prefix": "size"}],
        groups={"wfu_archived_sites": "wfu_site_archived", "wfu_subsites": "wfu_site_id != 1"},
        compose={"wfu_site_url": "'https://' ~ wfu_site_domain ~ wfu_site_path",
                 "ansible_connection": "'ssh' if wfu_site_id == 2 else 'local'"})
    inventory = sync(source)
    hostvars = inventory["_meta"]["hostvars"]

    assert site_hosts(inventory, "size_large") == ["site-3", "site-7"]
    assert site_hosts(inventory, "size_small") == ["site-%d" % n for n in (1, 2, 4, 5, 6, 8, 9, 10)]
    assert [name for name in hostvars if hostvars[name]["wfu_site_large"]] == ["site-3", "site-7"]
    assert site_hosts(inventory, "wfu_archived_sites") == ["site-5"]
    assert site_hosts(inventory, "wfu_subsites") == ["site-%d" % n for n in range(2, 11)]
    site_4 = network_sites(SUBDOMAIN)[3]
    assert hostvars["site-4"]["wfu_site_url"] == "https://%s/" % site_4.domain
    assert hostvars["site-2"]["ansible_connection"] == "ssh"
    assert hostvars["site-4"]["ansible_connection"] == "local"
    assert site_hosts(inventory) == ["site-%d" % n for n in range(1, 11)]


def test_strict_compose_error_names_the_host(subdomain_network, tmp_path):
    done = run_inventory(write_source(tmp_path, db=subdomain_network.db(), strict=True,
                                      compose={"wfu_owner": "wfu_no_such_variable.owner"}))

    assert done.returncode != 0
    assert "Could not set wfu_owner for host site-1" in done.stderr


def test_jsonfile_cache_answers_without_the_database_and_holds_no_password(servers, tmp_path):
    network = Network(servers["source"], NetworkSpec(url="https://dev.example.edu", subdomain=True, sites=4,
                                                     posts_per_site=2))
    cache_dir = tmp_path / "cache"
    cache = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(cache_dir),
             "cache_timeout": 3600}
    try:
        source = write_source(tmp_path, db=network.db(), **cache)
        first = sync(source)
        (entry,) = os.listdir(cache_dir)
        entry = cache_dir / entry
        written = entry.stat().st_mtime_ns
        assert network.server.password not in entry.read_text()
        assert site_hosts(first) == ["site-1", "site-2", "site-3", "site-4"]

        # Other filters in the same file are another selection: read from the database, cached beside the first.
        write_source(tmp_path, db=network.db(), include_sites=[2], **cache)
        assert site_hosts(sync(source)) == ["site-2"]
        assert len(os.listdir(cache_dir)) == 2

        write_source(tmp_path, db=network.db(), **cache)
        network.loaded.drop()
        assert sync(source) == first
        assert entry.stat().st_mtime_ns == written

        refreshed = run_inventory(source, "--flush-cache")
        assert refreshed.returncode != 0
        assert "%s: cannot list the sites" % source in refreshed.stderr
        assert "Unknown database '%s'" % network.database in refreshed.stderr
        assert "Check db.database" in refreshed.stderr
    finally:
        network.loaded.drop()


def test_wrong_password_is_a_clear_error_without_the_password(subdomain_network, tmp_path):
    wrong = "Wr0ng-Pa55-%s" % os.getpid()
    source = write_source(tmp_path, db=subdomain_network.db(password=wrong),
                          cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "c"))
    done = run_inventory(source, "-vvv")

    assert done.returncode != 0
    output = done.stdout + done.stderr
    server = subdomain_network.server
    assert ("%s: cannot list the sites: the database (%s:%d/%s) refused the login of user '%s'"
            % (source, server.host, server.port, subdomain_network.database, server.user)) in output
    assert "Fix the user and password under db, in its config_file or in the AWX credential" in output
    assert wrong not in output
    assert not list((tmp_path / "c").glob("*"))


def test_unknown_db_key_is_refused(tmp_path):
    done = run_inventory(write_source(tmp_path, db={"hots": "127.0.0.1", "database": "wordpress"}))

    assert done.returncode != 0
    assert "db has unknown key(s) hots; it takes host, port, user, password, database" in done.stderr


def test_awx_credential_option_file_through_the_environment(subdomain_network, tmp_path):
    """An AWX inventory source: the source database credential writes the option file and names it in
    WFU_SOURCE_DB_CONFIG_FILE; the source's db templates config_file from it.  The login has a password with
    characters an option file must keep (space, #, ;, ', =)."""
    server = subdomain_network.server
    user = unique_name("awxinv")
    password = "s3cret #1; it's=ok %s" % os.getpid()
    query(server, None, "CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
    query(server, None, "GRANT SELECT ON %s.* TO %%s@'%%%%'" % quote_identifier(subdomain_network.database), (user,))
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    try:
        injection = inject_credential(load_credential_type("wfu_source_db"),
                                      {"environment": "dev", "host": server.host, "port": str(server.port),
                                       "user": user, "password": password}, str(env_dir))
        (option_file,) = injection.files.values()
        assert stat.S_IMODE(os.stat(option_file).st_mode) == 0o600
        source = write_source(tmp_path, db={
            "config_file": "{{ lookup('ansible.builtin.env', 'WFU_SOURCE_DB_CONFIG_FILE') }}",
            "database": subdomain_network.database})
        with open(source, encoding="utf-8") as handle:
            assert password not in handle.read()

        inventory = sync(source, env=injection.env)
        assert site_hosts(inventory) == ["site-%d" % n for n in range(1, 11)]

        # The same file named directly; a missing database name is said as such.
        direct = write_source(tmp_path, "direct", db={"config_file": option_file})
        done = run_inventory(direct)
        assert done.returncode != 0
        assert "db names no database (set db.database, or database= in its config_file)" in done.stderr
        assert password not in done.stdout + done.stderr
    finally:
        query(server, None, "DROP USER IF EXISTS %s@'%%'", (user,))
