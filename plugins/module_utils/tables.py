# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tables belong to which site of a multisite network, and the names we give our work tables.

Site N (N >= 2) owns ``<prefix>N_*`` and nothing else: ``wp_2_`` never matches
``wp_20_posts`` because ownership is decided with an anchored regular
expression on the exact name, not with ``LIKE 'wp_2_%'`` (where ``_`` is a
wildcard).  The main site (blog 1) owns the unnumbered ``<prefix>*`` tables
minus the network-wide ones.  Tables of other prefixes are nobody's.

Work tables carry a marker so a sweep can find them without guessing:
``m<N>__<table>`` in the migration database (``mnet__`` for the network
tables), ``wfu_stage__<table>`` and ``wfu_old__<table>`` in the target.
Tables named ``wfu_state_*`` belong to the migration state store and are never
touched by a sweep.
"""

from __future__ import annotations

import re

from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    ConfigError, as_text, pymysql, qualified, quote_identifier, validate_identifier)

UNKNOWN_DATABASE = 1049

MAIN_SITE_ID = 1

# Tables shared by the whole network (WordPress multisite schema), without the prefix.
NETWORK_TABLES = ("blogs", "blogmeta", "site", "sitemeta", "signups", "registration_log", "sitecategories",
                  "blog_versions")
USER_TABLES = ("users", "usermeta")
GLOBAL_TABLES = NETWORK_TABLES + USER_TABLES

STAGE_MARK = "wfu_stage__"
OLD_MARK = "wfu_old__"
NETWORK_WORK_MARK = "mnet__"
STATE_MARK = "wfu_state_"
WORK_TABLE_RE = re.compile(r"^m(\d+|net)__(.+)$")
MAX_IDENTIFIER = 64


def validate_prefix(prefix):
    if not isinstance(prefix, str) or not re.match(r"^[A-Za-z0-9_]{1,40}$", prefix):
        raise ConfigError("invalid table_prefix %r: use letters, digits and '_' (e.g. wp_)" % (prefix,))
    return prefix


def validate_site_id(site_id):
    """Site ids are positive integers; refuse anything else before it reaches SQL."""
    if isinstance(site_id, bool) or not re.match(r"^\d+$", str(site_id).strip()) or int(site_id) < 1:
        raise ConfigError("site id must be a positive integer, got %r" % (site_id,))
    return int(site_id)


def site_table_prefix(prefix, site_id):
    """``wp_`` for the main site, ``wp_43_`` for site 43."""
    return prefix if int(site_id) == MAIN_SITE_ID else "%s%d_" % (prefix, int(site_id))


def owner_of(table, prefix):
    """Return the site id owning ``table``, ``'network'`` for global tables, or None for foreign tables."""
    if not table.startswith(prefix):
        return None
    rest = table[len(prefix):]
    numbered = re.match(r"^(\d+)_(.+)$", rest)
    if numbered:
        return int(numbered.group(1))
    if rest in GLOBAL_TABLES:
        return "network"
    return MAIN_SITE_ID if rest else None


def site_tables(all_tables, prefix, site_id):
    """The tables of ``all_tables`` that site ``site_id`` owns, sorted."""
    site_id = validate_site_id(site_id)
    return sorted(t for t in all_tables if owner_of(t, prefix) == site_id)


def network_tables(all_tables, prefix, include_users=False):
    """The network tables present in ``all_tables`` (users/usermeta only when asked)."""
    wanted = NETWORK_TABLES + (USER_TABLES if include_users else ())
    return sorted(prefix + name for name in wanted if prefix + name in set(all_tables))


def retarget_table(table, source_prefix, target_prefix):
    """The target's name for a source table when the environments use different prefixes."""
    if not table.startswith(source_prefix):
        raise ConfigError("table %s does not start with the source prefix %s" % (table, source_prefix))
    return target_prefix + table[len(source_prefix):]


def _marked(mark, table):
    name = mark + table
    if len(name) > MAX_IDENTIFIER:
        raise ConfigError("work table name %s is longer than %d characters; table %s cannot be staged"
                          % (name, MAX_IDENTIFIER, table))
    return name


def work_table(site_id, table):
    """Name of a site's copy in the migration database: ``m43__wp_43_posts``."""
    return _marked("m%d__" % int(site_id), table)


def network_work_table(table):
    return _marked(NETWORK_WORK_MARK, table)


def stage_table(table):
    return _marked(STAGE_MARK, table)


def old_table(table):
    return _marked(OLD_MARK, table)


def work_table_owner(table):
    """The site id (int) or ``'network'`` a migration-database work table belongs to; None for other tables."""
    match = WORK_TABLE_RE.match(table)
    if not match:
        return None
    return "network" if match.group(1) == "net" else int(match.group(1))


def work_tables_of(all_tables, site_id=None):
    """Our tables in the migration database; one site's (int), the network's ('network') or all (None)."""
    return sorted(t for t in all_tables if work_table_owner(t) is not None
                  and (site_id is None or work_table_owner(t) == site_id))


def leftover_owner(table, prefix):
    """For a staging or replaced table of a target: ``(True, owner)`` (owner as ``owner_of`` gives it, None for
    a table of another prefix); ``(False, None)`` for any other table."""
    for mark in (STAGE_MARK, OLD_MARK):
        if table.startswith(mark):
            return True, owner_of(table[len(mark):], prefix)
    return False, None


def target_leftovers(all_tables, prefix, site_id=None):
    """Staging and replaced (old) tables in a target database; one site's, the network's or all."""
    found = []
    for table in all_tables:
        marked, owner = leftover_owner(table, prefix)
        if marked and (site_id is None or owner == site_id):
            found.append(table)
    return sorted(found)


def clear_target_leftovers(conn, database, present, leftovers, keep_backup_tables=False, check_mode=False):
    """Drop the given staging and replaced tables of a target; return ``(dropped, restored)``.

    ``present`` lists the database's tables.  A replaced table (``wfu_old__X``) whose live table ``X`` is
    missing is the only copy left of ``X``, so it is renamed back instead of dropped.
    """
    live = set(present)
    restored = sorted(t for t in leftovers if t.startswith(OLD_MARK) and t[len(OLD_MARK):] not in live)
    dropped = sorted(t for t in leftovers
                     if t not in restored and not (keep_backup_tables and t.startswith(OLD_MARK)))
    if not check_mode:
        if restored:
            rename_tables(conn, database, [(t, t[len(OLD_MARK):]) for t in restored])
        drop_tables(conn, database, dropped)
    return dropped, restored


def rename_statement(database, moves, to_database=None):
    """One ``RENAME TABLE`` statement for ``[(from, to), ...]`` from ``database`` into ``to_database`` (default the
    same): atomic in MariaDB and MySQL, so either every move happens or none."""
    to_database = to_database or database
    return "RENAME TABLE " + ", ".join("%s TO %s" % (qualified(database, a), qualified(to_database, b))
                                       for a, b in moves)


def rename_tables(conn, database, moves, to_database=None, within=None):
    """Run ``rename_statement``; with ``within`` (seconds), only if the server starts it within that time.

    The limit is the server's own check (MariaDB): a server that hangs while the statement waits in its socket
    and wakes up after the caller gave up does not run it.  Elsewhere the statement runs unguarded.
    """
    statement = rename_statement(database, moves, to_database)
    with conn.cursor() as cur:
        if within is None or "MariaDB" not in conn.get_server_info():
            cur.execute(statement)
            return
        # The limit is set by a statement of its own, answered before the rename is sent: it is measured from a
        # moment the server was known to be running.
        cur.execute("SET @wfu_not_after = UNIX_TIMESTAMP(NOW(6)) + %s", (within,))
        cur.execute("EXECUTE IMMEDIATE IF(UNIX_TIMESTAMP(NOW(6)) < @wfu_not_after, %s, %s)",
                    (statement, "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the statement came too late: the "
                                "call that sent it had run out of time'"))


def list_tables(conn, database):
    """Base tables of a database (views excluded)."""
    return _tables_of_type(conn, database, "BASE TABLE")


def _tables_of_type(conn, database, kind):
    """The tables of ``database`` whose type is ``kind`` (``BASE TABLE``, ``VIEW``), from ``SHOW FULL TABLES``.

    Not from information_schema.TABLES: asking it for TABLE_TYPE waits for the metadata lock of any table that a
    pending statement holds exclusively (a swap's RENAME waiting for a locked live table holds its staging
    tables' locks), while SHOW FULL TABLES reads the type without opening the table, at once.
    """
    validate_identifier(database, "database name")
    with conn.cursor() as cur:
        try:
            cur.execute("SHOW FULL TABLES FROM %s" % quote_identifier(database))
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] == UNKNOWN_DATABASE:
                return []  # as information_schema answers: a database that is not there has no tables
            raise
        return sorted(as_text(name) for name, table_type in cur.fetchall() if as_text(table_type) == kind)


def list_views(conn, database):
    return _tables_of_type(conn, database, "VIEW")


def table_stats(conn, database, tables):
    """``{table: {"rows": estimated rows, "bytes": data+index bytes}}`` from information_schema."""
    if not tables:
        return {}
    placeholders = ", ".join(["%s"] * len(tables))
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = %%s AND TABLE_NAME IN (%s)" % placeholders, [database] + list(tables))
        return {name: {"rows": int(rows or 0), "bytes": int(size or 0)} for name, rows, size in cur.fetchall()}


def exact_row_counts(conn, database, tables):
    counts = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute("SELECT COUNT(*) FROM %s.%s" % (quote_identifier(database), quote_identifier(table)))
            counts[table] = int(cur.fetchone()[0])
    return counts


def filtered_row_counts(conn, database, filters):
    """``{table: (rows, rows kept)}`` for ``{table: condition}``: all rows and those the condition keeps, in one scan.

    The conditions are SQL built by the collection (content_policy.py), never user input.
    """
    counts = {}
    with conn.cursor() as cur:
        for table, condition in filters.items():
            cur.execute("SELECT COUNT(*), COUNT(CASE WHEN %s THEN 1 END) FROM %s.%s"
                        % (condition, quote_identifier(database), quote_identifier(table)))
            total, kept = cur.fetchone()
            counts[table] = (int(total), int(kept))
    return counts


def drop_tables(conn, database, tables, views=False):
    """Drop tables (or views), idempotent, a few at a time so one statement never grows huge."""
    tables = list(tables)
    with conn.cursor() as cur:
        for start in range(0, len(tables), 50):
            chunk = tables[start:start + 50]
            cur.execute("DROP %s IF EXISTS %s" % ("VIEW" if views else "TABLE",
                                                  ", ".join(qualified(database, t) for t in chunk)))
    return tables
