# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database connections shared by every module: one argument spec, one ``Database`` value, one connect().

A database is described by a mapping (the ``db`` of an environment in
``wfu_environments``, or ``wfu_migration_db``)::

    {host, port, user, password, database, config_file, unix_socket, ssl}

``config_file`` is a ``[client]`` option file (as written for AWX credentials);
its values fill what the mapping leaves out.  ``Database.from_params`` resolves
such a mapping once into an immutable value that also knows its part in the
migration (``the target database of uat``) so that every message can say which
database failed.

Every connection is bounded in time: the TCP connect and the login by
``CONNECT_TIMEOUT``, every statement by a read/write timeout (from the caller's
``Deadline`` when it has one).  Passwords never reach an argv: PyMySQL gets them
in-process and the command-line clients read them from an anonymous in-memory
file (``Database.client_options``), which cannot outlive the process.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import math
import os
import re

try:
    import pymysql
    import pymysql.cursors
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without the driver
    pymysql = None
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = exc

from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    ACCESS, SERVER_NOT_ANSWERING, ConfigError, MigrationError, error_code, exception_text, failure_reason)

# Seconds for the TCP connect and the login handshake of one connection.
CONNECT_TIMEOUT = 10
# Seconds one statement may keep a socket silent when the caller has no deadline of its own.
DEFAULT_STATEMENT_TIMEOUT = 300

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


def as_text(value):
    """A name or type as the server sent it: PyMySQL gives ``bytes`` for some information_schema and SHOW columns."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


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


@dataclasses.dataclass(frozen=True)
class Database:
    """Resolved connection settings of one database and its part in the migration; the password stays out of repr.

    ``role`` is ``source``, ``target`` or ``migration`` (or None when the caller does not say), ``env`` the
    environment's name.  ``str(database)`` reads ``the target database of uat (127.0.0.1:3307/wp_uat)``.
    """

    role: str | None = None
    env: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    socket: str | None = None
    database: str | None = None
    ssl: tuple = ()
    password: str = dataclasses.field(default="", repr=False)

    @classmethod
    def from_params(cls, params, role=None, env=None):
        """The Database of a connection mapping (its option file read once)."""
        resolved = resolve(params)
        ssl = resolved.get("ssl") or {}
        if resolved.get("ssl_ca") and not ssl.get("ca"):
            ssl = dict(ssl, ca=resolved["ssl_ca"])
        return cls(role=role, env=env, host=resolved.get("host"), port=resolved.get("port"), user=resolved.get("user"),
                   socket=resolved.get("unix_socket"), database=resolved.get("database"),
                   ssl=tuple(sorted((key, value) for key, value in ssl.items() if value is not None)),
                   password=str(resolved.get("password") or ""))

    def playing(self, role, env=None):
        """The same database in another part of the migration."""
        return dataclasses.replace(self, role=role, env=env if env is not None else self.env)

    def on(self, database):
        """Another database on the same server, reached the same way."""
        return dataclasses.replace(self, database=validate_identifier(database, "database name"))

    # -- words for messages ------------------------------------------------------------------------------------------
    def where(self):
        """``127.0.0.1:3307/wp_uat`` (or ``/run/mysqld.sock/wp_uat``)."""
        return "%s/%s" % (self.server(), self.database or "")

    def server(self):
        return self.socket or "%s:%s" % (self.host, self.port)

    def label(self):
        """``the target database of uat``, ``the migration database``."""
        if self.role == "migration":
            return "the migration database"
        if self.role == "state":
            return "the state database"
        if self.role and self.env:
            return "the %s database of %s" % (self.role, self.env)
        if self.role:
            return "the %s database" % self.role
        return "the database of %s" % self.env if self.env else "the database"

    def settings_name(self):
        """Where the user configured this database."""
        if self.role == "migration":
            return "wfu_migration_db"
        if self.role == "state":
            return "wfu_state_db (or wfu_migration_db)"
        return "wfu_environments.%s.db" % self.env if self.env else "the db settings"

    def __str__(self):
        return "%s (%s)" % (self.label(), self.where())

    def identity(self):
        """What a result may say about this database (never the password)."""
        return {"role": self.role, "env": self.env, "host": self.host, "port": self.port, "socket": self.socket,
                "database": self.database, "user": self.user}

    # -- comparisons -------------------------------------------------------------------------------------------------
    def same_server(self, other):
        """True when both are reached on one server as one user (so INSERT…SELECT can cross databases)."""
        if self.socket or other.socket:
            return (self.socket, self.user) == (other.socket, other.user)
        local = {"127.0.0.1", "localhost", "::1"}

        def host(value):
            return "localhost" if value in local else value

        return (host(self.host), self.port, self.user) == (host(other.host), other.port, other.user)

    def same_database(self, other):
        return self.same_server(other) and self.database == other.database

    # -- connections -------------------------------------------------------------------------------------------------
    def connect(self, database=None, autocommit=True, streaming=False, timeout=None, deadline=None,
                connect_timeout=CONNECT_TIMEOUT):
        """A PyMySQL connection (utf8mb4), every wait on it bounded.

        ``timeout`` bounds each statement (seconds of silence on the socket); without it the ``deadline``
        (a ``deadline.Deadline``) decides, and without either ``DEFAULT_STATEMENT_TIMEOUT``.  A connection
        made under a deadline has its running statement killed on the server when the deadline passes.
        Failures to connect raise MigrationError naming this database.
        """
        if not HAS_PYMYSQL:
            raise ConfigError("PyMySQL is required on the host that talks to the databases: pip install PyMySQL")
        if timeout is None:
            timeout = deadline.statement_timeout() if deadline is not None else DEFAULT_STATEMENT_TIMEOUT
        if timeout is not None:
            connect_timeout = max(1, min(connect_timeout, math.ceil(timeout)))
        kwargs = dict(user=self.user, password=self.password,
                      database=database if database is not None else self.database, charset="utf8mb4",
                      autocommit=autocommit, connect_timeout=connect_timeout,
                      # The login handshake is bounded like the connect; statements get ``timeout`` below.
                      read_timeout=connect_timeout, write_timeout=connect_timeout, local_infile=False,
                      defer_connect=True)
        if self.socket:
            kwargs["unix_socket"] = self.socket
        else:
            kwargs.update(host=self.host, port=self.port)
        ssl = dict(self.ssl)
        if ssl:
            kwargs["ssl"] = {key: ssl[key] for key in ("ca", "cert", "key") if ssl.get(key)}
            kwargs["ssl_verify_cert"] = ssl.get("verify_server_cert", True)
        if streaming:
            kwargs["cursorclass"] = pymysql.cursors.SSCursor
        conn = _Connection(**kwargs)
        conn.wfu_database = self
        if deadline is not None:
            deadline.using(self)
        try:
            conn.connect()
        except MigrationError:
            raise  # the caller's deadline, raised while waiting
        except Exception as exc:
            raise self._connect_failure(exc, connect_timeout) from exc
        conn.set_statement_timeout(timeout)
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            if timeout is not None:
                # The server gives up waiting for a table's metadata lock when the client would stop listening.
                cur.execute("SET SESSION lock_wait_timeout = %d" % max(1, math.ceil(timeout)))
        if deadline is not None:
            deadline.watch(self, conn)
        return conn

    def _connect_failure(self, exc, seconds):
        reason = failure_reason(exc)
        text = exception_text(exc)
        hint = None
        if reason == SERVER_NOT_ANSWERING:
            message = ("%s did not answer within %d s: %s accepts connections but does not reply (stopped, hung "
                       "or overloaded)" % (self, seconds, self.server()))
        elif reason == ACCESS:
            message = "%s refused the login of user %r: %s" % (self, self.user, text)
            hint = ("Check the user, password and privileges in %s (or its config_file), then resume the migration."
                    % self.settings_name())
        else:
            message = "cannot connect to %s: %s" % (self, text)
        return MigrationError(message, reason=reason, error_code=error_code(exc), hint=hint, database=self)

    @contextlib.contextmanager
    def client_options(self):
        """Yield ``(argument, fd)`` for mariadb / mariadb-dump: pass ``argument`` as the *first* argument and ``fd``
        in ``pass_fds``.

        The ``[client]`` settings, password included, live in an anonymous in-memory file (memfd, 0600) that
        the client opens as ``/dev/fd/N``: nothing is written to disk, and it is gone with the process,
        however that ends.
        """
        lines = ["[client]"]
        for option, value in (("host", self.host), ("port", self.port), ("user", self.user),
                              ("password", self.password), ("socket", self.socket)):
            if value not in (None, ""):
                lines.append('%s="%s"' % (option, str(value).replace("\\", "\\\\").replace('"', '\\"')))
        lines.append("protocol=SOCKET" if self.socket else "protocol=TCP")
        ssl = dict(self.ssl)
        for key, option in (("ca", "ssl-ca"), ("cert", "ssl-cert"), ("key", "ssl-key")):
            if ssl.get(key):
                lines.append("%s=%s" % (option, ssl[key]))
        lines.append("default-character-set=utf8mb4")
        fd = os.memfd_create("wfu-client-options")
        try:
            os.fchmod(fd, 0o600)
            data = memoryview(("\n".join(lines) + "\n").encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
            yield "--defaults-extra-file=/dev/fd/%d" % fd, fd
        finally:
            os.close(fd)


def describe(params):
    """A printable name for a database, never including the password."""
    return Database.from_params(params).where()


def same_server(a, b):
    """True when two connection mappings point at the same server (so INSERT…SELECT can cross databases)."""
    return Database.from_params(a).same_server(Database.from_params(b))


def same_database(a, b):
    """True when two connection mappings name the same database on the same server."""
    return Database.from_params(a).same_database(Database.from_params(b))


if HAS_PYMYSQL:
    class _Connection(pymysql.connections.Connection):
        """A PyMySQL connection that knows its Database, marks the errors of its statements with it, and shares
        one TLS context for the driver's "preferred TLS" mode.

        Without explicit ssl settings PyMySQL builds a fresh context, loading the system CA store,
        for every connection (tens of milliseconds each, several connections per site).
        """

        _preferred_context = None
        wfu_database = None

        def _create_ssl_ctx(self, sslp):
            if sslp:
                return super()._create_ssl_ctx(sslp)
            if _Connection._preferred_context is None:
                _Connection._preferred_context = super()._create_ssl_ctx(sslp)
            return _Connection._preferred_context

        def set_statement_timeout(self, seconds):
            """Bound every later read and write on the socket (None: no bound).  PyMySQL applies these two
            attributes before each packet, so a change takes effect with the next statement."""
            self._read_timeout = seconds
            self._write_timeout = seconds

        def query(self, sql, unbuffered=False):
            try:
                return super().query(sql, unbuffered)
            except pymysql.err.MySQLError as exc:
                exc.wfu_database = self.wfu_database
                raise


def connect(params, database=None, autocommit=True, connect_timeout=CONNECT_TIMEOUT, read_timeout=None,
            streaming=False, deadline=None):
    """Open a bounded PyMySQL connection for a connection mapping or a Database (see ``Database.connect``)."""
    target = params if isinstance(params, Database) else Database.from_params(params)
    return target.connect(database=database, autocommit=autocommit, streaming=streaming, timeout=read_timeout,
                          deadline=deadline, connect_timeout=connect_timeout)
