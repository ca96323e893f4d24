# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sweep the migration database and the target's staging tables, for one site or for everything.

Only tables that carry our markers are touched (see tables.py), and the
migration database is refused outright when it is also configured as an
environment's database: a sweep there could drop a live site.
"""

from __future__ import annotations

import contextlib

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    ConfigError, connect, describe, resolve, same_database)


def check_not_protected(migration_db, protected):
    """Refuse a migration database that is also a source or target environment's database."""
    for name, params in (protected or {}).items():
        if params and same_database(migration_db, params):
            raise ConfigError("refusing to clean %s: it is the database of environment %s, not a migration "
                              "database. Point wfu_migration_db at a database of its own." % (describe(migration_db), name))


def sweep(migration_db, protected=None, site_id=None, target=None, target_prefix="wp_", keep_backup_tables=False,
          check_mode=False):
    """Drop leftovers of one site (``site_id`` int), of the network (``'network'``) or of everything (None).

    Returns ``{"migration_db": [...], "target": [...], "changed": bool}`` listing what was (or would be) dropped.
    """
    check_not_protected(migration_db, protected)
    if site_id not in (None, "network"):
        site_id = tbl.validate_site_id(site_id)
    result = {"migration_db": [], "target": [], "restored": []}
    database = resolve(migration_db).get("database")
    if not database:
        raise ConfigError("migration_db.database is missing")
    with contextlib.closing(connect(migration_db)) as conn:
        doomed = tbl.work_tables_of(tbl.list_tables(conn, database), site_id)
        if not check_mode:
            tbl.drop_tables(conn, database, doomed)
        result["migration_db"] = doomed
    if target:
        target_database = resolve(target).get("database")
        with contextlib.closing(connect(target)) as conn:
            result["target"], result["restored"] = tbl.clear_target_leftovers(
                conn, target_database, tbl.validate_prefix(target_prefix), site_id,
                keep_backup_tables=keep_backup_tables, check_mode=check_mode)
    result["changed"] = bool(result["migration_db"] or result["target"] or result.get("restored"))
    return result
