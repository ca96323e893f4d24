# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What went wrong, and whether it is the site's problem or everybody's.

Every failure is put in one of two classes:

``systemic``
    the environment is broken (a server is down or unreachable, credentials or
    privileges are wrong, a disk is full, a server is read-only or shutting
    down, a client binary is missing).  The next site would fail the same way,
    so the run should stop (design invariant 4).
``site``
    something about this site's tables or data (a missing table, a syntax or
    data error, a failed verification, a timeout).  Other sites may go on.

Modules put ``failure_result(exc, ...)`` into ``fail_json``; it never carries a
password.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess

try:
    import pymysql
except ImportError:  # pragma: no cover - db.py reports the missing driver
    pymysql = None

CLIENT_PROGRAMS = frozenset(("mariadb", "mariadb-dump", "mysql", "mysqldump"))

SYSTEMIC = "systemic"
SITE = "site"

# Why a failure happened; every reason but the last three is systemic.  ENVIRONMENT is the systemic
# reason of a MigrationError raised as systemic without a more precise one.
CONNECTION = "connection"
SERVER_NOT_ANSWERING = "server_not_answering"
SITE_IN_USE = "site_in_use"
INTERRUPTED = "interrupted"
ACCESS = "access"
DISK_FULL = "disk_full"
READ_ONLY = "read_only"
SHUTDOWN = "shutdown"
RESOURCES = "resources"
MISSING_DATABASE = "missing_database"
MISSING_BINARY = "missing_binary"
CONFIGURATION = "configuration"
ENVIRONMENT = "environment"
TIMEOUT = "timeout"
VERIFICATION = "verification"
SITE_DATA = "site_data"

SYSTEMIC_REASONS = frozenset((CONNECTION, SERVER_NOT_ANSWERING, SITE_IN_USE, INTERRUPTED, ACCESS, DISK_FULL, READ_ONLY, SHUTDOWN, RESOURCES, MISSING_DATABASE,
                              MISSING_BINARY, CONFIGURATION, ENVIRONMENT))

HINTS = {
    CONNECTION: "Check that the database server is running and reachable from the host that runs the migration "
                "(host, port, socket, firewall, TLS settings), then resume the migration.",
    SERVER_NOT_ANSWERING: "The server accepts connections but does not reply (stopped, hung or overloaded); "
                          "check it and its host, then resume the migration.",
    SITE_IN_USE: "Another migration is working on this site right now (the connection named in the message). "
                 "Wait for it to finish; if it is a leftover, end that connection on the server (KILL <id>), then "
                 "retry.",
    INTERRUPTED: "The run that started this call is gone, so the call stopped and undid its work; resume the "
                 "migration.",
    ACCESS: "Check the user, password and privileges configured for this database (wfu_environments or "
            "wfu_migration_db), then resume the migration.",
    DISK_FULL: "Free disk space on the database server (or in work_dir on the migration host), then resume "
               "the migration.",
    READ_ONLY: "The server refuses writes (read_only is set, it is a replica, or the transaction is read-only); "
               "point the migration at a writable primary, then resume.",
    SHUTDOWN: "The database server is shutting down or restarting; wait until it is back, then resume the "
              "migration.",
    RESOURCES: "The database server is out of connections or memory; wait for load to drop or raise its limits "
               "(max_connections, max_user_connections), then resume the migration.",
    MISSING_DATABASE: "The database does not exist on that server; check the database name in the settings or "
                      "create the database, then resume the migration.",
    MISSING_BINARY: "Install the MariaDB client tools (mariadb-dump and mariadb, or mysqldump and mysql) on the "
                    "host that runs the migration, or copy with method=pymysql.",
    CONFIGURATION: "Fix the setting or path named in the message, then resume the migration.",
    ENVIRONMENT: "Check the database servers and the migration host named in the message, then resume the "
                 "migration.",
    TIMEOUT: "The site took longer than it was allowed; raise site_timeout (or list it in large_sites to get "
             "large_site_timeout_factor times more), then retry it with retry_failed=true.",
    VERIFICATION: "The copy did not arrive complete; nothing was swapped in. Check the target's disk space and "
                  "max_allowed_packet, and whether the source changed during the copy, then retry the site "
                  "with retry_failed=true.",
    SITE_DATA: "Look at the error for this site's table; fix the table or its data in the source, then retry the "
               "site with retry_failed=true, or leave it out with exclude_sites.",
}

# MariaDB/MySQL server and client error codes whose failure is the environment's, not the site's.
_REASON_BY_CODE = {
    # client side: no connection, or it broke
    2001: CONNECTION, 2002: CONNECTION, 2003: CONNECTION, 2005: CONNECTION, 2006: CONNECTION, 2009: CONNECTION,
    2012: CONNECTION, 2013: CONNECTION, 2026: CONNECTION, 2047: CONNECTION, 2055: CONNECTION,
    # server side: the connection was cut or broke while talking
    1152: CONNECTION, 1158: CONNECTION, 1159: CONNECTION, 1160: CONNECTION, 1161: CONNECTION, 1184: CONNECTION,
    1927: CONNECTION, 4031: CONNECTION,
    # who we are and what we may do
    1044: ACCESS, 1045: ACCESS, 1129: ACCESS, 1130: ACCESS, 1142: ACCESS, 1143: ACCESS, 1227: ACCESS,
    1251: ACCESS, 1370: ACCESS, 1698: ACCESS, 2059: ACCESS, 2061: ACCESS,
    # the server's disk: full, or failing to write
    3: DISK_FULL, 1021: DISK_FULL, 1026: DISK_FULL, 1114: DISK_FULL,
    # writes refused
    1036: READ_ONLY, 1290: READ_ONLY, 1792: READ_ONLY, 1836: READ_ONLY,
    # the server is going away
    1053: SHUTDOWN, 1077: SHUTDOWN, 1078: SHUTDOWN, 1079: SHUTDOWN, 1080: SHUTDOWN,
    # limits of the server as a whole
    1037: RESOURCES, 1040: RESOURCES, 1041: RESOURCES, 1135: RESOURCES, 1203: RESOURCES, 1226: RESOURCES,
    # the configured database is not there
    1049: MISSING_DATABASE,
}

# Errors of the operating system on the migration host that no other site would escape either.
_REASON_BY_ERRNO = {
    errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EROFS: READ_ONLY,
    errno.ECONNREFUSED: CONNECTION, errno.ECONNRESET: CONNECTION, errno.ECONNABORTED: CONNECTION,
    errno.ETIMEDOUT: CONNECTION, errno.EHOSTUNREACH: CONNECTION, errno.ENETUNREACH: CONNECTION,
    errno.EPIPE: CONNECTION, errno.EACCES: ACCESS, errno.EPERM: ACCESS,
    errno.ENOMEM: RESOURCES, errno.EMFILE: RESOURCES, errno.ENFILE: RESOURCES,
}

# Error codes as the command-line tools print them:
#   ERROR 2003 (HY000): Can't connect ...            (mariadb / mysql)
#   ERROR 1146 (42S02) at line 12: Table ...         (mariadb / mysql, from a script)
#   mariadb-dump: Got error: 1045: "Access denied ..." when trying to connect
#   mysqldump: Couldn't execute 'SHOW ...': Table ... doesn't exist (1146)
#   mysqldump: Error 2013: Lost connection to server during query when dumping table ...
_CODE_PATTERNS = (
    re.compile(r"\bERROR (\d{1,5})\b"),
    re.compile(r"\bGot error: (\d{1,5})\b"),
    re.compile(r"\bError:? (\d{4,5})\b"),
    re.compile(r"\((\d{4,5})\)\s*$", re.MULTILINE),
)

_DISK_FULL_TEXT = re.compile(r"no space left on device|disk full|\b(?:errcode|errno|os errno|error):? 28\b",
                             re.IGNORECASE)
# Used only for messages that carry no error code (plain OS or driver text).
_REASON_BY_TEXT = (
    (re.compile(r"can't connect|cannot connect|connection refused|lost connection|server has gone away|"
                r"connection reset|broken pipe|errno 32\b|timed out|unknown (?:mysql |mariadb )?server host", re.IGNORECASE),
     CONNECTION),
    (re.compile(r"access denied", re.IGNORECASE), ACCESS),
    (re.compile(r"read[- ]only", re.IGNORECASE), READ_ONLY),
    (re.compile(r"shutdown in progress", re.IGNORECASE), SHUTDOWN),
    (re.compile(r"too many connections|out of memory", re.IGNORECASE), RESOURCES),
)

# ``password=…``, ``db_password: "…"``, ``aws_secret: …``; "using password: YES)" in MariaDB's access-denied
# message holds no secret and helps, so it stays.
_PASSWORD_SETTING = re.compile(
    r"""(["']?\w*(?:password|passwd|pwd|secret)\w*["']?\s*[=:]\s*)(?!YES\)|NO\))("[^"]*"|'[^']*'|[^\s,;&})\]]+)""",
    re.IGNORECASE)
_PASSWORD_CLAUSE = re.compile(
    r"""(\bIDENTIFIED\s+(?:VIA|WITH)\s+\w+\s+(?:BY|USING|AS)\s+|\bIDENTIFIED\s+BY\s+(?:PASSWORD\s+)?|"""
    r"""\bPASSWORD\s*\(\s*)('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")""", re.IGNORECASE)
# ``scheme://user:password@host``
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(?=@)", re.IGNORECASE)
REDACTED = "********"


class ConfigError(ValueError):
    """Bad connection settings or identifiers given by the user."""


class MigrationError(Exception):
    """A failure with the context a person needs: which site, which table, which phase, and what to do next.

    ``failure_class`` is ``systemic`` or ``site`` (see the module docstring);
    ``reason`` says more precisely why (``connection``, ``access``, ``disk_full``,
    ``timeout``, ``verification``, ...); ``error_code`` is the server's or the
    client tool's error number when there was one; ``database`` the ``db.Database``
    the failure happened on, when one is known.
    """

    def __init__(self, message, site_id=None, table=None, phase=None, failure_class=None, hint=None,
                 error_code=None, reason=None, database=None):
        super().__init__(message)
        self.message = str(message)
        self.database = database
        self.site_id = site_id
        self.table = table
        self.phase = phase
        if reason is None:
            reason = SITE_DATA if failure_class in (None, SITE) else ENVIRONMENT
        self.reason = reason
        self.failure_class = failure_class or (SYSTEMIC if reason in SYSTEMIC_REASONS else SITE)
        self.hint = hint or HINTS.get(reason, HINTS[SITE_DATA])
        self.error_code = error_code

    @classmethod
    def wrap(cls, exc, site_id=None, table=None, phase=None, hint=None):
        """A MigrationError for any exception; a MigrationError keeps its own context and gains what it lacked."""
        if isinstance(exc, MigrationError):
            exc.site_id = exc.site_id if exc.site_id is not None else site_id
            exc.table = exc.table or table
            exc.phase = exc.phase or phase
            exc.hint = hint or exc.hint
            return exc
        reason = failure_reason(exc)
        # db.Database.connect() marks the driver's errors with the database of the connection.
        database = getattr(exc, "wfu_database", None)
        text = exception_text(exc)
        if database is not None:
            text = "%s: %s" % (database, text)
        wrapped = cls(text, site_id=site_id, table=table, phase=phase, hint=hint, error_code=error_code(exc),
                      reason=reason, database=database)
        wrapped.__cause__ = exc
        return wrapped

    def where(self):
        """``site 12, table wp_12_posts, phase copy`` (only the parts that are known)."""
        parts = []
        if self.site_id is not None:
            parts.append("site %s" % self.site_id)
        if self.table:
            parts.append("table %s" % self.table)
        if self.phase:
            parts.append("phase %s" % self.phase)
        return ", ".join(parts)

    def __str__(self):
        where = self.where()
        head = "%s: %s" % (where[:1].upper() + where[1:], self.message) if where else self.message
        code = " (error %s)" % self.error_code if self.error_code is not None else ""
        kind = ("a systemic failure: other sites would fail the same way" if self.failure_class == SYSTEMIC
                else "a failure of this site only")
        return "%s%s. This is %s. %s" % (head.rstrip(". "), code, kind, self.hint)


def error_code(exc):
    """The MariaDB/MySQL error number carried by an exception, or None."""
    if isinstance(exc, MigrationError):
        return exc.error_code
    if pymysql is not None and isinstance(exc, pymysql.err.MySQLError):
        if exc.args and isinstance(exc.args[0], int) and exc.args[0] > 0:
            return exc.args[0]
        return None
    return None


def message_error_code(text):
    """The first error number printed by mariadb / mariadb-dump (or mysql / mysqldump) in ``text``, or None."""
    for pattern in _CODE_PATTERNS:
        match = pattern.search(text or "")
        if match:
            return int(match.group(1))
    return None


def message_reason(text):
    """Why a command-line tool failed, from its stderr: a systemic reason, or ``site_data``."""
    text = text or ""
    if _DISK_FULL_TEXT.search(text):
        return DISK_FULL
    code = message_error_code(text)
    if code is not None:
        return _REASON_BY_CODE.get(code, SITE_DATA)
    for pattern, reason in _REASON_BY_TEXT:
        if pattern.search(text):
            return reason
    return SITE_DATA


def failure_reason(exc):
    """Why ``exc`` happened: one of the reason names of this module."""
    if isinstance(exc, MigrationError):
        return exc.reason
    if isinstance(exc, subprocess.TimeoutExpired):
        return TIMEOUT
    if isinstance(exc, ConfigError):
        return CONFIGURATION
    if pymysql is not None and isinstance(exc, pymysql.err.MySQLError):
        if isinstance(exc, pymysql.err.InterfaceError):
            # PyMySQL raises InterfaceError when the connection is already closed.
            return CONNECTION
        text = exception_text(exc)
        if _DISK_FULL_TEXT.search(text):
            return DISK_FULL
        code = error_code(exc)
        if code in (2003, 2013) and "timed out" in text:
            # The socket's timeout ran out: the server took the connection but never answered.
            return SERVER_NOT_ANSWERING
        return _REASON_BY_CODE.get(code, SITE_DATA) if code is not None else message_reason(text)
    if isinstance(exc, FileNotFoundError):
        # subprocess names the program it could not start in ``filename``.
        program = os.path.basename(str(exc.filename or ""))
        return MISSING_BINARY if program in CLIENT_PROGRAMS else CONFIGURATION
    if isinstance(exc, OSError):
        if exc.errno in _REASON_BY_ERRNO:
            return _REASON_BY_ERRNO[exc.errno]
        return message_reason(str(exc))
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return failure_reason(cause)
    return SITE_DATA


def classify_error(exc):
    """``systemic`` when the environment failed (see the module docstring), else ``site``."""
    if isinstance(exc, MigrationError):
        return exc.failure_class
    return SYSTEMIC if failure_reason(exc) in SYSTEMIC_REASONS else SITE


def redact(text, secrets=()):
    """``text`` without passwords: ``password=…`` settings, ``IDENTIFIED BY '…'`` clauses, credentials in URLs
    and the given secrets.  None stays None."""
    if text is None:
        return None
    text = str(text)
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), REDACTED)
    text = _PASSWORD_SETTING.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PASSWORD_CLAUSE.sub(lambda m: m.group(1) + "'" + REDACTED + "'", text)
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED, text)


def failure_result(exc, phase=None, site_id=None, table=None, hint=None, secrets=()):
    """The keys a module passes to ``fail_json`` for ``exc``: msg, failure_class, reason, error_code, phase,
    site_id, table, hint, database.  Context already on a MigrationError wins over the arguments."""
    error = MigrationError.wrap(exc, site_id=site_id, table=table, phase=phase, hint=hint)
    return {
        "database": error.database.identity() if error.database is not None else None,
        "msg": redact(str(error), secrets),
        "failure_class": error.failure_class,
        "reason": error.reason,
        "error_code": error.error_code,
        "phase": error.phase,
        "site_id": error.site_id,
        "table": error.table,
        "hint": redact(error.hint, secrets),
    }


def exception_text(exc):
    """The message of ``exc`` without the driver's error number."""
    if pymysql is not None and isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return str(exc.args[1])
    text = str(exc)
    return text if text else type(exc).__name__
