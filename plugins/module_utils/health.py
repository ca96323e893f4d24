# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is each database answering?  One bounded probe per database, each named, for the run policy."""

from __future__ import annotations

import contextlib

from ansible_collections.wfu.multisite.plugins.module_utils.db import Database
from ansible_collections.wfu.multisite.plugins.module_utils.errors import failure_result


def probe(database, timeout):
    """``{"ok": True}`` when ``database`` (a ``db.Database``) answers ``SELECT 1`` within ``timeout`` seconds, else
    ``{"ok": False, "msg", "failure_class", "reason"}`` (the password never appears)."""
    try:
        with contextlib.closing(database.connect(timeout=timeout, connect_timeout=timeout)) as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except Exception as exc:  # pylint: disable=broad-except
        failure = failure_result(exc, phase="health", secrets=[database.password])
        return {"ok": False, "msg": failure["msg"], "failure_class": failure["failure_class"],
                "reason": failure.get("reason")}
    return {"ok": True}


def check_databases(databases, timeout=10):
    """Probe each of ``databases`` (mappings with ``role``, optional ``env`` and the connection settings)."""
    results = {}
    for entry in databases:
        settings = {key: value for key, value in entry.items() if key not in ("role", "env")}
        try:
            database = Database.from_params(settings, role=entry["role"], env=entry.get("env"))
        except Exception as exc:  # pylint: disable=broad-except
            # An option file that cannot be read: the database cannot be reached either.
            unnamed = Database(role=entry["role"], env=entry.get("env"), host=settings.get("host"),
                               port=settings.get("port"), socket=settings.get("unix_socket"),
                               database=settings.get("database"))
            failure = failure_result(exc, phase="health", secrets=[settings.get("password")])
            results[str(unnamed)] = {"ok": False, "msg": failure["msg"], "failure_class": failure["failure_class"],
                                     "reason": failure.get("reason")}
            continue
        # Keyed by str(database): the target database of uat (127.0.0.1:3307/wp_uat).
        results[str(database)] = probe(database, timeout)
    return results
