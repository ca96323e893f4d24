# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content policy: what a migration leaves out of the tables, and which of the target's values it keeps.

Leaving out (the run options ``exclude_transients``, ``exclude_spam_comments``, ``exclude_revisions`` and
``exclude_post_types``) happens at copy time: each table gets a condition on the rows it keeps, which the copy
engine puts into its ``INSERT … SELECT``, into ``mariadb-dump --where`` or into the PyMySQL stream's ``SELECT``,
so the rows left out never reach the migration database.  The meta tables keep the rows whose parent is kept,
through a subquery on the parent table of the same source database (one dump reads both in its snapshot).
A condition ``C`` is used as ``(C) IS NOT TRUE``: a row for which it is NULL is kept, as it must be.

Keeping (``preserve_options`` and ``preserve_sitemeta`` of the target environment) happens after the search-replace,
in the target, on the staged table: the rows of those names get the live table's values, and a name the target has
and the source lacks is added.  Everything is server-side SQL; the values never pass through this process.
"""

from __future__ import annotations

import re

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, qualified, quote_identifier

CONTENT_OPTIONS = ("exclude_transients", "exclude_spam_comments", "exclude_revisions", "exclude_post_types")
PRESERVE_KEYS = ("preserve_options", "preserve_sitemeta")

# WordPress keys post types with sanitize_key() and at most 20 characters (wp_posts.post_type is varchar(20)).
POST_TYPE = re.compile(r"^[a-z0-9_-]{1,20}$")
# option_name LIKE patterns: the underscores escaped, as $wpdb->esc_like() does.  _transient_% also covers
# _transient_timeout_%, _site_transient_% covers _site_transient_timeout_%.
TRANSIENTS = ("'\\_transient\\_%'", "'\\_site\\_transient\\_%'")
SITE_TRANSIENTS = ("'\\_site\\_transient\\_%'",)
REMOVED_COMMENTS = ("spam", "trash")
REVISION = "revision"


def post_types(value, where="exclude_post_types"):
    """Post type names as a sorted list without repeats; a name WordPress could not have is a ConfigError."""
    items = value.split(",") if isinstance(value, str) else value
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise ConfigError("%s must list post type names, e.g. %s=event,tribe_venue; got %r" % (where, where, value))
    names = set()
    for item in items:
        name = item.strip() if isinstance(item, str) else item
        if name == "":
            continue
        if not isinstance(name, str) or not POST_TYPE.match(name):
            raise ConfigError("%s: %r is not a post type name (lower-case letters, digits, _ and -, at most 20)"
                              % (where, item))
        names.add(name)
    return sorted(names)


def preserved_names(settings, key, where):
    """The names an environment's ``preserve_options`` / ``preserve_sitemeta`` lists (a tuple, maybe empty).

    ``where`` names the setting in messages (``wfu_environments.uat``).
    """
    value = (settings or {}).get(key)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) and name.strip() for name in value):
        raise ConfigError("%s.%s must be a list of option names (non-empty strings), e.g. [blog_public, admin_email]; "
                          "got %r" % (where, key, value))
    return tuple(dict.fromkeys(value))


def _excluded_post_types(options):
    types = set(post_types(options.get("exclude_post_types")))
    if options.get("exclude_revisions"):
        types.add(REVISION)
    return sorted(types)


def _in(column, values):
    # Only validated names and our own constants reach here (post_types, REMOVED_COMMENTS).
    return "%s IN (%s)" % (quote_identifier(column), ", ".join("'%s'" % value for value in values))


def _like_any(column, patterns):
    return " OR ".join("%s LIKE %s" % (quote_identifier(column), pattern) for pattern in patterns)


def _kept(condition):
    return "(%s) IS NOT TRUE" % condition


def site_filters(options, database, site_prefix, tables):
    """``{source table: condition on the rows kept}`` for a site's tables (``site_prefix``: ``wp_`` or ``wp_43_``).

    ``database`` is the source database the subqueries of the meta tables read; only tables in ``tables`` get a
    condition, and a meta table only when its parent table is among them.
    """
    present = set(tables)
    excluded = {}

    def add(name, condition):
        if site_prefix + name in present:
            excluded[site_prefix + name] = condition

    if options.get("exclude_transients"):
        add("options", _like_any("option_name", TRANSIENTS))
    if options.get("exclude_spam_comments") and site_prefix + "comments" in present:
        add("comments", _in("comment_approved", REMOVED_COMMENTS))
        add("commentmeta", "%s IN (SELECT %s FROM %s WHERE %s)" % (
            quote_identifier("comment_id"), quote_identifier("comment_ID"),
            qualified(database, site_prefix + "comments"), _in("comment_approved", REMOVED_COMMENTS)))
    types = _excluded_post_types(options)
    if types and site_prefix + "posts" in present:
        parents = "SELECT %s FROM %s WHERE %s" % (quote_identifier("ID"), qualified(database, site_prefix + "posts"),
                                                  _in("post_type", types))
        add("posts", _in("post_type", types))
        add("postmeta", "%s IN (%s)" % (quote_identifier("post_id"), parents))
        add("term_relationships", "%s IN (%s)" % (quote_identifier("object_id"), parents))
    return {table: _kept(condition) for table, condition in excluded.items()}


def network_filters(options, prefix, tables):
    """``{source table: condition on the rows kept}`` for the network tables: site transients of the sitemeta."""
    sitemeta = prefix + "sitemeta"
    if options.get("exclude_transients") and sitemeta in set(tables):
        return {sitemeta: _kept(_like_any("meta_key", SITE_TRANSIENTS))}
    return {}


# What identifies a row of a preserved name, and what is copied from the target's row.
OPTIONS_ROWS = (("option_name",), ("option_value", "autoload"))
SITEMETA_ROWS = (("site_id", "meta_key"), ("meta_value",))


def present_names(conn, database, table, column, names):
    """The ``names`` that ``column`` of ``table`` holds, sorted."""
    if not names:
        return []
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT %s FROM %s WHERE %s IN (%s)"
                    % (quote_identifier(column), qualified(database, table), quote_identifier(column),
                       ", ".join(["%s"] * len(names))), list(names))
        return sorted(row[0] if isinstance(row[0], str) else row[0].decode("utf-8") for row in cur.fetchall())


def preserve_target_values(conn, database, staged, live, names, rows):
    """Give ``staged`` the values ``live`` has for ``names``; return ``(names preserved, rows inserted)``.

    ``rows`` is OPTIONS_ROWS or SITEMETA_ROWS: the key columns (the last one holds the name) and the value columns.
    A row of a name present in both tables gets the live row's values; a live row whose key the staged table lacks
    is inserted; a name the live table lacks keeps the staged (source) value.
    """
    keys, values = rows
    present = present_names(conn, database, live, keys[-1], names)
    if not present:
        return [], 0
    name_column = quote_identifier(keys[-1])
    staged_table, live_table = qualified(database, staged), qualified(database, live)
    marks = ", ".join(["%s"] * len(names))
    # Compared as bytes: the staged table may carry the source's collation, the live one the target's.
    same_key = " AND ".join("BINARY s.%s = BINARY l.%s" % (quote_identifier(c), quote_identifier(c)) for c in keys)
    with conn.cursor() as cur:
        cur.execute("UPDATE %s s JOIN %s l ON %s SET %s WHERE l.%s IN (%s)"
                    % (staged_table, live_table, same_key,
                       ", ".join("s.%s = l.%s" % (quote_identifier(c), quote_identifier(c)) for c in values),
                       name_column, marks), list(names))
        columns = ", ".join(quote_identifier(c) for c in keys + values)
        inserted = cur.execute("INSERT INTO %s (%s) SELECT %s FROM %s l WHERE l.%s IN (%s) AND NOT EXISTS "
                               "(SELECT 1 FROM %s s WHERE %s)"
                               % (staged_table, columns, ", ".join("l.%s" % quote_identifier(c) for c in keys + values),
                                  live_table, name_column, marks, staged_table, same_key), list(names))
    return present, inserted
