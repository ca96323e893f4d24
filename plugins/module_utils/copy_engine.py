# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy tables from one database to another, streaming, in bounded memory.

``copy_tables`` picks one of three ways:

``insert_select``
    both databases live on the same server (``Database.same_server``): ``CREATE TABLE …
    LIKE`` and one ``INSERT … SELECT`` per table; the rows never leave the server.
``dump``
    across servers: ``mariadb-dump`` (or ``mysqldump``) piped into ``mariadb`` (or
    ``mysql``).  Each tool reads its password from its own in-memory option file
    (``Database.client_options``) given as its first argument, never from argv.
    When nothing has to be rewritten the two processes are joined by one OS pipe;
    when tables are renamed on the way (staging names in the target) or the
    destination lacks a MySQL 8 collation the source uses, the stream passes
    through ``DumpRewriter``, which edits only statement heads and table
    definitions, never row data.
``pymysql``
    when the client tools are missing (or asked for): rows stream from an
    unbuffered cursor inside one consistent snapshot and go out as multi-row
    INSERTs of a few MB, every value as a hex literal (binary-safe, utf8mb4).

A destination table that already has one of the destination names is dropped and
created anew: callers choose names that may be replaced.  Afterwards the row count
of every destination table is compared with its source (``verify_copy``): one
``COUNT(*)`` on each side at most, none where the rows written are reported or the
caller hands on counts it already verified.

``dump_to_file`` writes the backup dump of a target's tables with the same
``mariadb-dump`` invocation.  Time limits come from the caller's ``Deadline``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    ConfigError, as_text, pymysql, qualified, quote_identifier, validate_identifier)
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.processes import die_with_parent
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    CONFIGURATION, MISSING_BINARY, SYSTEMIC_REASONS, VERIFICATION, MigrationError, failure_reason,
    message_error_code, message_reason, redact)

METHODS = ("auto", "insert_select", "dump", "pymysql")

# The most the Python pump reads at once (a pipe rarely holds more than 64 KB).
CHUNK = 1 << 20
# Size of one multi-row INSERT statement in a dump (about mariadb-dump's own default).
DUMP_NET_BUFFER_LENGTH = 1 << 20
# Upper bound of one multi-row INSERT of the pymysql method (lowered to fit max_allowed_packet).
PYMYSQL_STATEMENT_BYTES = 4 << 20

DUMP_FLAGS = (
    "--single-transaction",  # a consistent snapshot without locking the source
    "--quick",
    # Rows in primary-key order: the search-replace follows a load as it arrives (table_replace.arriving).
    "--order-by-primary",
    "--skip-lock-tables",
    "--skip-add-locks",  # the loader needs no LOCK TABLES privilege
    # No ALTER TABLE … DISABLE/ENABLE KEYS around the rows (a no-op for InnoDB): the ALTER's metadata lock would
    # deadlock with a search-replace that follows the load.
    "--skip-disable-keys",
    "--add-drop-table",  # destination tables of the same name are replaced
    "--no-tablespaces",  # MySQL 8 asks for PROCESS otherwise
    "--skip-triggers",  # WordPress has none; a trigger would still name the source table
    "--skip-comments",
    "--skip-dump-date",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--max-allowed-packet=1G",
    "--net-buffer-length=%d" % DUMP_NET_BUFFER_LENGTH,
)
# Only MySQL's mysqldump has these; without them it fails against MariaDB or GTID-less targets.
_LOCK_NAME = re.compile(r"\A[A-Za-z0-9:_-]{1,64}\Z")
MYSQL_DUMP_FLAGS = ("--set-gtid-purged=OFF", "--column-statistics=0")
LOAD_FLAGS = ("--binary-mode", "--batch", "--max-allowed-packet=1G", "--default-character-set=utf8mb4")
# MariaDB's client echoes a failing statement (MBs of row data) to stderr unless told not to; MySQL's has no such flag.
MARIADB_LOAD_FLAGS = ("--skip-print-query-on-error",)

# MySQL 8 collations that MariaDB 10.11 does not know, and the nearest collation it has.
MYSQL_ONLY_COLLATIONS = {
    "utf8mb4_0900_ai_ci": "utf8mb4_unicode_520_ci",
    "utf8mb4_0900_as_ci": "utf8mb4_unicode_520_ci",
    "utf8mb4_0900_as_cs": "utf8mb4_bin",
    "utf8mb4_0900_bin": "utf8mb4_bin",
}

# Value renderers of the pymysql method, chosen by information_schema DATA_TYPE.
NUMERIC_TYPES = frozenset(("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
                           "float", "double", "real", "year"))
TEMPORAL_TYPES = frozenset(("date", "datetime", "timestamp", "time"))
BYTE_TYPES = frozenset(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit", "geometry",
                        "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                        "geometrycollection", "geomcollection"))

# The session both ends of a copy run in: what a dump sets for itself (no strict mode, so WordPress's zero dates
# load; no ANSI_QUOTES, so SHOW CREATE TABLE quotes with backticks; no key checks), plus UTC so TIMESTAMP values
# cross without conversion.
COPY_SESSION = ("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', foreign_key_checks = 0, unique_checks = 0, "
                "time_zone = '+00:00'")

# Statement heads that name a table in a dump: the only places a rename has to touch.
_DUMP_HEADS = rb"DROP TABLE IF EXISTS |CREATE TABLE |INSERT INTO |LOCK TABLES |/\*!40000 ALTER TABLE |ALTER TABLE "
# Lines of a CREATE TABLE in a dump: column and key lines start with two spaces, the table options with ")".
# Row data never starts a line (dumps escape newlines inside values).
_DEFINITION_LINE = re.compile(rb"\n(?:  `|\) ENGINE=)[^\n]*")


# -- public entry point ---------------------------------------------------------------------------------------------

def copy_tables(source, tables, dest, rename=None, method="auto", work_dir=None, deadline=None, source_rows=None,
                verify=True, source_conn=None, dest_conn=None, filters=None, load_lock=None):
    """Copy ``tables`` from the ``source`` database to the ``dest`` database; return what was copied.

    ``source`` and ``dest`` are ``db.Database`` values.  ``rename`` maps a source
    table name to its destination name (tables not in it keep their names).
    Destination tables with those names are replaced.  ``method`` is ``auto``,
    ``insert_select``, ``dump`` or ``pymysql``; ``work_dir`` holds the client
    programs' stderr captures (default: the system temp dir); ``deadline`` (a
    ``Deadline``) bounds the whole copy.

    Each table is counted once on each side at most: ``source_rows`` (``{source_table: rows}``) are counts the
    caller already verified (a work table nobody else writes to), which spares the source's ``COUNT(*)``;
    ``INSERT … SELECT`` and the pymysql method report the rows they wrote, which spares the destination's.
    With ``verify=False`` the destination is not counted at all: the caller compares the rows it hands on
    with one count of its own.  ``source_conn`` and ``dest_conn`` are open connections to ``source`` and
    ``dest`` the copy may use (its own are opened otherwise); they belong to the caller's thread.

    ``filters`` (``{source_table: SQL condition}``, built by content_policy.py) copy only the rows of a table that
    meet its condition, in every method; the source is counted under the same condition, so the verification
    compares the rows kept, and the rows left out are reported.

    ``load_lock`` (a callable returning a new name each call) gives each loader a ``dump`` copy starts a named
    lock its session takes as it connects (``--init-command``): a loader killed with its call may still have a
    statement on the server, and whoever cleans up after the call ends the session holding that lock first
    (``server_locks.end_sessions_holding``), so that no ``CREATE TABLE`` of it lands after the cleanup's drops.

    Returns ``{method, tables: {dest_table: {rows, bytes}}, rows, bytes, seconds, excluded: {dest_table: rows}}``
    where ``bytes`` is the source's data + index size and ``excluded`` has the rows each filtered table left out.
    Raises MigrationError (phase ``copy``) classified ``systemic`` or ``site``.
    """
    started = time.monotonic()
    deadline = deadline or Deadline()
    mapping = destination_names(tables, rename)
    validate_identifier(source.database, "database name")
    validate_identifier(dest.database, "database name")
    overlap = sorted(set(mapping.values()) & set(mapping))
    if overlap and source.same_database(dest):
        raise ConfigError("copying %s into the same database under the same names would destroy them (%s); give "
                          "the copies other names" % (source, ", ".join(overlap)))
    filters = dict(filters or {})
    stray = sorted(set(filters) - set(mapping))
    if stray:
        raise ConfigError("filters name tables that are not being copied: %s" % ", ".join(stray))
    chosen = choose_method(source, dest, method)
    if work_dir:
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
    result = {"method": chosen, "tables": {}, "rows": 0, "bytes": 0, "seconds": 0.0, "excluded": {}}
    if not mapping:
        return result
    try:
        with _copying(None, deadline), _connection(source, source_conn, deadline) as conn:
            sizes = tbl.table_stats(conn, source.database, list(mapping))
            missing = [name for name in mapping if name not in sizes]
            if missing:
                raise MigrationError("source table %s does not exist in %s" % (", ".join(missing), source),
                                     table=missing[0], phase="copy", failure_class="site")
            known = dict(source_rows or {})
            unknown = [name for name in mapping if name not in known and name not in filters]
            rows_before = dict(known, **tbl.exact_row_counts(conn, source.database, unknown))
            filtered = tbl.filtered_row_counts(conn, source.database,
                                               {name: where for name, where in filters.items() if name not in known})
            rows_before.update({name: kept for name, (_rows, kept) in filtered.items()})
            result["excluded"] = {mapping[name]: rows - kept for name, (rows, kept) in filtered.items()}
            collations = {}
            if chosen != "insert_select":
                collations = _collations_to_replace(conn, source, list(mapping), dest, deadline, dest_conn)
        if chosen == "insert_select":
            written = _copy_by_insert_select(source, mapping, dest, deadline, source_conn, filters)
        elif chosen == "dump":
            written = _copy_by_dump(source, mapping, dest, collations, work_dir, deadline, filters, load_lock)
        else:
            written = _copy_by_pymysql(source, mapping, dest, collations, deadline, filters)
        if verify:
            counts = verify_copy(source, dest, mapping, rows_before, deadline, arrived=written, source_conn=source_conn,
                                 dest_conn=dest_conn, filters=filters)
        else:
            counts = {target: rows_before.get(name) for name, target in mapping.items()}
    except MigrationError as exc:
        exc.phase = exc.phase or "copy"
        raise
    except Exception as exc:
        raise MigrationError.wrap(exc, phase="copy") from exc
    for source_table, dest_table in mapping.items():
        result["tables"][dest_table] = {"rows": counts[dest_table], "bytes": sizes[source_table]["bytes"]}
    result["rows"] = sum(entry["rows"] for entry in result["tables"].values())
    result["bytes"] = sum(entry["bytes"] for entry in result["tables"].values())
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def destination_names(tables, rename=None):
    """``{source_table: dest_table}`` in the order given; every name validated, no two sources on one name."""
    rename = dict(rename or {})
    mapping = {}
    for table in tables:
        mapping[validate_identifier(table, "table name")] = validate_identifier(rename.get(table, table), "table name")
    unknown = sorted(set(rename) - set(mapping))
    if unknown:
        raise ConfigError("rename names tables that are not being copied: %s" % ", ".join(unknown))
    targets = list(mapping.values())
    clashes = sorted({name for name in targets if targets.count(name) > 1})
    if clashes:
        raise ConfigError("several tables would be copied to %s" % ", ".join(clashes))
    return mapping


def choose_method(source, dest, method="auto"):
    """The copy method to use for ``method`` between these two Databases."""
    if method not in METHODS:
        raise ConfigError("unknown copy method %r; use one of %s" % (method, ", ".join(METHODS)))
    same = source.same_server(dest)
    if method == "auto":
        if same:
            return "insert_select"
        return "dump" if client_tools() else "pymysql"
    if method == "insert_select" and not same:
        raise ConfigError("insert_select needs both databases on one server reached as one user; %s and %s are not"
                          % (source, dest))
    if method == "dump":
        required_client_tools()
    return method


def verify_copy(source, dest, mapping, rows_before, deadline=None, arrived=None, source_conn=None, dest_conn=None,
                filters=None):
    """Compare the row count of each destination table with its source; return ``{dest_table: rows}``.

    ``rows_before`` are the source counts taken just before the copy.  ``arrived``
    (``{dest_table: rows}``) are the rows the statements that filled the destination
    reported writing (``INSERT … SELECT``'s affected rows); a table not in it is
    counted in the destination.  A live source may change while it is copied, so a
    destination that matches the source count either before or after the copy is
    accepted; anything else raises MigrationError (reason ``verification``).  A table of ``filters`` is counted in
    the source under its condition, as it was copied.
    """
    filters = dict(filters or {})
    source_db, dest_db = source.database, dest.database
    arrived = dict(arrived or {})
    uncounted = [target for target in mapping.values() if target not in arrived]
    if uncounted:
        with _connection(dest, dest_conn, deadline) as conn:
            arrived.update(tbl.exact_row_counts(conn, dest_db, uncounted))
    differing = [name for name, target in mapping.items() if arrived[target] != rows_before[name]]
    if differing:
        with _connection(source, source_conn, deadline) as conn:
            rows_now = tbl.exact_row_counts(conn, source_db, [name for name in differing if name not in filters])
            rows_now.update({name: kept for name, (_rows, kept) in tbl.filtered_row_counts(
                conn, source_db, {name: filters[name] for name in differing if name in filters}).items()})
        for name in differing:
            target = mapping[name]
            if arrived[target] != rows_now[name]:
                changed = " (the source changed during the copy)" if rows_now[name] != rows_before[name] else ""
                kept = " rows to copy (net of the rows the content policy leaves out)" if name in filters else ""
                raise MigrationError(
                    "%s.%s has %d rows after the copy, but %s.%s had %d%s before the copy and has %d now%s"
                    % (dest_db, target, arrived[target], source_db, name, rows_before[name], kept, rows_now[name],
                       changed),
                    table=name, phase="copy", reason=VERIFICATION)
    return arrived


@contextlib.contextmanager
def _connection(database, conn, deadline):
    """``conn`` when the caller gave one (it stays open), else a connection of our own, closed afterwards."""
    if conn is not None:
        yield conn
        return
    with contextlib.closing(database.connect(deadline=deadline)) as own:
        yield own


# -- command-line tools ----------------------------------------------------------------------------------------------

def client_tools():
    """``(dump_path, client_path)`` of one family (MariaDB's names first), or None when neither pair is installed."""
    for dump_name, client_name in (("mariadb-dump", "mariadb"), ("mysqldump", "mysql")):
        dump_path, client_path = shutil.which(dump_name), shutil.which(client_name)
        if dump_path and client_path:
            return dump_path, client_path
    return None


def required_client_tools():
    """``client_tools()``, or MigrationError (systemic, reason missing_binary) when they are not installed."""
    tools = client_tools()
    if tools is None:
        raise MigrationError("neither mariadb-dump and mariadb nor mysqldump and mysql were found on PATH",
                             phase="copy", reason=MISSING_BINARY)
    return tools


def dump_binary():
    """Path of mariadb-dump (or mysqldump); MigrationError (systemic, missing_binary) when none is installed."""
    path = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    if path is None:
        raise MigrationError("neither mariadb-dump nor mysqldump was found on PATH", reason=MISSING_BINARY)
    return path


@functools.lru_cache(maxsize=None)
def is_mysql_tool(path):
    """True when the client program at ``path`` is MySQL's rather than MariaDB's (they take different flags)."""
    completed = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               check=False, timeout=30)
    return "mariadb" not in (completed.stdout + completed.stderr).lower()


ClientCommand = collections.namedtuple("ClientCommand", "argv fds")
ClientCommand.__doc__ = "A client program's argv and the file descriptors (its option file) it must inherit."


def dump_command(dump_path, options, database, tables, where=None):
    """The dump of ``tables``: the option file first, then our flags, the database and its tables.

    ``options`` is what ``Database.client_options()`` yields; ``where`` a condition on the rows dumped (of every
    table of the dump).
    """
    flags = list(DUMP_FLAGS)
    if is_mysql_tool(dump_path):
        flags.extend(MYSQL_DUMP_FLAGS)
    if where is not None:
        flags.append("--where=" + where)
    argument, fd = options
    return ClientCommand([dump_path, argument] + flags + [database] + list(tables), (fd,))


def load_command(client_path, options, database, session_lock=None):
    """The loader that reads a dump on stdin into ``database``; its session takes the named lock ``session_lock``
    (letters, digits and ``:_-`` only) as it connects, when one is given."""
    flags = list(LOAD_FLAGS) if is_mysql_tool(client_path) else list(LOAD_FLAGS + MARIADB_LOAD_FLAGS)
    if session_lock is not None:
        if not _LOCK_NAME.match(session_lock):
            raise ConfigError("not a lock name for a loader's session: %r" % session_lock)
        flags.append("--init-command=SELECT GET_LOCK('%s', 0)" % session_lock)
    argument, fd = options
    return ClientCommand([client_path, argument] + flags + [database], (fd,))


class DumpRewriter:
    """Edits a dump stream chunk by chunk: table names in statement heads, unknown collations in definitions.

    Only bytes right after a newline are looked at, so the cost does not depend on
    how long the (multi-MB) INSERT lines are.  A chunk is cut after its last newline
    when that is within ``LOOKBACK`` bytes of its end, and the rest is carried to the
    next chunk, so a statement head or a definition line is never split.
    """

    LOOKBACK = 64 * 1024

    def __init__(self, renames=None, collations=None):
        self._steps = []
        renames = {name.encode("ascii"): new.encode("ascii") for name, new in (renames or {}).items() if name != new}
        if renames:
            heads = re.compile(rb"\n(" + _DUMP_HEADS + rb")`(" +
                               b"|".join(re.escape(name) for name in renames) + rb")`")

            def rename_head(match):
                return b"\n" + match.group(1) + b"`" + renames[match.group(2)] + b"`"

            self._steps.append(functools.partial(heads.sub, rename_head))
        if collations:
            self._steps.append(functools.partial(rewrite_collations, collations=collations))
        # A newline in front of the stream lets its first line match like any other; it is dropped on output.
        self._carry = b"\n"
        self._leading_newline = True

    @property
    def active(self):
        """False when the stream would pass unchanged (then no Python pump is needed)."""
        return bool(self._steps)

    def feed(self, chunk):
        """Rewrite what can be rewritten of ``chunk``; return the bytes ready to send."""
        buffer = self._carry + chunk
        cut = buffer.rfind(b"\n", max(0, len(buffer) - self.LOOKBACK))
        if cut < 0:
            cut = len(buffer)
        self._carry = buffer[cut:]
        return self._apply(buffer[:cut])

    def finish(self):
        """The rewritten remainder at the end of the stream."""
        rest, self._carry = self._carry, b""
        return self._apply(rest)

    def _apply(self, data):
        for step in self._steps:
            data = step(data)
        if self._leading_newline and data:
            self._leading_newline = False
            data = data[1:]
        return data


def rewrite_collations(text, collations):
    """Replace ``COLLATE x`` / ``COLLATE=x`` for the collations in ``{old: new}`` on table-definition lines.

    ``text`` is dump text or a ``SHOW CREATE TABLE`` statement (bytes).
    """
    names = {old.encode("ascii"): new.encode("ascii") for old, new in collations.items()}
    clause = re.compile(rb"(COLLATE[= ])(" + b"|".join(re.escape(name) for name in names) + rb")\b")

    def replace_in_line(match):
        return clause.sub(lambda found: found.group(1) + names[found.group(2)], match.group(0))

    if not text.startswith(b"\n"):
        return _DEFINITION_LINE.sub(replace_in_line, b"\n" + text)[1:]
    return _DEFINITION_LINE.sub(replace_in_line, text)


def _collations_to_replace(source_conn, source, tables, dest, deadline, dest_conn=None):
    """``{collation: replacement}`` for the MySQL-only collations these tables use and the destination lacks."""
    source_db = source.database
    names = list(MYSQL_ONLY_COLLATIONS)
    marks = ", ".join(["%s"] * len(names))
    table_marks = ", ".join(["%s"] * len(tables))
    with source_conn.cursor() as cur:
        cur.execute("SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %%s "
                    "AND TABLE_NAME IN (%s) AND COLLATION_NAME IN (%s) UNION SELECT DISTINCT TABLE_COLLATION "
                    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %%s AND TABLE_NAME IN (%s) "
                    "AND TABLE_COLLATION IN (%s)" % (table_marks, marks, table_marks, marks),
                    [source_db] + tables + names + [source_db] + tables + names)
        used = {as_text(row[0]) for row in cur.fetchall()}
    if not used:
        return {}
    with _connection(dest, dest_conn, deadline) as conn, conn.cursor() as cur:
        cur.execute("SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (%s)"
                    % ", ".join(["%s"] * len(used)), sorted(used))
        known = {as_text(row[0]) for row in cur.fetchall()}
    return {name: MYSQL_ONLY_COLLATIONS[name] for name in sorted(used - known)}


def _copy_by_dump(source, mapping, dest, collations, work_dir, deadline, filters=None, load_lock=None):
    """One dump of the unfiltered tables, and one of each filtered table (``--where`` applies to a whole dump)."""
    filters = filters or {}
    plain = {name: target for name, target in mapping.items() if name not in filters}
    parts = ([(plain, None)] if plain else []) + [({name: mapping[name]}, where) for name, where in filters.items()]
    for part, where in parts:
        _dump_and_load(source, part, dest, collations, work_dir, deadline, where, load_lock() if load_lock else None)
    return {}  # the loader does not say how many rows it wrote: the destination is counted


def _dump_and_load(source, mapping, dest, collations, work_dir, deadline, where, session_lock=None):
    dump_path, client_path = required_client_tools()
    rewriter = DumpRewriter(renames=mapping, collations=collations)
    with contextlib.ExitStack() as stack:
        source_options = stack.enter_context(source.client_options())
        dest_options = stack.enter_context(dest.client_options())
        dump_errors = stack.enter_context(tempfile.TemporaryFile(prefix="wfu-dump-", dir=work_dir))
        load_errors = stack.enter_context(tempfile.TemporaryFile(prefix="wfu-load-", dir=work_dir))
        pipeline = DumpPipeline(dump_command(dump_path, source_options, source.database, list(mapping), where),
                                load_command(client_path, dest_options, dest.database, session_lock),
                                dump_errors, load_errors, rewriter if rewriter.active else None, deadline)
        pipeline.run()
        failure = None if pipeline.timed_out else pipeline.failure()
    if pipeline.timed_out:
        raise deadline.failure()
    if failure:
        side, text, status = failure
        if side == "dump":
            action, database, program = "dumping from", source, dump_path
        else:
            action, database, program = "loading into", dest, client_path
        how = "was killed by signal %d" % -status if status < 0 else "failed (exit status %d)" % status
        raise MigrationError("%s %s: %s %s: %s" % (action, database, os.path.basename(program), how,
                                                   text or "no error message"),
                             table=_table_named_in(text, mapping), phase="copy", error_code=message_error_code(text),
                             reason=message_reason(text), database=database)


def _table_named_in(text, mapping):
    """The source table a tool's error message names (by its source or destination name), or None."""
    source_of = {target: name for name, target in mapping.items()}
    source_of.update({name: name for name in mapping})
    for quoted in re.findall(r"[`'\".]([A-Za-z0-9_$]+)[`'\"]", text):
        if quoted in source_of:
            return source_of[quoted]
    return None


def spawn_client(command, **kwargs):
    """Start a MariaDB command-line client (a ``ClientCommand``) that does not outlive the calling process."""
    return subprocess.Popen(command.argv, pass_fds=command.fds,  # pylint: disable=subprocess-popen-preexec-fn
                            preexec_fn=die_with_parent, **kwargs)


class DumpPipeline:
    """``dump | load`` with pipefail semantics, a deadline, and no child left behind.

    stderr of each side goes to its own temp file (pipes could fill up and
    deadlock).  A supervisor thread kills the other side as soon as one side
    fails, and both at the deadline.  With a rewriter the stream is pumped
    through Python; without one the loader reads the dump's pipe directly.
    """

    def __init__(self, dump_command, load_command, dump_errors, load_errors, rewriter, deadline):
        self.dump_command = dump_command
        self.load_command = load_command
        self.dump_errors = dump_errors
        self.load_errors = load_errors
        self.rewriter = rewriter
        self.deadline = deadline
        self.dump = None
        self.load = None
        self.killed = set()
        self.timed_out = False
        self._done = threading.Event()

    def run(self):
        supervisor = threading.Thread(target=self._supervise, name="wfu-copy-supervisor", daemon=True)
        try:
            self.dump = spawn_client(self.dump_command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.dump_errors)
            if self.rewriter is None:
                self.load = spawn_client(self.load_command, stdin=self.dump.stdout, stdout=subprocess.DEVNULL,
                                         stderr=self.load_errors)
                # Only the loader may hold the read end, or the dump would not notice the loader dying.
                self.dump.stdout.close()
            else:
                self.load = spawn_client(self.load_command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self.load_errors)
            supervisor.start()
            if self.rewriter is not None:
                self._pump()
            self.dump.wait()
            self.load.wait()
        finally:
            self._done.set()
            for process in (self.dump, self.load):
                if process is not None:
                    if process.poll() is None:
                        self.killed.add(process.pid)
                        process.kill()
                    process.wait()
                    for stream in (process.stdin, process.stdout):
                        if stream is not None:
                            with contextlib.suppress(OSError):
                                stream.close()
            if supervisor.is_alive():
                supervisor.join()

    def failure(self):
        """None when both sides succeeded, else ``(side, error lines, exit status)`` of the side that failed first.

        ``side`` is ``dump`` or ``load``; a negative exit status is the signal that killed the process.
        """
        if self._dump_failed_on_its_own():
            # A dump that broke off leaves the loader a truncated statement: its complaint is a consequence.
            return "dump", _error_text(self.dump_errors), self.dump.returncode
        if self.load.returncode != 0:
            return "load", _error_text(self.load_errors), self.load.returncode
        if self.dump.returncode != 0:
            return "dump", _error_text(self.dump_errors), self.dump.returncode
        return None

    def _dump_failed_on_its_own(self):
        """A non-zero exit that we did not cause by killing it, nor the loader by going away (SIGPIPE/EPIPE)."""
        if self.dump.returncode == 0 or self.dump.pid in self.killed or self.dump.returncode == -13:
            return False
        return "errno 32" not in _error_text(self.dump_errors)

    def _pump(self):
        source = self.dump.stdout.fileno()
        target = self.load.stdin.fileno()
        try:
            while True:
                chunk = os.read(source, CHUNK)
                if not chunk:
                    break
                _write_all(target, self.rewriter.feed(chunk))
            _write_all(target, self.rewriter.finish())
        except BrokenPipeError:
            pass  # the loader exited; its stderr says why
        finally:
            with contextlib.suppress(OSError):
                self.load.stdin.close()
            with contextlib.suppress(OSError):
                self.dump.stdout.close()

    def _supervise(self):
        processes = (self.dump, self.load)
        while not self._done.wait(0.05):
            codes = [process.poll() for process in processes]
            if all(code == 0 for code in codes):
                return
            if self.deadline.expired():
                self.timed_out = True
            elif all(code in (None, 0) for code in codes):
                continue
            for process in processes:
                if process.poll() is None:
                    self.killed.add(process.pid)
                    with contextlib.suppress(OSError):
                        process.kill()
            return


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


_ERROR_LINE = re.compile(r"^(?:ERROR \d+|[\w./-]*(?:mariadb|mysql)[\w-]*: )")


def _error_text(handle, limit=64 * 1024):
    """The error lines a tool wrote to ``handle``, without echoed statements (they would carry row data)."""
    handle.flush()
    handle.seek(0, os.SEEK_END)
    handle.seek(max(0, handle.tell() - limit))
    lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line[:1000] for line in lines if _ERROR_LINE.match(line)] or [line[:300] for line in lines[-1:]]
    return redact("; ".join(errors[-5:]))


# -- same server: INSERT ... SELECT ----------------------------------------------------------------------------------

def _copy_by_insert_select(source, mapping, dest, deadline, source_conn=None, filters=None):
    """Copy on the server; return ``{dest_table: rows}`` as each ``INSERT … SELECT`` reported them."""
    source_db, dest_db = source.database, dest.database
    filters = filters or {}
    written = {}
    with _connection(source, source_conn, deadline) as conn, conn.cursor() as cur:
        cur.execute(COPY_SESSION)
        # Under REPEATABLE READ, INSERT ... SELECT share-locks every source row it reads, and the live site's
        # writes wait.  READ COMMITTED reads a snapshot instead; only statement-based binary logging forbids it.
        cur.execute("SELECT @@log_bin, @@binlog_format")
        log_bin, binlog_format = cur.fetchone()
        if not (int(log_bin) and binlog_format.upper() == "STATEMENT"):
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        for name, target in mapping.items():
            with _copying(name, deadline):
                columns = ", ".join(quote_identifier(column) for column, _kind in _copyable_columns(cur, source_db, name))
                cur.execute("DROP TABLE IF EXISTS " + qualified(dest_db, target))
                cur.execute("CREATE TABLE %s LIKE %s" % (qualified(dest_db, target), qualified(source_db, name)))
                written[target] = cur.execute("INSERT INTO %s (%s) SELECT %s FROM %s%s" % (
                    qualified(dest_db, target), columns, columns, qualified(source_db, name), _where(filters, name)))
    return written


def _where(filters, table):
    """`` WHERE <condition>`` of ``table`` in ``filters``, or nothing."""
    return " WHERE " + filters[table] if table in filters else ""


@contextlib.contextmanager
def _copying(table, deadline):
    """Give any failure while copying ``table`` its context; a query killed at the deadline is the deadline's."""
    if deadline.expired():
        raise deadline.failure(table)
    try:
        yield
    except MigrationError:
        raise
    except Exception as exc:
        if deadline.expired():
            raise deadline.failure(table) from exc
        raise MigrationError.wrap(exc, table=table, phase="copy") from exc


def _copyable_columns(cur, database, table):
    """``[(column, data_type)]`` in table order, without generated columns (they cannot be inserted).

    Unlike ``SELECT *`` the list includes MariaDB's invisible columns.
    """
    cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s AND COALESCE(GENERATION_EXPRESSION, '') = '' ORDER BY ORDINAL_POSITION",
                (database, table))
    return [(as_text(column), as_text(kind).lower()) for column, kind in cur.fetchall()]


# -- no client tools: stream through PyMySQL -------------------------------------------------------------------------

def _copy_by_pymysql(source, mapping, dest, collations, deadline, filters=None):
    """Stream the rows through this process; return ``{dest_table: rows}`` as the INSERTs reported them."""
    source_db, dest_db = source.database, dest.database
    filters = filters or {}
    written = {}
    with source.connect(deadline=deadline) as reader, dest.connect(deadline=deadline) as writer:
        # Values arrive as the server's bytes and go back as literals: nothing is decoded or converted.
        reader.use_unicode = False
        reader.decoders = {}
        with reader.cursor() as meta, writer.cursor() as out:
            meta.execute(COPY_SESSION)
            meta.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            meta.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            out.execute(COPY_SESSION)
            out.execute("SELECT @@max_allowed_packet")
            packet_limit = int(out.fetchone()[0])
            for name, target in mapping.items():
                with _copying(name, deadline):
                    columns = _copyable_columns(meta, source_db, name)
                    meta.execute("SHOW CREATE TABLE " + qualified(source_db, name))
                    create = _renamed_definition(meta.fetchone()[1], name, target, collations)
                    out.execute("DROP TABLE IF EXISTS " + qualified(dest_db, target))
                    out.execute(create)
                    written[target] = _stream_rows(reader, out, (source_db, name), (dest_db, target), columns,
                                                   packet_limit, deadline, _where(filters, name))
            meta.execute("COMMIT")
    return written


def _stream_rows(reader, out, source, target, columns, packet_limit, deadline, where=""):
    """Send the rows of the ``(database, table)`` source (those ``where`` keeps) as multi-row INSERTs of a few MB
    into ``target``; return the rows the INSERTs wrote."""
    statement_limit = max(64 * 1024, min(PYMYSQL_STATEMENT_BYTES, packet_limit - 64 * 1024))
    column_list = ", ".join(quote_identifier(column) for column, _kind in columns)
    head = ("INSERT INTO %s (%s) VALUES " % (qualified(*target), column_list)).encode("utf-8")
    renderers = [_renderer(kind) for _column, kind in columns]
    with reader.cursor(pymysql.cursors.SSCursor) as rows:
        rows.execute("SELECT %s FROM %s%s" % (column_list, qualified(*source), where))
        batch, size, written = [], len(head), 0
        for row in rows:
            values = b"(" + b",".join(b"NULL" if value is None else render(value)
                                      for render, value in zip(renderers, row)) + b")"
            if len(head) + len(values) >= packet_limit:
                raise MigrationError("a row of %s.%s needs a %d-byte statement, more than the destination's "
                                     "max_allowed_packet (%d); raise max_allowed_packet on the destination server"
                                     % (source[0], source[1], len(head) + len(values), packet_limit),
                                     table=source[1], phase="copy", failure_class="site")
            if batch and size + len(values) + 1 > statement_limit:
                written += out.execute(head + b",".join(batch))
                if deadline.expired():
                    raise deadline.failure(source[1])
                batch, size = [], len(head)
            batch.append(values)
            size += len(values) + 1
        if batch:
            written += out.execute(head + b",".join(batch))
    return written


def _renderer(kind):
    """How one column's raw value becomes an SQL literal."""
    if kind in NUMERIC_TYPES:
        return _as_is
    if kind in TEMPORAL_TYPES:
        return _quoted
    if kind in BYTE_TYPES:
        return _hex_bytes
    return _hex_text


def _as_is(value):
    return value


def _quoted(value):
    return b"'" + value + b"'"


def _hex_bytes(value):
    return b"X'" + value.hex().encode("ascii") + b"'"


def _hex_text(value):
    # The introducer keeps it a utf8mb4 string, converted to the column's character set on insert.
    return b"_utf8mb4 X'" + value.hex().encode("ascii") + b"'"


def _renamed_definition(create, name, target, collations):
    """``SHOW CREATE TABLE`` output of ``name`` made to create ``target`` (bytes)."""
    create = create if isinstance(create, bytes) else create.encode("utf-8")
    head = re.match(rb"CREATE TABLE `(?:[^`]|``)+`", create)
    if head is None:
        raise MigrationError("%s is not a base table (a view?); only tables can be copied" % name, table=name,
                             phase="copy", failure_class="site")
    create = b"CREATE TABLE " + quote_identifier(target).encode("utf-8") + create[head.end():]
    return rewrite_collations(create, collations) if collations else create


# -- backups -------------------------------------------------------------------------------------------------------

def dump_to_file(database, tables, path, work_dir=None, deadline=None):
    """Dump ``tables`` of ``database`` (a ``db.Database``) to the gzip file ``path`` (0600); return ``path``.

    The dump is the copy's own (``dump_command``), read while it runs; its stderr goes to a temp file.  The
    file is written as ``<path>.partial`` and renamed when complete; on any failure (a full disk, a failed
    dump, the deadline) the partial file is removed.  Raises MigrationError (phase ``backup``).
    """
    partial = path + ".partial"
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        with contextlib.ExitStack() as stack:
            options = stack.enter_context(database.client_options())
            errors = stack.enter_context(tempfile.TemporaryFile(prefix="wfu-backup-", dir=work_dir))
            dump = spawn_client(dump_command(dump_binary(), options, database.database, tables),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
            try:
                _write_gzip(dump.stdout, partial, deadline or Deadline())
            finally:
                if dump.poll() is None:
                    dump.kill()
                dump.wait()
                dump.stdout.close()
            if dump.returncode != 0:
                text = _error_text(errors)
                raise MigrationError("the backup dump of %s failed: %s" % (database, text or "no error message"),
                                     phase="backup", error_code=message_error_code(text), reason=message_reason(text),
                                     database=database)
        os.replace(partial, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if isinstance(exc, OSError):
            # The backup file cannot be written on this host: every site would fail the same way.
            reason = failure_reason(exc)
            raise MigrationError("cannot write the backup file %s: %s" % (path, exc), phase="backup",
                                 reason=reason if reason in SYSTEMIC_REASONS else CONFIGURATION,
                                 hint="make backup_dir a writable directory with room for the dump, or leave it "
                                      "out to keep the previous tables only in the target") from exc
        raise
    return path


def _write_gzip(stream, path, deadline):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                out.write(chunk)
                if deadline.expired():
                    raise deadline.failure()
        raw.flush()
        os.fsync(raw.fileno())
