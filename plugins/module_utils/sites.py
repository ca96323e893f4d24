# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Discover the sites of a multisite network: wp_blogs rows joined with their tables and sizes."""

from __future__ import annotations

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, quote_identifier
from ansible_collections.wfu.multisite.plugins.module_utils.tables import (
    MAIN_SITE_ID, owner_of, validate_prefix, validate_site_id)

FLAGS = ("public", "archived", "mature", "spam", "deleted")


def read_blogs(conn, database, prefix):
    """All wp_blogs rows as dicts, ordered by blog_id; a clear error when the table is missing."""
    validate_prefix(prefix)
    table = prefix + "blogs"
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (database, table))
        if not cur.fetchone()[0]:
            raise ConfigError("database %s has no %s table: is it a WordPress multisite database and is "
                              "table_prefix (%s) right?" % (database, table, prefix))
        cur.execute("SELECT blog_id, site_id, domain, path, registered, last_updated, %s FROM %s.%s ORDER BY blog_id"
                    % (", ".join(FLAGS), quote_identifier(database), quote_identifier(table)))
        names = [d[0] for d in cur.description]
        rows = []
        for values in cur.fetchall():
            row = dict(zip(names, values))
            for key in ("registered", "last_updated"):
                row[key] = str(row[key]) if row[key] is not None else None
            for key in FLAGS + ("blog_id", "site_id"):
                row[key] = int(row[key])
            rows.append(row)
        return rows


def _as_id_set(values, what):
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = str(values).split(",")
    result = set()
    for value in values:
        if str(value).strip():
            try:
                result.add(validate_site_id(value))
            except ConfigError:
                raise ConfigError("%s must list site ids (integers), got %r" % (what, value))
    return result or None


def discover_sites(conn, database, prefix, include=None, exclude=None, active_only=False, exclude_main=False,
                   large_site_bytes=None, large_sites=None):
    """The network's sites with flags, tables and sizes, filtered; sorted by blog_id.

    ``active_only`` drops archived, spam and deleted sites.  A site is large when
    its tables hold at least ``large_site_bytes`` bytes or its id is in ``large_sites``.
    """
    include_ids = _as_id_set(include, "include_sites")
    exclude_ids = _as_id_set(exclude, "exclude_sites") or set()
    large_ids = _as_id_set(large_sites, "large_sites") or set()
    blogs = read_blogs(conn, database, prefix)
    known = {b["blog_id"] for b in blogs}
    unknown = sorted((include_ids or set()) - known)
    if unknown:
        raise ConfigError("include_sites names sites that are not in %s.%sblogs: %s"
                          % (database, prefix, ", ".join(map(str, unknown))))

    sizes = {}
    tables_of = {}
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0), TABLE_ROWS "
                    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'", (database,))
        for name, size, _rows in cur.fetchall():
            owner = owner_of(name, prefix)
            if isinstance(owner, int):
                tables_of.setdefault(owner, []).append(name)
                sizes[owner] = sizes.get(owner, 0) + int(size or 0)

    sites = []
    for blog in blogs:
        site_id = blog["blog_id"]
        if include_ids is not None and site_id not in include_ids:
            continue
        if site_id in exclude_ids or (exclude_main and site_id == MAIN_SITE_ID):
            continue
        if active_only and (blog["archived"] or blog["spam"] or blog["deleted"]):
            continue
        size = sizes.get(site_id, 0)
        large = site_id in large_ids or bool(large_site_bytes and size >= int(large_site_bytes))
        sites.append(dict(blog, id=site_id, bytes=size, large=large, tables=sorted(tables_of.get(site_id, [])),
                          main=site_id == MAIN_SITE_ID))
    return sites


def summarize(sites):
    return {
        "count": len(sites),
        "bytes": sum(s["bytes"] for s in sites),
        "large": [s["id"] for s in sites if s["large"]],
        "ids": [s["id"] for s in sites],
    }
