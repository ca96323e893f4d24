# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sweep the migration database and the target's staging tables: for one site, the network, or everything.

A sweep of one site (or of the network, ``'network'``) drops its work tables in the
migration database and its staging and replaced tables in the target.  A full sweep
empties the migration database of everything no live run owns, every table and view, and
drops every staging and replaced table of the target, except:

* ``wfu_state_*`` tables, which belong to the migration state store;
* the tables of a site (or of the network) whose server-side lock (server_locks.py) a live
  connection holds: a run is migrating it right now.  They are left and reported in ``in_use``.

A site's tables are dropped only while the sweep holds that site's lock, so no run can start
on the site meanwhile.  The migration database is refused outright when it is also an
environment's database, or when it holds a WordPress network of its own.
"""

from __future__ import annotations

import contextlib

from ansible_collections.wfu.multisite.plugins.module_utils import server_locks
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import TIMEOUT, MigrationError

# Tables every WordPress network has: a database holding all of them under one prefix is a network's.
_NETWORK_SIGNATURE = ("blogs", "site", "sitemeta", "options")


def check_not_protected(migration, protected):
    """Refuse a migration database (a Database) that is also a source or target environment's database."""
    for name, database in (protected or {}).items():
        if database is not None and migration.same_database(database):
            raise ConfigError("refusing to clean %s: it is the database of environment %s, not a migration "
                              "database. Point wfu_migration_db at a database of its own." % (migration.where(), name))


def sweep(migration, protected=None, site_id=None, target=None, target_prefix="wp_", keep_backup_tables=False,
          check_mode=False, deadline=None):
    """Drop leftovers of one site (``site_id`` int), of the network (``'network'``) or everything (None).

    ``migration`` and ``target`` are ``db.Database`` values, ``protected`` maps environment names to theirs.
    Returns ``{migration_db, target, restored, in_use, changed}``: the tables dropped (or, in check mode,
    that would be), the replaced tables renamed back, and ``[{site_id, database, tables, holder}]`` left
    because a live connection holds their lock.
    """
    check_not_protected(migration, protected)
    if site_id not in (None, "network"):
        site_id = tbl.validate_site_id(site_id)
    if not migration.database:
        raise ConfigError("migration_db.database is missing")
    prefix = tbl.validate_prefix(target_prefix)
    result = {"migration_db": [], "target": [], "restored": [], "in_use": []}
    with contextlib.closing(migration.connect(deadline=deadline)) as conn:
        present = tbl.list_tables(conn, migration.database)
        if site_id is None:
            _refuse_a_network(migration, present)
        owned, unowned = {}, []
        for table in present:
            if table.startswith(tbl.STATE_MARK):
                continue
            owner = tbl.work_table_owner(table)
            if owner is None:
                unowned.append(table)
            elif site_id is None or owner == site_id:
                owned.setdefault(owner, []).append(table)
        for owner, tables in sorted(owned.items(), key=lambda item: str(item[0])):
            with _holding(conn, migration, owner, tables, check_mode, result) as free:
                if free:
                    if not check_mode:
                        tbl.drop_tables(conn, migration.database, tables)
                    result["migration_db"] += tables
        if site_id is None:
            views = [v for v in tbl.list_views(conn, migration.database) if not v.startswith(tbl.STATE_MARK)]
            if not check_mode:
                tbl.drop_tables(conn, migration.database, views, views=True)
                tbl.drop_tables(conn, migration.database, unowned)
            result["migration_db"] += views + unowned
    if target is not None:
        with contextlib.closing(target.connect(deadline=deadline)) as conn:
            present = tbl.list_tables(conn, target.database)
            owned = {}
            for table in present:
                marked, owner = tbl.leftover_owner(table, prefix)
                if marked and (site_id is None or owner == site_id):
                    owned.setdefault(owner, []).append(table)
            for owner, tables in sorted(owned.items(), key=lambda item: str(item[0])):
                with _holding(conn, target, owner, tables, check_mode, result) as free:
                    if free:
                        dropped, restored = tbl.clear_target_leftovers(conn, target.database, present, tables,
                                                                       keep_backup_tables, check_mode)
                        result["target"] += dropped
                        result["restored"] += restored
    for key in ("migration_db", "target", "restored"):
        result[key] = sorted(result[key])
    result["changed"] = bool(result["migration_db"] or result["target"] or result["restored"])
    return result


def sweep_within(timeout, migration, **kwargs):
    """``sweep()`` bounded by ``timeout`` seconds; a server that does not answer in time is named (systemic)."""

    def too_long(table=None):
        return MigrationError("the cleanup did not finish within %d s" % timeout, table=table, phase="cleanup",
                              reason=TIMEOUT)

    deadline = Deadline(timeout, error=too_long)
    try:
        with deadline.armed():
            return sweep(migration, deadline=deadline, **kwargs)
    except MigrationError as exc:
        raise deadline.blame(exc) from exc


@contextlib.contextmanager
def _holding(conn, database, owner, tables, check_mode, result):
    """Yield True while ``owner``'s lock in ``database`` is ours (in check mode: while nobody holds it).

    Tables of no site (another prefix's) have no lock.  A held lock puts the tables in ``result['in_use']``.
    """
    if owner is None:
        yield True
        return
    if check_mode:
        name, holder = None, server_locks.holder(conn, server_locks.lock_name(database, owner))
    else:
        name, holder = server_locks.try_acquire(conn, database, owner)
    if holder is not None:
        result["in_use"].append({"site_id": owner, "database": str(database), "tables": sorted(tables),
                                 "holder": holder})
        yield False
        return
    try:
        yield True
    finally:
        if name is not None:
            server_locks.release(conn, name)


def _refuse_a_network(migration, present):
    """A full sweep drops everything: refuse a database that holds a WordPress network's own tables."""
    names = set(present)
    for table in present:
        if table.endswith("blogs"):
            prefix = table[:-len("blogs")]
            if all(prefix + name in names for name in _NETWORK_SIGNATURE):
                raise ConfigError("refusing to empty %s: it holds the WordPress network tables %s*, so it is a "
                                  "network's database, not a migration database. Point wfu_migration_db at a "
                                  "database of its own." % (migration.where(), prefix))
