# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side locks on a site's tables: one writer per site at a time, across processes and hosts.

While a site (or the network tables) is migrated, the pipeline holds a MariaDB named lock
(``GET_LOCK``) on the target's server and one on the migration database's server, and a sweep
drops a site's tables only while it holds the same lock.  A named lock belongs to its
connection: it goes when the connection goes, so a killed process never leaves one behind, and
every host that talks to the server sees it.

Names: ``wfu:<digest>:site:<N>`` and ``wfu:<digest>:network``, at most 64 characters, where
``<digest>`` is the first 12 hex digits of the SHA-1 of the database's name.  The lock lives on
the database's server, so the name of the database is what tells two databases of one server
apart, and every client names the lock alike, whatever host and port it reaches the server by.
"""

from __future__ import annotations

import hashlib

from ansible_collections.wfu.multisite.plugins.module_utils.db import pymysql
from ansible_collections.wfu.multisite.plugins.module_utils.errors import SITE_IN_USE, MigrationError


def lock_name(database, owner):
    """The lock of site ``owner`` (an int) or of the network tables (``'network'``) in ``database``."""
    digest = hashlib.sha1(database.database.encode("utf-8")).hexdigest()[:12]
    return "wfu:%s:%s" % (digest, "network" if owner == "network" else "site:%d" % int(owner))


def owner_label(owner):
    return "the network tables" if owner == "network" else "site %d" % int(owner)


def holder(conn, name):
    """Who holds lock ``name``: ``connection 42 (wfu@10.0.0.5:50312, connected to wp_uat, busy 12 s)``; None if free."""
    with conn.cursor() as cur:
        cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
        connection_id = cur.fetchone()[0]
        if connection_id is None:
            return None
        cur.execute("SELECT USER, HOST, DB, TIME FROM information_schema.PROCESSLIST WHERE ID = %s",
                    (connection_id,))
        row = cur.fetchone()
    if row is None:
        return "connection %d (its user and host are shown only with the PROCESS privilege)" % connection_id
    user, host, database, seconds = row
    return "connection %d (%s@%s, connected to %s, for %s s)" % (
        connection_id, user, host, database or "no database", seconds)


def acquire(conn, database, owner, wait):
    """Take the lock of ``owner`` in ``database`` on ``conn``, waiting up to ``wait`` seconds; return its name.

    Raises MigrationError (systemic, reason ``site_in_use``) naming the holder when it stays taken.
    """
    name = lock_name(database, owner)
    wait = max(0, int(wait))
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, wait))
        if cur.fetchone()[0] == 1:
            return name
    who = holder(conn, name) or "a connection that has just let go of it"
    raise MigrationError("%s is in use in %s: %s holds the lock %s (waited %d s)"
                         % (owner_label(owner), database, who, name, wait), reason=SITE_IN_USE, database=database)


def try_acquire(conn, database, owner, wait=0):
    """``(name, None)`` when the lock was free (or became free within ``wait`` seconds) and is now held on
    ``conn``, else ``(None, holder)``."""
    name = lock_name(database, owner)
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, max(0, int(wait))))
        if cur.fetchone()[0] == 1:
            return name, None
    return None, holder(conn, name) or "a connection that has just let go of it"


def release(conn, name):
    with conn.cursor() as cur:
        cur.execute("SELECT RELEASE_LOCK(%s)", (name,))


def end_sessions_holding(conn, names, wait):
    """End the sessions that hold any of the named locks ``names`` and wait until they are gone; return notes.

    A loader (``mariadb`` reading a dump) killed with its call may leave its session on the server with one
    statement still to run; its ``GET_LOCK`` at connect (copy_engine ``load_lock``) tells it apart.  The session is
    killed (``KILL CONNECTION``, allowed on one's own sessions) and the lock taken with a wait of ``wait`` seconds,
    which succeeds once the server has ended the session: none of its statements runs after this returns.
    """
    notes = []
    with conn.cursor() as cur:
        for name in names:
            cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
            session = cur.fetchone()[0]
            if session is None:
                continue
            try:
                cur.execute("KILL CONNECTION %d" % int(session))
            except pymysql.err.MySQLError:
                pass  # it ended meanwhile (unknown thread), or is another user's: the wait below tells
            cur.execute("SELECT GET_LOCK(%s, %s)", (name, max(0, int(wait))))
            if cur.fetchone()[0] == 1:
                cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
            else:
                notes.append("a loader's session (connection %d) was still there after %d s" % (int(session), wait))
    return notes
