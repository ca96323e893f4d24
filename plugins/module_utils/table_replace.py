# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Search-replace over whole tables: ``replace_in_tables``.

Every value ends up exactly as ``search_replace.replace_value`` makes it; the
work is split so that MariaDB does most of it.

Which columns
    Text columns (CHAR, VARCHAR and the TEXT types; MariaDB's JSON is a
    LONGTEXT) in UTF-8 (utf8mb4, utf8mb3) or ASCII, minus ``skip_columns`` and
    generated columns.  WordPress keeps its text, URLs included, in text
    columns; BINARY, VARBINARY and BLOB columns hold bytes that need not be
    UTF-8 (hashes, images, compressed caches), where a byte-level rewrite
    could break data nobody meant to touch.  ``guid`` is rewritten unless it
    is skipped, as the original tool and WP-CLI do.  A text column in another
    character set (latin1) cannot be edited safely, because serialized string
    lengths are counted in UTF-8 bytes: it is left alone with a warning when
    no search string occurs in it, and is an error otherwise.

Which rows
    Only rows holding one of the search strings (every form
    ``expand_pairs`` lists: raw and JSON-escaped), found in SQL with a
    case-sensitive byte search, are looked at.

Two ways to replace
    A value that does not start with a serialized prefix (``a:``, ``s:``,
    ``O:`` ...) gets the plain replacement, which MariaDB computes itself:
    nested ``REPLACE()`` for plain pairs and ``REGEXP_REPLACE()`` for
    ``HostPair`` s, on the value's bytes (``CAST(... AS BINARY)``), which gives
    exactly the bytes ``plain_replace`` gives (the tests prove it on tricky
    data).  A value that starts with a serialized prefix is read, edited with
    ``replace_value`` in Python and written back only when it changed.

Each row once
    A replacement can turn a value into one that holds a search string again
    (``example.edu`` -> ``uat.example.edu``), or into one of the other kind.
    So the rows of one batch are sorted into the two kinds *before* anything is
    written, and each is then written by its exact key; batches follow each
    other in key order (keyset pagination on the primary key, or on a unique
    key of NOT NULL columns), so no row is ever replaced twice.  One batch is
    one transaction of at most ``batch_rows`` rows and about
    ``BATCH_BYTES`` of matching values, which also bounds memory.

Following a load
    With ``arriving`` the replace runs while the table is still being
    loaded in primary-key order (the pipeline's dump): the key-ordered
    batches of a column paged on the primary key stay behind the rows that
    have arrived and end with a pass begun after the load; everything else
    waits for the load to end (``replace_in_tables``).

Tables without such a key
    (and a column that is part of the only usable key, which keyset
    pagination must not move): the column's matching values are streamed,
    replaced in Python, collected in a temporary table of (old, new) values
    and written by one ``UPDATE ... JOIN``, which changes every row at most once
    and gives equal values the same result, so duplicate rows are handled.
    Such tables are reported with ``no_primary_key: true`` and a warning.

Counts
    ``rows_changed`` counts rows whose value really changed (MariaDB's
    affected rows: PyMySQL does not ask for found rows); rows that held a
    search string but came out the same are not written.  A dry run writes
    nothing and reports the counts a real run would produce.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    ConfigError, connect, quote_identifier, qualified, validate_identifier)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    SITE_DATA, MigrationError, error_code, failure_reason)
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import (
    SERIALIZED_PREFIXES, HostPair, expand_pairs, host_pair_regex, replace_value, shortest_needles)

PHASE = "replace"
TEXT_TYPES = frozenset(("char", "varchar", "tinytext", "text", "mediumtext", "longtext"))
UTF8_CHARSETS = frozenset(("utf8mb4", "utf8mb3", "utf8", "ascii"))
# Key column types whose values come back from PyMySQL in a form that finds the same row again.
# Not FLOAT (0.1 is not the float 0.1f), not TIMESTAMP (a local time can stand for two instants).
KEY_TYPES = frozenset(("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "year", "date", "datetime",
                       "char", "varchar", "binary", "varbinary", "enum"))
# Matching values one batch may hold (in Python, and in one transaction).
BATCH_BYTES = 32 * 1024 * 1024
SERVER = "server"
PYTHON = "python"
# Per-session scratch table of the no-key path; a temporary table shadows any real table of that name.
VALUE_MAP = "wfu_replace_value_map"
# Per-session scratch table of the keyed path: the new values of a batch, written to the table by one UPDATE ... JOIN.
NEW_VALUES = "wfu_replace_new_values"
# Rows of new values per INSERT into it (PyMySQL also splits a statement at about 1 MB).
NEW_VALUES_ROWS = 500
# Seconds between two looks at a table whose rows are still arriving (``arriving``).
FOLLOW_POLL = 0.05


class _Replacement:
    """One list of pairs in the forms the two paths need: SQL expressions and the pairs for ``replace_value``."""

    def __init__(self, pairs):
        self.pairs = tuple(pair if isinstance(pair, HostPair) else tuple(pair) for pair in pairs)
        # A pair that replaces a string by itself changes nothing, here or anywhere later in the chain.
        self.steps = [step for step in expand_pairs(self.pairs) if step[0] != step[1]]
        self.needles = _shortest_needles(step[0] for step in self.steps)

    def matches(self, column_sql):
        """SQL condition (and its parameters): the column holds one of the search strings, byte for byte."""
        one = "LOCATE(CAST(%%s AS BINARY), %s) > 0" % column_sql
        return "(" + " OR ".join([one] * len(self.needles)) + ")", list(self.needles)

    def expression(self, column_sql):
        """SQL expression (and its parameters) of the plain replacement of the column's bytes.

        ``REPLACE()`` is a left-to-right, non-overlapping, case-sensitive
        replacement like ``str.replace``.  In ``REGEXP_REPLACE()``'s replacement
        only ``\\`` is special (``\\1`` is a group), so it is doubled; ``(?-ix)``
        keeps the match case-sensitive and literal whatever the collation and
        the server's ``default_regex_flags``.
        """
        opened, closed, params = [], [], []
        for step in self.steps:
            search, replace = step
            if isinstance(step, HostPair):
                opened.append("REGEXP_REPLACE(")
                params += ["(?-ix)" + host_pair_regex(search), replace.replace("\\", "\\\\")]
            else:
                opened.append("REPLACE(")
                params += [search, replace]
            closed.append(", %s, %s)")
        return "".join(reversed(opened)) + "CAST(%s AS BINARY)" % column_sql + "".join(closed), params


def _shortest_needles(searches):
    """The search strings worth looking for, shortest first: a row holding a longer one that contains a shorter
    one also holds the shorter one."""
    return sorted(shortest_needles(searches), key=len)


class _Skips:
    """``skip_columns``: ``column`` (in every table) or ``table.column``."""

    def __init__(self, entries):
        self.everywhere = set()
        self.by_table = set()
        for entry in entries or ():
            if not isinstance(entry, str) or not entry.strip(".") or entry.count(".") > 1:
                raise ConfigError("skip_columns entries are 'column' or 'table.column', got %r" % (entry,))
            if "." in entry:
                self.by_table.add(tuple(entry.split(".")))
            else:
                self.everywhere.add(entry)

    def __call__(self, table, column):
        return column in self.everywhere or (table, column) in self.by_table


def replace_in_tables(conn_params, database, tables, pairs, skip_columns=(), dry_run=False, batch_rows=1000,
                      deadline=None, conn=None, arriving=None):
    """Apply ``pairs`` to every text column of ``tables`` in ``database``; see the module documentation.

    ``pairs`` are (search, replace) tuples or ``HostPair`` s, applied in order;
    ``conn_params`` a connection mapping or a ``db.Database``, ``deadline`` a
    ``deadline.Deadline`` that bounds the statements (and is looked at between
    batches, so a replace in a worker thread stops when the call is stopped).
    ``conn`` is an open connection to ``database`` (autocommit off) the caller
    keeps for several calls; without it the call opens and closes its own.

    ``arriving`` (a ``threading.Event``) says the tables are still being loaded
    while it is not set: each by autocommitted statements that add rows in
    primary-key order and never change a row once added (``mariadb-dump
    --order-by-primary`` piped into ``mariadb``).  The replacement then
    follows the load: a column paged on the primary key is replaced batch by
    batch behind the rows that have arrived (a row not yet visible has a
    larger key than every row already replaced, so none is missed or replaced
    twice), waiting for more while the event is unset; it ends with a last
    pass begun after the event was set.  Every other column (no primary key,
    paged on another key, not UTF-8) waits for the event first.  The table
    itself is waited for until it exists, and is done only once the event is
    set.  Returns::

        {database, dry_run, seconds, warnings: [text],
         rows_changed, rows_matched, bytes_matched, method_counts: {server, python},
         tables: {table: {columns: {column: rows changed},
                          rows_changed, rows_matched, bytes_matched, method_counts: {server, python},
                          key: [key columns] or None, no_primary_key, skipped_columns: {column: reason},
                          seconds}}}

    ``rows_matched`` counts rows whose column held a search string and
    ``rows_changed`` those whose value changed; both are summed over columns
    (a row changed in two columns counts twice, as WP-CLI counts
    replacements).  ``method_counts`` splits ``rows_changed`` by where the
    value was replaced (MariaDB or Python); ``bytes_matched`` is the size of
    the matching values.  With ``dry_run`` nothing is written and the counts
    are those a real run would report.  Failures raise ``MigrationError``
    naming the table and column.
    """
    validate_identifier(database, "database name")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ConfigError("batch_rows must be a positive integer, got %r" % (batch_rows,))
    tables = list(dict.fromkeys(tables))
    for table in tables:
        validate_identifier(table, "table name")
    replacement = _Replacement(pairs)
    skips = _Skips(skip_columns)
    started = time.monotonic()
    summary = {"database": database, "dry_run": bool(dry_run), "tables": {}, "warnings": [],
               "rows_changed": 0, "rows_matched": 0, "bytes_matched": 0, "method_counts": {SERVER: 0, PYTHON: 0}}
    owned = conn is None
    if owned:
        try:
            conn = connect(conn_params, database=database, autocommit=False, deadline=deadline)
        except Exception as exc:
            raise MigrationError.wrap(exc, phase=PHASE)
    with contextlib.closing(conn) if owned else contextlib.nullcontext(conn):
        _strict_session(conn)
        if arriving is not None and not arriving.is_set() and not _read_committed(conn):
            # No following without READ COMMITTED (see _read_committed): the load ends first.
            while not arriving.wait(FOLLOW_POLL):
                if deadline is not None and deadline.expired():
                    raise deadline.failure(tables[0] if tables else None)
        for table in tables:
            report = _TableReplacer(conn, conn_params, database, table, replacement, skips, dry_run,
                                    batch_rows, deadline, arriving).run()
            summary["tables"][table] = report
            summary["warnings"] += report.pop("warnings")
            for key in ("rows_changed", "rows_matched", "bytes_matched"):
                summary[key] += report[key]
            for method, count in report["method_counts"].items():
                summary["method_counts"][method] += count
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def _strict_session(conn):
    # In a non-strict session a REPLACE() result longer than max_allowed_packet becomes NULL
    # (or '' in a NOT NULL column) with a mere warning; strict mode makes it an error.
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')")
    except Exception as exc:
        raise MigrationError.wrap(exc, phase=PHASE)


def _read_committed(conn):
    """Put the session in READ COMMITTED, where a replace can follow a load (``arriving``); False if it cannot be.

    Under REPEATABLE READ an UPDATE that scans locks gaps, and the loader's next INSERT deadlocks with it; under
    READ COMMITTED the UPDATE locks only the rows it changes, rows the load has committed and never touches
    again.  Statement-based binary logging refuses READ COMMITTED writes.
    """
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@log_bin, @@binlog_format")
            log_bin, binlog_format = cur.fetchone()
            if int(log_bin) and str(binlog_format).upper() == "STATEMENT":
                return False
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return True
    except Exception as exc:
        raise MigrationError.wrap(exc, phase=PHASE)


class _TableReplacer:
    """The work on one table: its columns one after the other."""

    def __init__(self, conn, conn_params, database, table, replacement, skips, dry_run, batch_rows, deadline=None,
                 arriving=None):
        self.conn = conn
        self.arriving = arriving
        self.primary = None
        self.conn_params = conn_params
        self.deadline = deadline
        self.database = database
        self.table = table
        self.name = qualified(database, table)
        self.replacement = replacement
        self.skips = skips
        self.dry_run = dry_run
        self.batch_rows = batch_rows
        self.column = None
        self._scratch = None  # (column, key) the scratch table of new values was made for

    def run(self):
        started = time.monotonic()
        report = {"columns": {}, "rows_changed": 0, "rows_matched": 0, "bytes_matched": 0,
                  "method_counts": {SERVER: 0, PYTHON: 0}, "key": None, "no_primary_key": False,
                  "skipped_columns": {}, "warnings": []}
        try:
            self._wait_for_table()
            columns, skipped, types = self._columns()
            keys = self._usable_keys(types)
            report["skipped_columns"] = skipped
            report["key"] = list(keys[0]) if keys else None
            report["no_primary_key"] = not keys
            if not keys and columns:
                report["warnings"].append(
                    "table %s has no primary key and no unique key of NOT NULL columns: its values were replaced "
                    "one distinct value at a time" % self.table)
            for column, utf8 in columns:
                self.column = column
                if not self.replacement.needles:
                    counts = _Counts()
                elif not utf8:
                    self._wait_until_loaded()
                    counts = self._refuse_other_charset(column, report)
                else:
                    key = next((k for k in keys if column not in k), None)
                    if key is None and keys:
                        report["warnings"].append(
                            "column %s.%s is part of every usable key of the table: its values were replaced one "
                            "distinct value at a time" % (self.table, column))
                    following = key is not None and key == self.primary
                    if not following:
                        self._wait_until_loaded()
                    counts = self._by_key(column, key, following) if key else self._by_value(column)
                report["columns"][column] = counts.changed
                report["rows_changed"] += counts.changed
                report["rows_matched"] += counts.matched
                report["bytes_matched"] += counts.bytes
                for method in (SERVER, PYTHON):
                    report["method_counts"][method] += counts.by_method[method]
            # A table without text columns is done at once; the caller's next step needs it loaded.
            self._wait_until_loaded()
            self.conn.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.conn.rollback()
            raise self._error(exc)
        report["seconds"] = round(time.monotonic() - started, 3)
        return report

    def _loading(self):
        return self.arriving is not None and not self.arriving.is_set()

    def _wait_for_table(self):
        """While the table is being loaded: wait until the load has created it."""
        while self._loading():
            with self.conn.cursor() as cur:
                cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                            (self.database, self.table))
                if cur.fetchone():
                    return
            self._pause()

    def _wait_until_loaded(self):
        while self._loading():
            self._pause()

    def _pause(self):
        """Wait a little for more rows (or the end of the load); the deadline still stops the call."""
        self._check_deadline()
        self.arriving.wait(FOLLOW_POLL)
        self._check_deadline()

    def _check_deadline(self):
        """Outside the thread that armed it a deadline raises nothing by itself: stop at the next batch."""
        if self.deadline is not None and self.deadline.expired():
            raise self.deadline.failure(self.table)

    def _error(self, exc):
        where = "column %s: " % self.column if self.column else ""
        if isinstance(exc, MigrationError):
            if self.column and self.column not in exc.message:
                exc.message = where + exc.message
            return MigrationError.wrap(exc, table=self.table, phase=PHASE)
        text = exc.args[1] if error_code(exc) is not None and len(exc.args) > 1 else str(exc) or type(exc).__name__
        error = MigrationError("search-replace failed in %s%s" % (where, text), table=self.table, phase=PHASE,
                               error_code=error_code(exc), reason=failure_reason(exc))
        error.__cause__ = exc
        return error

    # -- the table's shape ------------------------------------------------------------------

    def _columns(self):
        """[(column, is UTF-8)] to work on, {column: why not} for the text columns left alone, and
        {column: data type} for all columns."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                        (self.database, self.table))
            found = cur.fetchone()
            if not found or found[0] != "BASE TABLE":
                raise MigrationError("%s is not a table in database %s" % (self.table, self.database),
                                     table=self.table, phase=PHASE, reason=SITE_DATA)
            cur.execute("SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME, IS_GENERATED FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                        (self.database, self.table))
            rows = cur.fetchall()
        columns, skipped = [], {}
        types = {row[0]: row[1].lower() for row in rows}
        for name, data_type, charset, generated in rows:
            if data_type.lower() not in TEXT_TYPES:
                continue
            if self.skips(self.table, name):
                skipped[name] = "skip_columns"
            elif generated != "NEVER":
                skipped[name] = "generated column"
            else:
                self._checked_name(name)
                columns.append((name, (charset or "").lower() in UTF8_CHARSETS))
        return columns, skipped, types

    def _usable_keys(self, types):
        """Keys that identify a row and order rows: PRIMARY first, then unique keys of NOT NULL columns."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT INDEX_NAME, COLUMN_NAME, SUB_PART, NULLABLE, INDEX_TYPE FROM information_schema.STATISTICS "
                        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                        (self.database, self.table))
            rows = cur.fetchall()
        keys, unusable = {}, set()
        for index, column, sub_part, nullable, index_type in rows:
            keys.setdefault(index, []).append(column)
            # A prefix, a NULL or a hash (long unique) key cannot order and identify rows by itself.
            if sub_part is not None or nullable == "YES" or index_type != "BTREE" or types[column] not in KEY_TYPES:
                unusable.add(index)
        usable = [tuple(cols) for index, cols in keys.items() if index not in unusable]
        if "PRIMARY" in keys and "PRIMARY" not in unusable:
            # The order a load with --order-by-primary adds rows in (``arriving``).
            self.primary = tuple(keys["PRIMARY"])
        usable.sort(key=lambda cols: (cols != tuple(keys.get("PRIMARY", ())), len(cols)))
        for cols in usable:
            for column in cols:
                self._checked_name(column)
        return usable

    def _checked_name(self, column):
        try:
            return validate_identifier(column, "column name")
        except ConfigError as exc:
            raise MigrationError("%s; rename the column or list it in skip_columns" % exc, table=self.table,
                                 phase=PHASE, reason=SITE_DATA)

    def _refuse_other_charset(self, column, report):
        column_sql = "CONVERT(%s USING utf8mb4)" % quote_identifier(column)
        condition, params = self.replacement.matches(column_sql)
        with self.conn.cursor() as cur:
            cur.execute("SELECT 1 FROM %s WHERE %s LIMIT 1" % (self.name, condition), params)
            found = cur.fetchone()
        if found:
            raise MigrationError(
                "column %s is not in a UTF-8 character set and holds search strings; serialized lengths are counted "
                "in UTF-8 bytes, so it cannot be edited safely" % column, table=self.table, phase=PHASE,
                reason=SITE_DATA,
                hint="Convert the table to utf8mb4 in the source (as WordPress's own upgrade does), or list the "
                     "column in skip_columns, then retry the site with retry_failed=true.")
        report["skipped_columns"][column] = "not UTF-8, no search string found"
        report["warnings"].append("column %s.%s is not in a UTF-8 character set; no search string occurs in it, "
                                  "so it was left alone" % (self.table, column))
        return _Counts()

    # -- tables with a key: batches in key order --------------------------------------------

    def _by_key(self, column, key, following=False):
        """Batches in ``key`` order; ``following``: behind a load that adds rows in this order (``arriving``)."""
        counts = _Counts()
        quoted = quote_identifier(column)
        key_sql = ", ".join(quote_identifier(k) for k in key)
        matches, match_params = self.replacement.matches(quoted)
        serialized = "CAST(LEFT(%s, 2) AS BINARY) IN (%s)" % (quoted, ", ".join(["%s"] * len(SERIALIZED_PREFIXES)))
        last = None
        while True:
            self._check_deadline()
            # Looked at before the read: a batch that comes back short is the end only if the load had ended
            # before it was read.
            settled = not (following and self._loading())
            after, after_params = _after(key, last)
            with self.conn.cursor() as cur:
                cur.execute("SELECT %s, %s, LENGTH(%s) FROM %s WHERE %s AND %s ORDER BY %s LIMIT %d"
                            % (key_sql, serialized, quoted, self.name, after, matches, key_sql, self.batch_rows),
                            list(SERIALIZED_PREFIXES) + after_params + match_params)
                rows = cur.fetchall()
            if not rows:
                if settled:
                    return counts
                self.conn.commit()  # a new snapshot for the next look
                self._pause()
                continue
            batch = _within_batch_bytes(rows)
            width = len(key)
            in_server = [row[:width] for row in batch if not row[width]]
            in_python = [row[:width] for row in batch if row[width]]
            counts.matched += len(batch)
            counts.bytes += sum(row[width + 1] for row in batch)
            if in_server:
                counts.by_method[SERVER] += self._server_batch(quoted, key, in_server)
            if in_python:
                counts.by_method[PYTHON] += self._python_batch(quoted, key, in_python)
            self.conn.commit()
            last = batch[-1][:width]
            if len(batch) == len(rows) < self.batch_rows:
                if settled:
                    return counts
                self._pause()

    def _server_batch(self, quoted, key, keys):
        """Replace the plain values of the rows with these keys in MariaDB; return how many changed."""
        expression, expression_params = self.replacement.expression(quoted)
        where, where_params = _key_in(key, keys)
        with self.conn.cursor() as cur:
            if self.dry_run:
                cur.execute("SELECT COUNT(*) FROM %s WHERE %s AND CAST(%s AS BINARY) <> %s"
                            % (self.name, where, quoted, expression), where_params + expression_params)
                return cur.fetchone()[0]
            cur.execute("UPDATE %s SET %s = %s WHERE %s" % (self.name, quoted, expression, where),
                        expression_params + where_params)
            changed = cur.rowcount
            if cur.warning_count:
                _raise_warnings(cur)
        return changed

    def _python_batch(self, quoted, key, keys):
        """Replace the serialized-looking values of the rows with these keys in Python; return how many changed."""
        where, where_params = _key_in(key, keys)
        width = len(key)
        with self.conn.cursor() as cur:
            cur.execute("SELECT %s, %s FROM %s WHERE %s"
                        % (", ".join(quote_identifier(k) for k in key), quoted, self.name, where), where_params)
            rows = cur.fetchall()
            if len(rows) != len(keys):
                raise MigrationError("%d of %d rows could not be found again by their key (%s)"
                                     % (len(keys) - len(rows), len(keys), ", ".join(key)), reason=SITE_DATA)
            updates = []
            for row in rows:
                value = row[width]
                replaced = replace_value(value, self.replacement.pairs)
                if replaced != value:
                    updates.append((replaced,) + tuple(row[:width]))
            if self.dry_run or not updates:
                return len(updates)
            return self._write_back(cur, quoted, key, updates)

    def _write_back(self, cur, quoted, key, updates):
        """Write ``[(new value, key...)]``: into the session's scratch table (a few multi-row INSERTs), then into the
        table by one ``UPDATE ... JOIN`` on the key, instead of one UPDATE and one round trip per row."""
        names = [quote_identifier(k) for k in key]
        scratch = quote_identifier(NEW_VALUES)
        if self._scratch != (quoted, tuple(key)):
            # The key's and the column's types as the table has them (CREATE ... SELECT copies them, charset and
            # collation included); a temporary table goes with the connection, whatever happens.
            cur.execute("DROP TEMPORARY TABLE IF EXISTS %s" % scratch)
            # No index of its own: a batch is small, and the JOIN looks each of its rows up by the table's key.
            cur.execute("CREATE TEMPORARY TABLE %s SELECT %s, %s FROM %s LIMIT 0"
                        % (scratch, ", ".join(names), quoted, self.name))
            self._scratch = (quoted, tuple(key))
        else:
            cur.execute("DELETE FROM %s" % scratch)
        insert = "INSERT INTO %s (%s, %s) VALUES (%s)" % (scratch, quoted, ", ".join(names),
                                                          ", ".join(["%s"] * (len(key) + 1)))
        for start in range(0, len(updates), NEW_VALUES_ROWS):
            cur.executemany(insert, updates[start:start + NEW_VALUES_ROWS])
        cur.execute("UPDATE %s AS t JOIN %s AS n ON %s SET t.%s = n.%s" % (
            self.name, scratch, " AND ".join("t.%s = n.%s" % (name, name) for name in names), quoted, quoted))
        changed = cur.rowcount
        if cur.warning_count:
            _raise_warnings(cur)
        return changed

    # -- tables without a usable key: one distinct value at a time ---------------------------

    def _by_value(self, column):
        counts = _Counts()
        quoted = quote_identifier(column)
        matches, match_params = self.replacement.matches(quoted)
        if not self.dry_run:
            self._create_value_map()
        # The map lives as long as the connection: after a failure, closing the connection drops it.
        pending, pending_bytes = {}, 0
        reader = connect(self.conn_params, database=self.database, streaming=True, deadline=self.deadline)
        with contextlib.closing(reader), reader.cursor() as stream:
            stream.execute("SELECT %s, LENGTH(%s) FROM %s WHERE %s" % (quoted, quoted, self.name, matches),
                           match_params)
            for value, size in stream:
                if counts.matched % 1000 == 0:
                    self._check_deadline()
                counts.matched += 1
                counts.bytes += size
                replaced = replace_value(value, self.replacement.pairs)
                if replaced == value:
                    continue
                counts.by_method[PYTHON] += 1
                if self.dry_run:
                    continue
                old = value.encode("utf-8")
                digest = hashlib.sha256(old).digest()
                if digest not in pending:
                    pending[digest] = (digest, old, replaced.encode("utf-8"))
                    pending_bytes += size + len(pending[digest][2])
                if pending_bytes > BATCH_BYTES:
                    self._store_values(pending.values())
                    pending, pending_bytes = {}, 0
        if not self.dry_run:
            self._store_values(pending.values())
            counts.by_method[PYTHON] = self._apply_value_map(quoted)
        return counts

    def _create_value_map(self):
        with self.conn.cursor() as cur:
            cur.execute("DROP TEMPORARY TABLE IF EXISTS %s" % quote_identifier(VALUE_MAP))
            cur.execute("CREATE TEMPORARY TABLE %s (digest BINARY(32) NOT NULL PRIMARY KEY, old_value LONGBLOB NOT NULL, "
                        "new_value LONGBLOB NOT NULL) ENGINE=InnoDB" % quote_identifier(VALUE_MAP))

    def _store_values(self, rows):
        rows = list(rows)
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO %s (digest, old_value, new_value) VALUES (%%s, %%s, %%s) "
                                "ON DUPLICATE KEY UPDATE digest = digest" % quote_identifier(VALUE_MAP), rows)

    def _apply_value_map(self, quoted):
        # STRAIGHT_JOIN: read the table once and look each value up in the map, never the other way round.
        # MariaDB reads the whole join before it writes (the updated column is in the join condition),
        # so a value written here is never looked up again.
        with self.conn.cursor() as cur:
            cur.execute("UPDATE %s AS t STRAIGHT_JOIN %s AS m ON m.digest = UNHEX(SHA2(t.%s, 256)) "
                        "AND m.old_value = CAST(t.%s AS BINARY) SET t.%s = m.new_value"
                        % (self.name, quote_identifier(VALUE_MAP), quoted, quoted, quoted))
            changed = cur.rowcount
            if cur.warning_count:
                _raise_warnings(cur)
            cur.execute("DROP TEMPORARY TABLE %s" % quote_identifier(VALUE_MAP))
        self.conn.commit()
        return changed


class _Counts:
    __slots__ = ("matched", "bytes", "by_method")

    def __init__(self):
        self.matched = 0
        self.bytes = 0
        self.by_method = {SERVER: 0, PYTHON: 0}

    @property
    def changed(self):
        return self.by_method[SERVER] + self.by_method[PYTHON]


def _within_batch_bytes(rows):
    """The first rows of a batch whose matching values stay within BATCH_BYTES (at least one row)."""
    total = 0
    for count, row in enumerate(rows, 1):
        total += row[-1]
        if total >= BATCH_BYTES:
            return rows[:count]
    return rows


def _after(key, last):
    """SQL condition (and parameters): the key comes after ``last`` in key order; TRUE before the first batch.

    Written as ``k1 > a OR (k1 = a AND k2 > b)``, which MariaDB reads as index
    ranges (it scans the whole index for a row comparison ``(k1, k2) > (a, b)``).
    """
    if last is None:
        return "TRUE", []
    alternatives, params = [], []
    for position, column in enumerate(key):
        equal = ["%s = %%s" % quote_identifier(k) for k in key[:position]]
        alternatives.append("(" + " AND ".join(equal + ["%s > %%s" % quote_identifier(column)]) + ")")
        params += list(last[:position + 1])
    return "(" + " OR ".join(alternatives) + ")", params


def _key_in(key, keys):
    """SQL condition (and parameters): the row's key is one of ``keys``."""
    columns = ", ".join(quote_identifier(k) for k in key)
    one = "(" + ", ".join(["%s"] * len(key)) + ")"
    params = [value for row in keys for value in row]
    if len(key) == 1:
        return "%s IN (%s)" % (columns, ", ".join(["%s"] * len(keys))), params
    return "(%s) IN (%s)" % (columns, ", ".join([one] * len(keys))), params


def _raise_warnings(cur):
    # A warning from REPLACE()/REGEXP_REPLACE() means a value may not have been replaced as asked;
    # the caller rolls the batch back.
    cur.execute("SHOW WARNINGS")
    texts = "; ".join("%s %s: %s" % tuple(row) for row in cur.fetchall()[:5])
    raise MigrationError("MariaDB warned while replacing: %s" % texts, reason=SITE_DATA)
