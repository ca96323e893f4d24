# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: sites
short_description: The sites of a WordPress multisite network as inventory hosts
version_added: 0.2.0
description:
  - Reads C(<prefix>blogs) of a multisite database and makes one host C(site-<id>) per site, in the group
    C(wfu_sites), ordered by id, so that a play over C(wfu_sites) (or an AWX job sliced over this inventory)
    migrates sites as hosts.
  - "Each host gets C(wfu_site_id), C(wfu_site_domain), C(wfu_site_path), C(wfu_site_bytes) (data and index bytes
    of its tables), C(wfu_site_large), the flags C(wfu_site_public), C(wfu_site_archived), C(wfu_site_spam),
    C(wfu_site_deleted), C(wfu_site_mature) as booleans, and C(ansible_connection: local): the controller talks to
    the databases. O(compose) may set any of them otherwise."
  - "The inventory source is a YAML file whose name ends in C(.wfu_sites.yml) or C(.wfu_sites.yaml) and that holds
    C(plugin: wfu.multisite.sites)."
  - The values under O(db) may be templates, evaluated when the inventory is read. The second example takes
    C(config_file) from the environment variable E(WFU_SOURCE_DB_CONFIG_FILE), which the AWX credential type of the
    source database sets (AWX passes no extra vars to an inventory sync, only environment variables and files).
  - The password is used only to connect; it is never part of the inventory, of the cache or of a message.
author:
  - WFU Web Platform Team (@wfu)
requirements:
  - PyMySQL on the controller.
options:
  plugin:
    description: The name of this plugin; it makes the file an inventory source of this plugin.
    type: str
    required: true
    choices: [wfu.multisite.sites]
  table_prefix:
    description: The network's table prefix.
    type: str
    default: wp_
  include_sites:
    description: Only these site ids (a list, or a comma-separated string). An id that is not in the network is an error.
    type: list
    elements: str
  exclude_sites:
    description: Leave out these site ids.
    type: list
    elements: str
  active_only:
    description: Leave out archived, spam and deleted sites.
    type: bool
    default: false
  exclude_main_site:
    description: Leave out the main site (blog 1).
    type: bool
    default: false
  large_site_bytes:
    description: Mark sites whose tables hold at least this many bytes as large (0 disables the threshold).
    type: int
    default: 0
  large_sites:
    description: Site ids to mark as large whatever their size.
    type: list
    elements: str
notes:
  - The cache (O(cache)) holds the sites only. Its key is the inventory file's path together with a digest of the
    database's address and of the options that change the answer, so a change of filters is never answered from
    an older selection.
  - Keyed groups take string keys; for a boolean write an expression such as
    C("wfu_site_large | ternary('large', 'small')").
extends_documentation_fragment:
  - wfu.multisite.connection.db
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
"""

EXAMPLES = r"""
# uat.wfu_sites.yml: the active sites of the uat network, sites over 500 MB marked large and grouped by size
plugin: wfu.multisite.sites
db:
  config_file: ~/.wfuwp/uat.cnf
  database: wordpress
active_only: true
large_site_bytes: 524288000
keyed_groups:
  - key: "wfu_site_large | ternary('large', 'small')"
    prefix: size

---
# prod.wfu_sites.yml for an AWX inventory source: the credential of type "WFU multisite source database" writes the
# option file and names it in WFU_SOURCE_DB_CONFIG_FILE; the listing is cached for an hour
plugin: wfu.multisite.sites
db:
  config_file: "{{ lookup('ansible.builtin.env', 'WFU_SOURCE_DB_CONFIG_FILE') }}"
  database: wordpress
exclude_main_site: true
compose:
  wfu_site_url: "'https://' ~ wfu_site_domain ~ wfu_site_path"
groups:
  wfu_archived_sites: wfu_site_archived
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /tmp/wfu-sites-cache
cache_timeout: 3600
"""

import contextlib
import hashlib
import json

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.wfu.multisite.plugins.module_utils.db import DB_OPTION_KEYS, connect
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    ACCESS, CONNECTION, MISSING_DATABASE, SERVER_NOT_ANSWERING, ConfigError, MigrationError, redact)
from ansible_collections.wfu.multisite.plugins.module_utils.sites import FLAGS, discover_sites

GROUP = "wfu_sites"
FILE_SUFFIXES = (".wfu_sites.yml", ".wfu_sites.yaml")
# The options whose values change which sites are listed and how (the cache key follows them).
SELECTION_OPTIONS = ("table_prefix", "include_sites", "exclude_sites", "active_only", "exclude_main_site",
                     "large_site_bytes", "large_sites")
# What a listed site keeps in the cache and in the inventory: never its tables, never a password.
SITE_KEYS = ("id", "domain", "path", "bytes", "large") + FLAGS


def host_name(site_id):
    return "site-%d" % int(site_id)


def host_vars(site):
    """The variables of a site's host."""
    variables = {"wfu_site_id": site["id"], "wfu_site_domain": site["domain"], "wfu_site_path": site["path"],
                 "wfu_site_bytes": site["bytes"], "wfu_site_large": bool(site["large"])}
    for flag in FLAGS:
        variables["wfu_site_" + flag] = bool(site[flag])
    variables["ansible_connection"] = "local"
    return variables


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "wfu.multisite.sites"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(FILE_SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        db = self._db_settings(path)
        cache_key = self._selection_cache_key(path, db)
        use_cache = self.get_option("cache") and cache
        refresh_cache = self.get_option("cache") and not cache
        sites = None
        if use_cache:
            try:
                sites = self._cache[cache_key]
            except KeyError:
                refresh_cache = True
        if sites is None:
            sites = self._list_sites(path, db)
        if refresh_cache:
            self._cache[cache_key] = sites
        self._populate(sites)

    def _db_settings(self, path):
        """The db option, its templates evaluated; a mapping of the known keys only."""
        db = self.get_option("db")
        if not isinstance(db, dict):
            raise AnsibleParserError("%s: db must be a mapping of %s" % (path, ", ".join(DB_OPTION_KEYS)))
        unknown = sorted(set(db) - set(DB_OPTION_KEYS))
        if unknown:
            raise AnsibleParserError("%s: db has unknown key(s) %s; it takes %s"
                                     % (path, ", ".join(unknown), ", ".join(DB_OPTION_KEYS)))
        try:
            templated = self.templar.template(db)
        except Exception as exc:
            # The error names the template, which may be a password's: keep only its kind.
            raise AnsibleParserError("%s: a value under db could not be templated (%s); fix it and read the "
                                     "inventory again" % (path, type(exc).__name__)) from None
        return {key: value for key, value in templated.items() if value not in (None, "")}

    def _selection_cache_key(self, path, db):
        selection = {name: self.get_option(name) for name in SELECTION_OPTIONS}
        selection["db"] = {key: value for key, value in db.items() if key != "password"}
        digest = hashlib.sha256(json.dumps(selection, sort_keys=True, default=str).encode("utf-8")).hexdigest()
        return "%s_%s" % (self.get_cache_key(path), digest[:12])

    def _list_sites(self, path, db):
        """The selected sites of the network, reduced to SITE_KEYS; errors say which database and what to fix."""
        try:
            with contextlib.closing(connect(db)) as conn:
                database = self._current_database(conn, path)
                sites = discover_sites(conn, database, self.get_option("table_prefix"),
                                       include=self.get_option("include_sites"),
                                       exclude=self.get_option("exclude_sites"),
                                       active_only=self.get_option("active_only"),
                                       exclude_main=self.get_option("exclude_main_site"),
                                       large_site_bytes=self.get_option("large_site_bytes"),
                                       large_sites=self.get_option("large_sites"))
        except ConfigError as exc:
            raise AnsibleParserError(redact("%s: %s. Fix it in that file and read the inventory again."
                                            % (path, to_native(exc).rstrip(".")), [db.get("password")])) from None
        except Exception as exc:  # pylint: disable=broad-except
            raise AnsibleParserError(self._failure_message(path, exc, db)) from None
        return [{key: site[key] for key in SITE_KEYS} for site in sites]

    @staticmethod
    def _current_database(conn, path):
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            database = cur.fetchone()[0]
        if not database:
            raise ConfigError("db names no database (set db.database, or database= in its config_file)")
        return database

    @staticmethod
    def _failure_message(path, exc, db):
        error = MigrationError.wrap(exc)
        if error.reason == ACCESS:
            step = ("Fix the user and password under db, in its config_file or in the AWX credential that writes "
                    "that file")
        elif error.reason in (CONNECTION, SERVER_NOT_ANSWERING):
            step = "Check that the server is up and that db.host and db.port (or db.unix_socket) are right"
        elif error.reason == MISSING_DATABASE:
            step = "Check db.database (or database= in its config_file)"
        else:
            step = "Check db and table_prefix"
        message = "%s: cannot list the sites: %s. %s, then read the inventory again." % (
            path, error.message.rstrip("."), step)
        return redact(message, [db.get("password")])

    def _populate(self, sites):
        strict = self.get_option("strict")
        self.inventory.add_group(GROUP)
        for site in sites:
            name = self.inventory.add_host(host_name(site["id"]), group=GROUP)
            variables = host_vars(site)
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)
