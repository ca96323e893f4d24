# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backups a migration keeps of what it replaced, and the way back to them.

Layout, with ``backup_dir`` and ``backup_name`` (the migration id)::

    <backup_dir>/<backup_name>/site-<N>.sql.gz   the target's tables of site N before the swap
    <backup_dir>/<backup_name>/site-<N>.json     its manifest
    <backup_dir>/<backup_name>/network.sql.gz    the network tables (network.json)

A file is never overwritten: when a site is migrated again under the same name (a retry after a failure, or
``skip_completed=false``), its backup goes to ``site-<N>-2.sql.gz`` (``-3``...).  The first one holds the target as
it was before the migration first replaced the site, and it is the one a rollback restores.  Each file is written
under a temporary name and linked to its final name, which fails rather than replaces an existing file.

The manifest records the site (or ``network``), the migration, the target environment and database, the tables
dumped and their row counts (counted in the dump itself, so they are the dump's snapshot), the site's tables
before the migration, whether it was new to the target (it had none) and whether its ``wp_blogs`` row existed,
and the size and SHA-256 of the dump.  A site new to the target gets a manifest without a dump.

``Rollback`` puts a backup back: it checks the manifest and the dump (SHA-256, gzip integrity, row counts,
tables, the site and target database it is of) before it touches anything, loads the dump into the target
under staging names (``wfu_stage__*``), verifies the row counts, and swaps with one ``RENAME TABLE`` (live →
``wfu_old__*``, staged → live, tables the migration added → ``wfu_old__*``), then drops the ``wfu_old__*``
tables.  A site that was new to the target loses its tables and its ``wp_blogs`` row.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
import zlib

from ansible_collections.wfu.multisite.plugins.module_utils import server_locks
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import (
    CHUNK, DumpRewriter, _error_text, dump_to_file, load_command, required_client_tools, spawn_client)
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, Database, qualified
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    CONFIGURATION, SYSTEMIC_REASONS, TIMEOUT, VERIFICATION, MigrationError, failure_reason, message_error_code,
    message_reason)

MANIFEST_KIND = "wfu.multisite backup"
MANIFEST_FORMAT = 1
BACKUP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LOCK_WAIT = 60
CLEANUP_CONNECT_TIMEOUT = 5
CLEANUP_STATEMENT_TIMEOUT = 30

_INSERT_HEAD = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES")
_CREATE_HEAD = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
# A quoted value of a dump (mariadb-dump escapes with backslashes; binary columns are hex, unquoted).
_QUOTED = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'")


class BackupError(MigrationError):
    """A backup that cannot be used: missing, damaged, or not the one asked for.  Nothing was changed."""

    def __init__(self, message, site_id=None, table=None):
        super().__init__(message, site_id=site_id, table=table, phase="verify_backup", failure_class="site",
                         reason=VERIFICATION,
                         hint="nothing was changed; use the backup of this site written by this migration (check "
                              "backup_dir and the migration id), or restore the target another way")


def validate_backup_name(name):
    """A backup name is one path component: letters, digits, ``.``, ``_``, ``-`` (a migration id)."""
    if not isinstance(name, str) or not BACKUP_NAME_RE.match(name) or ".." in name:
        raise ConfigError("invalid backup_name %r: use letters, digits, '.', '_' and '-' (a migration id)" % (name,))
    return name


def owner_of_param(value):
    """``'network'`` or a site id (int) from a module parameter."""
    if isinstance(value, str) and value.strip().lower() == "network":
        return "network"
    return tbl.validate_site_id(value)


def stem(owner, attempt=1):
    """``site-43``, ``site-43-2``, ``network``, ``network-2``."""
    base = "network" if owner == "network" else "site-%d" % int(owner)
    return base if attempt == 1 else "%s-%d" % (base, attempt)


def backup_paths(backup_dir, backup_name, owner, attempt=1):
    """``(dump, manifest)`` paths of a backup."""
    directory = os.path.join(os.path.expanduser(backup_dir), validate_backup_name(backup_name))
    name = stem(owner, attempt)
    return os.path.join(directory, name + ".sql.gz"), os.path.join(directory, name + ".json")


def _free_slot(backup_dir, backup_name, owner):
    """The first backup name without a dump or a manifest.  Called under the owner's server-side lock, so a
    temporary file found there is what a killed call left: it is removed and the name used."""
    for attempt in range(1, 1000):
        dump, manifest = backup_paths(backup_dir, backup_name, owner, attempt)
        if not any(os.path.lexists(p) for p in (dump, manifest)):
            for stale in (dump + ".new", dump + ".new.partial"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stale)
            return dump, manifest
    raise MigrationError("no free backup name for %s in %s" % (stem(owner), os.path.dirname(dump)), phase="backup",
                         reason=CONFIGURATION)


def _link_new(temporary, final):
    """Give ``temporary`` the name ``final`` unless ``final`` exists (then FileExistsError); fsync the directory."""
    try:
        os.link(temporary, final)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    fd = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_new(path, data):
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=".wfu-", suffix=".tmp", dir=directory)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _link_new(temporary, path)


class _HashingReader:
    """A raw file whose bytes are hashed and counted as they are read."""

    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size=-1):
        data = self.raw.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def readable(self):
        return True

    def finish(self):
        for data in iter(lambda: self.raw.read(CHUNK), b""):
            self.digest.update(data)
            self.size += len(data)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for data in iter(lambda: handle.read(CHUNK), b""):
            digest.update(data)
    return digest.hexdigest()


def _unquote(name):
    return name.replace(b"``", b"`").decode("utf-8")


def scan_dump(path, deadline=None):
    """Read a gzip dump once: ``{sha256, size, rows: {table: rows}, tables: [created tables]}``.

    The gzip stream is decompressed to its end (its CRC and length are checked); rows are counted in the dump's
    INSERT statements, one or many rows a line (outside quotes a row holds no parenthesis: binary values are hex).
    Raises OSError, EOFError, zlib.error or gzip.BadGzipFile on a damaged file.
    """
    deadline = deadline or Deadline()
    rows, created = {}, []
    current = None
    with open(path, "rb") as raw:
        reader = _HashingReader(raw)
        with gzip.GzipFile(fileobj=reader, mode="rb") as stream:
            for number, line in enumerate(stream):
                if number % 1024 == 0 and deadline.expired():
                    raise deadline.failure()
                if current is None:
                    head = _INSERT_HEAD.match(line)
                    if not head:
                        head = _CREATE_HEAD.match(line)
                        if head:
                            created.append(_unquote(head.group(1)))
                            rows.setdefault(created[-1], 0)
                        continue
                    current, line = _unquote(head.group(1)), line[head.end():]
                # A statement's rows are on its line or on lines of their own; a quoted value never holds a newline.
                body = _QUOTED.sub(b"''", line)
                rows[current] = rows.get(current, 0) + body.count(b"(")
                if body.rstrip().endswith(b";"):
                    current = None
        reader.finish()
    return {"sha256": reader.digest.hexdigest(), "size": reader.size, "rows": rows, "tables": created}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_backup(target, tables, backup_dir, backup_name, owner, work_dir=None, deadline=None):
    """Dump ``tables`` of the ``target`` endpoint (``pipeline.Endpoint``) of ``owner`` and write its manifest.

    Called before the swap, under the owner's server-side lock.  Returns what the module reports:
    ``{path, manifest, size, sha256, tables: {table: rows}, new_to_target}`` (``path`` None without tables).
    """
    backup_name = validate_backup_name(backup_name)
    deadline = deadline or Deadline()
    with contextlib.closing(target.db.connect(deadline=deadline)) as conn:
        present = tbl.list_tables(conn, target.database)
        if owner == "network":
            before = tbl.network_tables(present, target.prefix, include_users=True)
            blog_row = None
        else:
            before = tbl.site_tables(present, target.prefix, owner)
            blog_row = _blog_row_exists(conn, target, present, owner)
    try:
        os.makedirs(os.path.join(os.path.expanduser(backup_dir), backup_name), mode=0o700, exist_ok=True)
        dump, manifest = _free_slot(backup_dir, backup_name, owner)
    except OSError as exc:
        raise _write_error(os.path.join(backup_dir, backup_name), exc) from exc
    tables = sorted(tables)
    scanned = {"sha256": None, "size": 0, "rows": {}}
    wrote_dump = False
    try:
        if tables:
            dump_to_file(target.db, tables, dump + ".new", work_dir=work_dir, deadline=deadline)
            _link_new(dump + ".new", dump)
            wrote_dump = True
            scanned = scan_dump(dump, deadline)
            missing = sorted(set(tables) - set(scanned["tables"]))
            if missing:
                raise MigrationError("the backup dump %s lacks the tables %s" % (dump, ", ".join(missing)),
                                     phase="backup", reason=VERIFICATION)
        data = {
            "kind": MANIFEST_KIND, "format": MANIFEST_FORMAT, "created": _now(),
            "site_id": owner, "migration_id": backup_name,
            "target_env": target.name, "target_database": target.database, "target_server": target.db.server(),
            "table_prefix": target.prefix,
            "tables": {t: scanned["rows"].get(t, 0) for t in tables},
            "tables_before": before,
            "new_to_target": not before,
            "blog_row_existed": blog_row,
            "file": os.path.basename(dump) if tables else None,
            "size": scanned["size"], "sha256": scanned["sha256"],
        }
        _write_json_new(manifest, data)
    except BaseException as exc:
        if wrote_dump:
            with contextlib.suppress(OSError):
                os.unlink(dump)
        if isinstance(exc, OSError):
            raise _write_error(manifest, exc) from exc
        raise
    return {"path": dump if tables else None, "manifest": manifest, "size": data["size"], "sha256": data["sha256"],
            "tables": data["tables"], "new_to_target": data["new_to_target"]}


def _write_error(path, exc):
    reason = failure_reason(exc)
    return MigrationError("cannot write the backup %s: %s" % (path, exc), phase="backup",
                          reason=reason if reason in SYSTEMIC_REASONS else CONFIGURATION,
                          hint="make backup_dir a writable directory with room for the dump")


def _blog_row_exists(conn, target, present, site_id):
    blogs = target.prefix + "blogs"
    if blogs not in present:
        return None
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM %s WHERE blog_id = %%s" % qualified(target.database, blogs), (site_id,))
        return cur.fetchone() is not None


# -- the way back ----------------------------------------------------------------------------------------------------

def read_backup(backup_dir, backup_name, owner, target, deadline=None):
    """The manifest of ``owner``'s backup, checked against the dump and the ``target`` endpoint; raises BackupError.

    Returns the manifest with ``path`` and ``manifest`` (the files' paths) added.
    """
    site_id = owner if owner != "network" else None
    dump, manifest_path = backup_paths(backup_dir, backup_name, owner)
    # The first backup with a manifest: a dump left without one (its call was killed before the manifest, so
    # before its swap) is passed over.
    attempt, found = 1, (dump, manifest_path)
    while os.path.lexists(found[0]) and not os.path.lexists(found[1]) and attempt < 1000:
        attempt += 1
        found = backup_paths(backup_dir, backup_name, owner, attempt)
    if os.path.lexists(found[1]):
        dump, manifest_path = found
    what = "the backup of %s" % server_locks.owner_label(owner)
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise BackupError("%s is missing: there is no %s" % (what, manifest_path), site_id=site_id) from None
    except (OSError, ValueError) as exc:
        raise BackupError("%s cannot be read: %s: %s" % (what, manifest_path, exc), site_id=site_id) from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise BackupError("%s is not a backup manifest of wfu.multisite" % manifest_path, site_id=site_id)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError("%s has format %r; this version reads format %d"
                          % (manifest_path, manifest.get("format"), MANIFEST_FORMAT), site_id=site_id)
    expected = {"site_id": owner, "migration_id": backup_name, "target_database": target.database,
                "table_prefix": target.prefix}
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise BackupError("%s is of another %s: it says %s=%r, not %r (a foreign backup)"
                              % (manifest_path, key.replace("_", " "), key, manifest.get(key), value), site_id=site_id)
    counts = manifest.get("tables")
    before = manifest.get("tables_before")
    if not isinstance(counts, dict) or not isinstance(before, list):
        raise BackupError("%s lists no tables" % manifest_path, site_id=site_id)
    owned = set(_owned(list(counts) + before, target.prefix, owner))
    strangers = sorted((set(counts) | set(before)) - owned)
    if strangers:
        raise BackupError("%s names tables that are not %s's: %s" % (manifest_path, server_locks.owner_label(owner),
                                                                     ", ".join(strangers)), site_id=site_id)
    manifest["manifest"] = manifest_path
    manifest["path"] = None
    if not counts:
        return manifest
    if manifest.get("file") != os.path.basename(dump):
        raise BackupError("%s names the dump %r, not %s" % (manifest_path, manifest.get("file"),
                                                            os.path.basename(dump)), site_id=site_id)
    try:
        size = os.path.getsize(dump)
    except OSError as exc:
        raise BackupError("%s is missing its dump %s: %s" % (what, dump, exc.strerror or exc), site_id=site_id) from exc
    if size != manifest.get("size"):
        raise BackupError("the backup dump %s has %d bytes, its manifest says %s (truncated or replaced)"
                          % (dump, size, manifest.get("size")), site_id=site_id)
    try:
        digest = file_sha256(dump)
        if digest != manifest.get("sha256"):
            raise BackupError("the backup dump %s has sha256 %s, its manifest says %s (damaged or replaced)"
                              % (dump, digest, manifest.get("sha256")), site_id=site_id)
        scanned = scan_dump(dump, deadline)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupError("the backup dump %s is damaged: %s" % (dump, exc), site_id=site_id) from exc
    if scanned["sha256"] != digest:
        raise BackupError("the backup dump %s changed while it was read" % dump, site_id=site_id)
    if sorted(scanned["tables"]) != sorted(counts):
        raise BackupError("the backup dump %s holds the tables %s, its manifest lists %s"
                          % (dump, ", ".join(sorted(scanned["tables"])), ", ".join(sorted(counts))), site_id=site_id)
    for table, rows in sorted(counts.items()):
        if scanned["rows"].get(table) != rows:
            raise BackupError("the backup dump %s holds %s rows of %s, its manifest says %s"
                              % (dump, scanned["rows"].get(table), table, rows), site_id=site_id, table=table)
    manifest["path"] = dump
    return manifest


def _owned(tables, prefix, owner):
    if owner == "network":
        return tbl.network_tables(tables, prefix, include_users=True)
    return tbl.site_tables(tables, prefix, owner)


class RollbackTimeout(MigrationError):
    """The rollback ran out of its time budget."""


class Rollback:
    """Put the backup of one site (or of the network tables) of a migration back into the target."""

    def __init__(self, target, migration_db, backup_dir, backup_name, owner, options=None, check_mode=False):
        self.target = target.playing("target")
        self.migration = Database.from_params(migration_db, role="migration")
        if not self.migration.database:
            raise ConfigError("migration_db.database is missing")
        if self.target.db.same_database(self.migration):
            raise ConfigError("the migration database %s is the %s environment's database"
                              % (self.migration.database, self.target.name))
        if not backup_dir:
            raise ConfigError("backup_dir is required: it holds the backups to restore")
        self.backup_dir = backup_dir
        self.backup_name = validate_backup_name(backup_name)
        self.owner = owner_of_param(owner)
        self.options = dict(options or {})
        lock_wait = self.options.get("lock_wait", LOCK_WAIT)
        if isinstance(lock_wait, bool) or not isinstance(lock_wait, int) or lock_wait < 0:
            raise ConfigError("lock_wait must be a number of seconds >= 0, got %r" % (lock_wait,))
        self.check_mode = check_mode
        self.deadline = Deadline()
        self.durations = {}
        self.phase = None
        self.created_stage = []
        self.swap = None
        self.locks = []
        self.fetched = []

    def _site_id(self):
        return self.owner if self.owner != "network" else None

    @contextlib.contextmanager
    def _phase(self, name):
        self.phase = name
        start = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(self.durations.get(name, 0.0) + time.monotonic() - start, 3)

    def _timeout_error(self, table=None):
        return RollbackTimeout("the rollback of %s did not finish within %s s (phase %s)"
                               % (server_locks.owner_label(self.owner), self.deadline.seconds, self.phase),
                               site_id=self._site_id(), table=table, phase=self.phase, reason=TIMEOUT,
                               hint="raise the timeout of the rollback")

    def run(self, timeout=0, watch_pid=None):
        self.deadline = Deadline(timeout, error=self._timeout_error)
        try:
            with self.deadline.armed(), self.deadline.stop_when_gone(watch_pid):
                return self._run()
        except Exception as exc:
            error = MigrationError.wrap(exc, site_id=self._site_id(), phase=self.phase)
            error.phase = error.phase or self.phase
            error = self.deadline.blame(error)
            error.cleanup = self._cleanup_after_failure()
            error.durations = dict(self.durations)
            error.timed_out = isinstance(exc, RollbackTimeout)
            raise error from exc

    def _plan(self, conn, manifest):
        present = tbl.list_tables(conn, self.target.database)
        current = _owned(present, self.target.prefix, self.owner)
        restore = dict(manifest["tables"])
        before = set(manifest["tables_before"])
        drop = sorted(set(current) - before)
        missing = sorted(before - set(current) - set(restore))
        delete_row = False
        if self.owner != "network" and (manifest.get("new_to_target") or manifest.get("blog_row_existed") is False):
            delete_row = bool(_blog_row_exists(conn, self.target, present, self.owner))
        return {"site_id": self.owner, "restore": restore, "drop": drop, "replace": sorted(set(restore) & set(current)),
                "missing": missing, "delete_blog_row": delete_row, "new_to_target": bool(manifest.get("new_to_target")),
                "present": present}

    def _report_backup(self, manifest):
        return {"file": manifest["path"], "manifest": manifest["manifest"], "size": manifest.get("size"),
                "sha256": manifest.get("sha256"), "created": manifest.get("created"),
                "target_env": manifest.get("target_env"), "fetched_from_s3": list(self.fetched)}

    def _fetch_from_s3(self):
        """With backup_s3, bring the backup from the bucket when backup_dir lacks it (see backup_s3.py)."""
        from ansible_collections.wfu.multisite.plugins.module_utils import backup_s3

        location = backup_s3.backup_location(self.options.get("backup_s3"))
        if location is None:
            return []
        for attempt in range(1, 1000):
            dump, manifest = backup_paths(self.backup_dir, self.backup_name, self.owner, attempt)
            if os.path.lexists(manifest):
                return []
            if not os.path.lexists(dump):
                return backup_s3.fetch_backup(location, self.backup_dir, self.backup_name, stem(self.owner, attempt))
        return []

    def _run(self):
        with self._phase("verify_backup"):
            self.fetched = self._fetch_from_s3()
            manifest = read_backup(self.backup_dir, self.backup_name, self.owner, self.target, self.deadline)
        if self.check_mode:
            with contextlib.closing(self.target.db.connect(deadline=self.deadline)) as conn:
                plan = self._plan(conn, manifest)
            plan.pop("present")
            return {"changed": bool(plan["restore"] or plan["drop"] or plan["delete_blog_row"]), "site_id": self.owner,
                    "plan": plan, "backup": self._report_backup(manifest), "durations": dict(self.durations)}
        with contextlib.ExitStack() as stack:
            with self._phase("connect"):
                conn = stack.enter_context(contextlib.closing(self.target.db.connect(deadline=self.deadline)))
                mig_conn = stack.enter_context(contextlib.closing(self.migration.connect(deadline=self.deadline)))
            with self._phase("lock"):
                for connection, database in ((conn, self.target.db), (mig_conn, self.migration)):
                    wait = self.options.get("lock_wait", LOCK_WAIT)
                    remaining = self.deadline.remaining()
                    if remaining is not None:
                        wait = min(wait, int(remaining))
                    self.locks.append(server_locks.acquire(connection, database, self.owner, wait))
            with self._phase("clean"):
                present = tbl.list_tables(conn, self.target.database)
                tbl.clear_target_leftovers(conn, self.target.database, present,
                                           tbl.target_leftovers(present, self.target.prefix, self.owner))
                plan = self._plan(conn, manifest)
            stage_of = {t: tbl.stage_table(t) for t in sorted(plan["restore"])}
            with self._phase("load"):
                if stage_of:
                    self.created_stage = sorted(stage_of.values())
                    self._load(manifest["path"], stage_of)
            with self._phase("verify"):
                counts = tbl.exact_row_counts(conn, self.target.database, list(stage_of.values()))
                for table, rows in sorted(plan["restore"].items()):
                    if counts.get(stage_of[table]) != rows:
                        raise MigrationError("%s.%s has %s rows after loading the backup, its manifest says %s"
                                             % (self.target.database, stage_of[table], counts.get(stage_of[table]),
                                                rows), site_id=self._site_id(), table=table, reason=VERIFICATION,
                                             hint="nothing was swapped in; check the target's disk and "
                                                  "max_allowed_packet, then roll back again")
            aside = sorted(set(plan["replace"]) | set(plan["drop"]))
            moves = [(t, tbl.old_table(t)) for t in aside] + [(stage_of[t], t) for t in sorted(stage_of)]
            with self._phase("swap"):
                if moves:
                    self.swap = moves
                    tbl.rename_tables(conn, self.target.database, moves, within=self.deadline.remaining())
                    self.created_stage = []
                if plan["delete_blog_row"]:
                    with conn.cursor() as cur:
                        cur.execute("DELETE FROM %s WHERE blog_id = %%s"
                                    % qualified(self.target.database, self.target.prefix + "blogs"), (self.owner,))
                self.swap = None
            with self._phase("cleanup"):
                tbl.drop_tables(conn, self.target.database, [tbl.old_table(t) for t in aside])
            for connection, name in zip((conn, mig_conn), self.locks):
                with contextlib.suppress(Exception):
                    server_locks.release(connection, name)
        return {"changed": bool(moves or plan["delete_blog_row"]), "site_id": self.owner,
                "restored": dict(plan["restore"]), "dropped": list(plan["drop"]),
                "missing": plan["missing"], "blog_row_deleted": plan["delete_blog_row"],
                "new_to_target": plan["new_to_target"], "backup": self._report_backup(manifest),
                "locks": list(self.locks), "durations": dict(self.durations)}

    def _load(self, path, stage_of):
        """Stream the gzip dump into the target with its tables renamed to their staging names."""
        _dump_path, client_path = required_client_tools()
        rewriter = DumpRewriter(renames=stage_of)
        with contextlib.ExitStack() as stack:
            options = stack.enter_context(self.target.db.client_options())
            errors = stack.enter_context(tempfile.TemporaryFile(prefix="wfu-restore-", dir=self.options.get("work_dir")))
            load = spawn_client(load_command(client_path, options, self.target.database), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=errors)
            broken = False
            try:
                with gzip.open(path, "rb") as stream:
                    for chunk in iter(lambda: stream.read(CHUNK), b""):
                        if self.deadline.expired():
                            raise self.deadline.failure()
                        try:
                            load.stdin.write(rewriter.feed(chunk))
                        except BrokenPipeError:
                            broken = True
                            break
                    if not broken:
                        with contextlib.suppress(BrokenPipeError):
                            load.stdin.write(rewriter.finish())
                with contextlib.suppress(BrokenPipeError):
                    load.stdin.close()
                remaining = self.deadline.remaining()
                load.wait(timeout=None if remaining is None else remaining + 1)
            finally:
                if load.poll() is None:
                    load.kill()
                load.wait()
            if load.returncode != 0:
                text = _error_text(errors)
                raise MigrationError("loading the backup %s into %s failed: %s"
                                     % (path, self.target.db, text or "no error message"),
                                     site_id=self._site_id(), phase="load", error_code=message_error_code(text),
                                     reason=message_reason(text), database=self.target.db)

    def _cleanup_after_failure(self):
        """Undo an unfinished swap and drop the staging tables, on a fresh short-bounded connection.  Never raises."""
        if not (self.swap or self.created_stage):
            return []
        notes = []
        try:
            with contextlib.closing(self.target.db.connect(timeout=CLEANUP_STATEMENT_TIMEOUT,
                                                           connect_timeout=CLEANUP_CONNECT_TIMEOUT)) as conn:
                name, holder = server_locks.try_acquire(conn, self.target.db, self.owner)
                if name is None:
                    return ["left %s alone: %s holds its lock now" % (self.target.db, holder)]
                present = set(tbl.list_tables(conn, self.target.database))
                # RENAME TABLE is atomic: it happened exactly when the first move's new name exists.
                if self.swap and self.swap[0][1] in present:
                    tbl.rename_tables(conn, self.target.database, [(b, a) for a, b in reversed(self.swap)])
                    notes.append("swapped the tables back")
                    self.created_stage = [a for a, _b in self.swap if a.startswith(tbl.STAGE_MARK)]
                if self.created_stage:
                    tbl.drop_tables(conn, self.target.database, self.created_stage)
                    notes.append("dropped %d staging tables" % len(self.created_stage))
                server_locks.release(conn, name)
        except Exception as exc:  # pylint: disable=broad-except
            notes.append("could not clean up %s: %s" % (self.target.db, MigrationError.wrap(exc).message))
        return notes


# -- retention ----------------------------------------------------------------------------------------------------

# The files a backup set holds: dumps and manifests, and the temporary names a killed writer can leave.
SET_FILE = re.compile(r"^(?:(?:site-[1-9][0-9]*|network)(?:-[0-9]+)?(?:\.sql\.gz|\.json|\.sql\.gz\.new(?:\.partial)?)"
                      r"|\.wfu-.*\.tmp)$")


def manifest_identity(data):
    """``(target_env, created)`` of a parsed manifest of ours, else None: what the retention sorts sets by."""
    if isinstance(data, dict) and data.get("kind") == MANIFEST_KIND:
        return str(data.get("target_env")), str(data.get("created") or "")
    return None


def new_backup_set(name):
    """A backup set being read: its ``files`` (backup files), ``others`` (anything else), ``bytes``, and the
    ``envs`` and ``created`` times its manifests name."""
    return {"name": name, "files": [], "others": [], "bytes": 0, "envs": set(), "created": []}


def add_manifest(backup_set, data):
    identity = manifest_identity(data)
    if identity is not None:
        backup_set["envs"].add(identity[0])
        backup_set["created"].append(identity[1])


def sets_of_target(backup_sets_read, target_env):
    """The sets whose manifests all name ``target_env``, newest first (by the earliest manifest's ``created``, the
    time the migration first replaced something)."""
    mine = [item for item in backup_sets_read if item["created"] and item["envs"] == {target_env}]
    return sorted(mine, key=lambda item: (min(item["created"]), item["name"]), reverse=True)


def backup_sets(backup_dir):
    """The backup sets below ``backup_dir``: one per migration directory (see ``new_backup_set``); a file that is
    not part of a backup set is one of its ``others`` (a set holding any is never removed)."""
    root = os.path.expanduser(backup_dir)
    sets = []
    for name in sorted(os.listdir(root)):
        directory = os.path.join(root, name)
        if not BACKUP_NAME_RE.match(name) or not os.path.isdir(directory) or os.path.islink(directory):
            continue
        found = new_backup_set(name)
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            if not SET_FILE.match(entry) or not os.path.isfile(path) or os.path.islink(path):
                found["others"].append(entry)
                continue
            found["files"].append(entry)
            found["bytes"] += os.path.getsize(path)
            if entry.endswith(".json"):
                try:
                    with open(path, encoding="utf-8") as handle:
                        add_manifest(found, json.load(handle))
                except (OSError, ValueError):
                    continue
        sets.append(found)
    return sets


def prune_backups(backup_dir, target_env, keep, check_mode=False):
    """Keep the newest ``keep`` backup sets of ``target_env`` in ``backup_dir``; remove the older ones.

    Only the files of a set are removed (dumps, manifests, a killed writer's temporary files), then its directory;
    a set that holds anything else is left whole and reported.  Returns ``{kept, removed, left, bytes_removed}``
    (set names; ``left`` are the old sets that hold other files).
    """
    root = os.path.expanduser(backup_dir)
    if not os.path.isdir(root):
        raise ConfigError("backup_dir %s is not a directory" % root)

    def remove(item):
        directory = os.path.join(root, item["name"])
        for entry in item["files"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))
        os.rmdir(directory)

    return apply_retention(sets_of_target(backup_sets(root), target_env), keep, remove, check_mode)


def check_keep(keep):
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError("keep_backups must be a whole number of migrations, at least 1, not %r" % (keep,))


def apply_retention(sets, keep, remove, check_mode=False):
    """The retention rule, wherever the sets are: ``sets`` newest first (``name``, ``others``, ``bytes``); the first
    ``keep`` stay, an older one holding other files is left, the rest go through ``remove(set)`` (not in check
    mode).  Returns ``{kept, removed, left, bytes_removed}``."""
    check_keep(keep)
    kept, removed, left, freed = [], [], [], 0
    for index, item in enumerate(sets):
        if index < keep:
            kept.append(item["name"])
        elif item["others"]:
            left.append(item["name"])
        else:
            removed.append(item["name"])
            freed += item["bytes"]
            if not check_mode:
                remove(item)
    return {"kept": kept, "removed": removed, "left": left, "bytes_removed": freed}
