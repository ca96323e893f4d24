# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database connections shared by every module: one argument spec, one connect().

A database is described by a mapping (the ``db`` of an environment in
``wfu_environments``, or ``wfu_migration_db``)::

    {host, port, user, password, database, config_file, unix_socket, ssl}

``config_file`` is a ``[client]`` option file (as written for AWX credentials);
its values fill what the mapping leaves out.  Passwords never reach an argv:
PyMySQL gets them in-process and the command-line clients read them from a
0600 option file passed as ``--defaults-extra-file`` (see ``client_option_file``).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import tempfile

try:
    import pymysql
    import pymysql.cursors
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without the driver
    pymysql = None
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = exc

DB_OPTION_KEYS = ("host", "port", "user", "password", "database", "config_file", "unix_socket", "ssl")

IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


def db_suboptions():
    """Suboptions of a database-connection option, for module argument specs."""
    return dict(
        host=dict(type="str"),
        port=dict(type="int"),
        user=dict(type="str"),
        password=dict(type="str", no_log=True),
        database=dict(type="str"),
        config_file=dict(type="path"),
        unix_socket=dict(type="path"),
        ssl=dict(type="dict", options=dict(
            ca=dict(type="path"),
            cert=dict(type="path"),
            key=dict(type="path"),
            verify_server_cert=dict(type="bool", default=True),
        )),
    )


def db_option(required=False):
    """One database-connection option for an argument spec."""
    return dict(type="dict", required=required, options=db_suboptions())


class ConfigError(ValueError):
    """Bad connection settings or identifiers given by the user."""


def validate_identifier(name, what="identifier"):
    """Return ``name`` if it is a safe MariaDB identifier, else raise ConfigError."""
    if not isinstance(name, str) or not IDENTIFIER_RE.match(name):
        raise ConfigError("invalid %s %r: use 1-64 characters of letters, digits, '_' or '$'" % (what, name))
    return name


def quote_identifier(name):
    """Backquote one identifier (table, database or column name)."""
    return "`" + str(name).replace("`", "``") + "`"


def qualified(database, table):
    return quote_identifier(database) + "." + quote_identifier(table)


def _read_option_file(path):
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, strict=False)
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise ConfigError("config_file %s does not exist" % path)
    with open(path, encoding="utf-8") as handle:
        parser.read_file(handle)
    values = {}
    for section in ("client", "mysql", "mariadb", "client-mariadb"):
        if parser.has_section(section):
            for key, value in parser.items(section):
                if value is not None:
                    values[key.replace("-", "_")] = value.strip().strip('"').strip("'")
    return values


def resolve(params):
    """Merge a connection mapping with its option file; return a clean dict."""
    params = dict(params or {})
    resolved = {}
    if params.get("config_file"):
        from_file = _read_option_file(params["config_file"])
        for key, alias in (("host", "host"), ("port", "port"), ("user", "user"), ("password", "password"),
                           ("database", "database"), ("unix_socket", "socket"), ("ssl_ca", "ssl_ca")):
            if from_file.get(alias):
                resolved[key] = from_file[alias]
        resolved["config_file"] = os.path.expanduser(params["config_file"])
    for key in DB_OPTION_KEYS:
        if params.get(key) not in (None, ""):
            resolved[key] = params[key]
    if "port" in resolved:
        try:
            resolved["port"] = int(resolved["port"])
        except (TypeError, ValueError):
            raise ConfigError("port must be an integer, got %r" % resolved["port"])
    if not resolved.get("unix_socket"):
        resolved.setdefault("host", "127.0.0.1")
        resolved.setdefault("port", 3306)
    if resolved.get("database"):
        validate_identifier(resolved["database"], "database name")
    return resolved


def describe(params):
    """A printable name for a database, never including the password."""
    params = resolve(params)
    where = params.get("unix_socket") or "%s:%s" % (params.get("host"), params.get("port"))
    return "%s/%s" % (where, params.get("database", ""))


def same_server(a, b):
    """True when two connection mappings point at the same server (so INSERT…SELECT can cross databases)."""
    a, b = resolve(a), resolve(b)
    if a.get("unix_socket") or b.get("unix_socket"):
        return a.get("unix_socket") == b.get("unix_socket") and a.get("user") == b.get("user")
    local = {"127.0.0.1", "localhost", "::1"}
    host_a = "localhost" if a.get("host") in local else a.get("host")
    host_b = "localhost" if b.get("host") in local else b.get("host")
    return (host_a, a.get("port"), a.get("user")) == (host_b, b.get("port"), b.get("user"))


def same_database(a, b):
    """True when two connection mappings name the same database on the same server."""
    return same_server(a, b) and resolve(a).get("database") == resolve(b).get("database")


if HAS_PYMYSQL:
    class _Connection(pymysql.connections.Connection):
        """A PyMySQL connection that shares one TLS context for the driver's "preferred TLS" mode.

        Without explicit ssl settings PyMySQL builds a fresh context, loading the system CA store,
        for every connection (tens of milliseconds each, several connections per site).
        """

        _preferred_context = None

        def _create_ssl_ctx(self, sslp):
            if sslp:
                return super()._create_ssl_ctx(sslp)
            if _Connection._preferred_context is None:
                _Connection._preferred_context = super()._create_ssl_ctx(sslp)
            return _Connection._preferred_context


def connect(params, database=None, autocommit=True, connect_timeout=10, read_timeout=None, streaming=False):
    """Open a PyMySQL connection (utf8mb4) for a connection mapping."""
    if not HAS_PYMYSQL:
        raise ConfigError("PyMySQL is required on the host that talks to the databases: pip install PyMySQL")
    params = resolve(params)
    kwargs = dict(
        user=params.get("user"),
        password=params.get("password", ""),
        database=database if database is not None else params.get("database"),
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        write_timeout=read_timeout,
        local_infile=False,
    )
    if params.get("unix_socket"):
        kwargs["unix_socket"] = params["unix_socket"]
    else:
        kwargs["host"] = params["host"]
        kwargs["port"] = params["port"]
    if params.get("ssl"):
        ssl = params["ssl"]
        kwargs["ssl"] = {k: v for k, v in (("ca", ssl.get("ca")), ("cert", ssl.get("cert")), ("key", ssl.get("key"))) if v}
        kwargs["ssl_verify_cert"] = ssl.get("verify_server_cert", True)
    if streaming:
        kwargs["cursorclass"] = pymysql.cursors.SSCursor
    conn = _Connection(**kwargs)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
    return conn


@contextlib.contextmanager
def client_option_file(params, directory=None):
    """Yield the path of a 0600 ``[client]`` option file for mariadb/mariadb-dump; remove it afterwards.

    Pass it as the *first* argument: ``--defaults-extra-file=<path>``.
    """
    params = resolve(params)
    lines = ["[client]"]
    for key, option in (("host", "host"), ("port", "port"), ("user", "user"), ("password", "password"),
                        ("unix_socket", "socket")):
        if params.get(key) not in (None, ""):
            value = str(params[key]).replace("\\", "\\\\").replace('"', '\\"')
            lines.append('%s="%s"' % (option, value))
    if params.get("unix_socket"):
        lines.append("protocol=SOCKET")
    else:
        lines.append("protocol=TCP")
    ssl = params.get("ssl") or {}
    for key, option in (("ca", "ssl-ca"), ("cert", "ssl-cert"), ("key", "ssl-key")):
        if ssl.get(key):
            lines.append("%s=%s" % (option, ssl[key]))
    lines.append("default-character-set=utf8mb4")
    fd, path = tempfile.mkstemp(prefix="wfu-client-", suffix=".cnf", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
