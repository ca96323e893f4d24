# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is each database answering?  One bounded probe per database, each named, for the run policy."""

from __future__ import annotations

import contextlib

from ansible_collections.wfu.multisite.plugins.module_utils.db import connect, describe
from ansible_collections.wfu.multisite.plugins.module_utils.errors import failure_result


def database_label(role, env_name, settings):
    """``the target database of uat (127.0.0.1:3307/wp_uat)``: which database, in words a user recognises."""
    where = describe(settings)
    if role == "migration":
        return "the migration database (%s)" % where
    return "the %s database of %s (%s)" % (role, env_name, where)


def probe(settings, timeout):
    """``{"ok": True}`` when the server answers ``SELECT 1`` on the database within ``timeout`` seconds, else
    ``{"ok": False, "msg", "failure_class", "reason"}`` (the password never appears)."""
    try:
        with contextlib.closing(connect(settings, connect_timeout=timeout, read_timeout=timeout)) as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except Exception as exc:  # pylint: disable=broad-except
        failure = failure_result(exc, phase="health", secrets=[settings.get("password")])
        return {"ok": False, "msg": failure["msg"], "failure_class": failure["failure_class"],
                "reason": failure.get("reason")}
    return {"ok": True}


def check_databases(databases, timeout=10):
    """Probe each of ``databases`` (mappings with ``role``, optional ``env`` and the connection settings)."""
    results = {}
    for entry in databases:
        settings = {key: value for key, value in entry.items() if key not in ("role", "env")}
        results[database_label(entry["role"], entry.get("env"), settings)] = probe(settings, timeout)
    return results
