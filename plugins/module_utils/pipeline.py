# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-site and network pipelines: copy → search-replace → stage → verify → swap → clean.

The target is never half-written: transformed tables arrive in the target under
staging names, are verified there, and replace the live tables in one
``RENAME TABLE`` statement that also moves the live tables aside as the backup.
The backup is dropped only after the new tables are verified in place; if that
check fails the same statement runs backwards.  Whatever a call created in the
migration database or the target is dropped in ``finally`` when it fails.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import subprocess
import time

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import copy_tables, dump_binary, spawn_client
from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    ConfigError, client_option_file, connect, qualified, quote_identifier, resolve, same_database, same_server)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    CONFIGURATION, SYSTEMIC_REASONS, MigrationError, failure_reason)
from ansible_collections.wfu.multisite.plugins.module_utils.replace_rules import (
    Environment, Network, derive_rules, map_site_address, site_url)
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import HostPair
from ansible_collections.wfu.multisite.plugins.module_utils.sites import read_blogs
from ansible_collections.wfu.multisite.plugins.module_utils.table_replace import replace_in_tables


class Endpoint:
    """One side of a migration: the database of an environment and its addressing settings."""

    def __init__(self, settings):
        settings = dict(settings or {})
        self.name = settings.pop("name", None) or "?"
        self.db = settings.get("db") or {}
        if not isinstance(self.db, dict) or not self.db:
            raise ConfigError("environment %s: db is missing (host/port/user/password/database or config_file)"
                              % self.name)
        self.database = resolve(self.db).get("database")
        if not self.database:
            raise ConfigError("environment %s: db.database is missing" % self.name)
        self.prefix = tbl.validate_prefix(settings.get("table_prefix") or "wp_")
        self.addressing = Environment.from_config(self.name, {k: v for k, v in settings.items() if v is not None})

    def connect(self):
        return connect(self.db)


def rules_for_display(rules):
    """The rules as data a person can read in a plan."""
    return [{"search": pair[0], "replace": pair[1], "whole_host": isinstance(pair, HostPair)} for pair in rules]


class PhaseTimer:
    """Records how long each phase took and which phase is running (for failure reports)."""

    def __init__(self):
        self.durations = {}
        self.current = None

    @contextlib.contextmanager
    def phase(self, name):
        self.current = name
        start = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(self.durations.get(name, 0.0) + time.monotonic() - start, 3)


def _rename_statement(database, moves):
    """One RENAME TABLE statement for ``[(from, to), ...]`` — atomic in MariaDB and MySQL."""
    return "RENAME TABLE " + ", ".join(
        "%s.%s TO %s.%s" % (quote_identifier(database), quote_identifier(a), quote_identifier(database), quote_identifier(b))
        for a, b in moves)


def dump_to_file(params, database, tables, path):
    """Dump tables to a gzip file with mariadb-dump (password in a 0600 option file, never on argv)."""
    binary = dump_binary()
    partial = path + ".partial"
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        with client_option_file(params) as option_file, open(os.devnull, "wb") as devnull:
            cmd = [binary, "--defaults-extra-file=" + option_file, "--single-transaction", "--quick",
                   "--skip-lock-tables", "--no-tablespaces", "--hex-blob", "--default-character-set=utf8mb4",
                   database] + list(tables)
            with gzip.open(partial, "wb") as out:
                proc = spawn_client(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=devnull)
                for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
                    out.write(chunk)
                stderr = proc.stderr.read().decode("utf-8", "replace")
                proc.wait()
    except OSError as exc:
        # The backup file cannot be written on this host: every site would fail the same way.
        reason = failure_reason(exc)
        raise MigrationError("cannot write the backup file %s: %s" % (path, exc), phase="backup",
                             reason=reason if reason in SYSTEMIC_REASONS else CONFIGURATION,
                             hint="make backup_dir a writable directory with room for the dump, or leave it out "
                                  "to keep the previous tables only in the target") from exc
    if proc.returncode != 0:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise MigrationError("backup dump of %s failed: %s" % (database, stderr.strip()[-500:]), phase="backup")
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return path


def work_skip_columns(entries, work):
    """Point ``table.column`` entries at the work copies; bare column names apply to every table."""
    translated = []
    for entry in entries or ():
        table, dot, column = str(entry).rpartition(".")
        translated.append("%s.%s" % (work.get(table, table), column) if dot else column)
    return translated


class PipelineTimeout(MigrationError):
    """The call ran out of its time budget; raised from a SIGALRM handler."""


@contextlib.contextmanager
def deadline(seconds, pipeline):
    """Raise PipelineTimeout in the main thread after ``seconds`` (0 = no limit); fires once."""
    if not seconds:
        yield
        return

    def expire(_signum, _frame):
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        raise PipelineTimeout("%s did not finish within %d s (phase %s)"
                              % (pipeline.label(), seconds, pipeline.timer.current),
                              site_id=getattr(pipeline, "site_id", None), phase=pipeline.timer.current,
                              failure_class="site",
                              hint="raise site_timeout, or list the site in large_sites so it gets "
                                   "large_site_timeout_factor times more")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _TablePipeline:
    """Shared machinery: move a set of tables through the migration DB into the target."""

    kind = "site"

    def __init__(self, source, target, migration_db, options, check_mode=False):
        self.source = source
        self.target = target
        self.migration_db = migration_db
        self.migration_database = resolve(migration_db).get("database")
        if not self.migration_database:
            raise ConfigError("migration_db.database is missing")
        for env in (source, target):
            if same_database(env.db, migration_db):
                raise ConfigError("the migration database %s is the %s environment's database; give the migration "
                                  "its own database" % (self.migration_database, env.name))
        if same_database(source.db, target.db):
            raise ConfigError("source (%s) and target (%s) are the same database" % (source.name, target.name))
        self.options = options
        self.check_mode = check_mode
        self.timer = PhaseTimer()
        self.created_work = []
        self.created_stage = []
        self.swapped = None
        self.result = {"changed": False}

    # -- steps shared by sites and the network ------------------------------------------------
    def label(self):
        return "site %d" % self.site_id if getattr(self, "site_id", None) else "the network tables"

    def _error(self, message, table=None, hint=None, failure_class=None):
        return MigrationError(message, site_id=getattr(self, "site_id", None), table=table,
                              phase=self.timer.current, failure_class=failure_class, hint=hint)

    def _copy_to_work(self, tables, work_names):
        # Recorded first: a copy that fails half-way (a broken dump, a row count that does not match) has already
        # created some of them.
        self.created_work.extend(work_names.values())
        return copy_tables(self.source.db, self.source.database, tables, self.migration_db, self.migration_database,
                           rename=work_names, work_dir=self.options.get("work_dir"))

    def _stage(self, mig_conn, work_to_stage):
        """Put the transformed tables into the target under staging names; return their expected row counts."""
        counts = tbl.exact_row_counts(mig_conn, self.migration_database, list(work_to_stage))
        self.created_stage.extend(work_to_stage.values())
        if same_server(self.migration_db, self.target.db):
            # Migration database on the target's server: moving the tables over is a rename, not a copy.
            moves = ", ".join("%s TO %s" % (qualified(self.migration_database, work), qualified(self.target.database, stage))
                              for work, stage in sorted(work_to_stage.items()))
            with mig_conn.cursor() as cur:
                cur.execute("RENAME TABLE " + moves)
            self.created_work = [t for t in self.created_work if t not in work_to_stage]
        else:
            copy_tables(self.migration_db, self.migration_database, list(work_to_stage), self.target.db,
                        self.target.database, rename=work_to_stage, work_dir=self.options.get("work_dir"))
        return {work_to_stage[work]: rows for work, rows in counts.items()}

    def _clean(self, mig_conn, tgt_conn, owner):
        """Drop what an earlier attempt for this site (or the network) left in the migration DB and the target."""
        leftovers = tbl.work_tables_of(tbl.list_tables(mig_conn, self.migration_database), owner)
        tbl.drop_tables(mig_conn, self.migration_database, leftovers)
        tbl.clear_target_leftovers(tgt_conn, self.target.database, self.target.prefix, owner)

    def _stage_and_count(self, mig_conn, tgt_conn, work):
        """Stage the transformed tables in the target and check their row counts; return the name mappings."""
        live_of = {w: tbl.retarget_table(t, self.source.prefix, self.target.prefix) for t, w in work.items()}
        stage_of = {w: tbl.stage_table(live) for w, live in live_of.items()}
        with self.timer.phase("stage"):
            expected = self._stage(mig_conn, stage_of)
        with self.timer.phase("verify"):
            self._verify_counts(tgt_conn, expected)
        return live_of, stage_of

    def _drop_leftovers_of_success(self, mig_conn, tgt_conn, existing, work):
        """After a verified swap: drop the previous tables (unless kept) and the work copies; return what was kept."""
        kept = sorted(tbl.old_table(t) for t in existing)
        if not self.options.get("keep_backup_tables"):
            tbl.drop_tables(tgt_conn, self.target.database, kept)
            kept = []
        tbl.drop_tables(mig_conn, self.migration_database, list(work.values()))
        self.created_work = []
        return kept

    def _verify_counts(self, conn, expected):
        actual = tbl.exact_row_counts(conn, self.target.database, list(expected))
        for table, rows in expected.items():
            if actual.get(table) != rows:
                raise self._error("table %s.%s has %s rows, expected %s"
                                  % (self.target.database, table, actual.get(table), rows), table=table,
                                  hint="the copy lost rows; nothing was swapped in. Check the target's disk and "
                                       "max_allowed_packet, then retry the site.")
        return actual

    def _swap(self, conn, live_to_stage, existing_live):
        """Move the live tables aside and the staged ones in, in one statement."""
        moves = [(live, tbl.old_table(live)) for live in sorted(existing_live)]
        moves += [(stage, live) for live, stage in sorted(live_to_stage.items())]
        # Recorded before the statement: when its reply is lost (connection cut, deadline), the cleanup looks at
        # the tables to learn whether it happened.
        self.swapped = (live_to_stage, existing_live)
        with conn.cursor() as cur:
            cur.execute(_rename_statement(self.target.database, moves))
        self.created_stage = []

    def _swap_happened(self, conn):
        """RENAME TABLE is atomic: it happened exactly when none of the staging names is left."""
        staged = set(self.swapped[0].values())
        return not staged & set(tbl.list_tables(conn, self.target.database))

    def _swap_back(self, conn):
        live_to_stage, existing_live = self.swapped
        moves = sorted(live_to_stage.items())
        moves += [(tbl.old_table(live), live) for live in sorted(existing_live)]
        with conn.cursor() as cur:
            cur.execute(_rename_statement(self.target.database, moves))
        self.swapped = None
        self.created_stage = list(live_to_stage.values())

    def _backup_file(self, existing_live, label):
        backup_dir = self.options.get("backup_dir")
        if not (self.options.get("backup", True) and backup_dir and existing_live):
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = os.path.join(os.path.expanduser(backup_dir), "%s-%s-%s.sql.gz" % (self.target.name, label, stamp))
        return dump_to_file(self.target.db, self.target.database, sorted(existing_live), path)

    def _cleanup_after_failure(self):
        """Drop what this call created; undo a swap that was not verified.  Never raises."""
        notes = []
        with contextlib.suppress(Exception):
            with contextlib.closing(self.target.connect()) as conn:
                if self.swapped and self._swap_happened(conn):
                    self._swap_back(conn)
                    notes.append("swapped the previous tables back in")
                if self.created_stage:
                    tbl.drop_tables(conn, self.target.database, self.created_stage)
                    notes.append("dropped %d staging tables" % len(self.created_stage))
        with contextlib.suppress(Exception):
            with contextlib.closing(connect(self.migration_db)) as conn:
                if self.created_work:
                    tbl.drop_tables(conn, self.migration_database, self.created_work)
                    notes.append("dropped %d work tables" % len(self.created_work))
        return notes

    def run(self, timeout=0):
        """Run the pipeline; with ``timeout`` seconds, give up (and clean up) when they have passed."""
        try:
            with deadline(timeout, self):
                return self._run()
        except Exception as exc:
            exc = MigrationError.wrap(exc, site_id=getattr(self, "site_id", None), phase=self.timer.current)
            if self.timer.current:
                # The pipeline's phase, not the helper's: a failed copy into the target is the stage phase.
                exc.phase = self.timer.current
            exc.cleanup = self._cleanup_after_failure()
            exc.durations = dict(self.timer.durations)
            raise exc


class SiteMigration(_TablePipeline):
    """Migrate one site: its tables, transformed, swapped into the target atomically."""

    def __init__(self, site_id, source, target, migration_db, options=None, check_mode=False):
        super().__init__(source, target, migration_db, options or {}, check_mode)
        self.site_id = tbl.validate_site_id(site_id)

    def _context(self, src_conn):
        blogs = read_blogs(src_conn, self.source.database, self.source.prefix)
        network = Network.from_rows(blogs)
        row = next((b for b in blogs if b["blog_id"] == self.site_id), None)
        if row is None:
            raise self._error("site %d is not in %s.%sblogs of %s" % (self.site_id, self.source.database,
                                                                      self.source.prefix, self.source.name),
                              hint="list the sites with wfu.multisite.wfu_sites_info")
        tables = tbl.site_tables(tbl.list_tables(src_conn, self.source.database), self.source.prefix, self.site_id)
        if not tables:
            raise self._error("site %d has no %s tables in %s" % (self.site_id, tbl.site_table_prefix(
                self.source.prefix, self.site_id), self.source.database))
        rules = derive_rules(self.source.addressing, self.target.addressing, network)
        domain, path = map_site_address(row["domain"], row["path"], self.source.addressing, self.target.addressing, network)
        return row, tables, rules, domain, path

    def plan(self):
        with contextlib.closing(self.source.connect()) as src_conn:
            row, tables, rules, domain, path = self._context(src_conn)
            stats = tbl.table_stats(src_conn, self.source.database, tables)
        with contextlib.closing(self.target.connect()) as tgt_conn:
            target_tables = tbl.list_tables(tgt_conn, self.target.database)
        live = [tbl.retarget_table(t, self.source.prefix, self.target.prefix) for t in tables]
        return {
            "site_id": self.site_id,
            "source": {"domain": row["domain"], "path": row["path"]},
            "target": {"domain": domain, "path": path},
            "tables": [{"source": t, "target": lt, "rows": stats.get(t, {}).get("rows", 0),
                        "bytes": stats.get(t, {}).get("bytes", 0), "exists_in_target": lt in target_tables}
                       for t, lt in zip(tables, live)],
            "bytes": sum(s["bytes"] for s in stats.values()),
            "new_to_target": not any(lt in target_tables for lt in live),
            "rules": rules_for_display(rules),
        }

    def _run(self):
        if self.check_mode:
            return dict(self.result, plan=self.plan(), site_id=self.site_id)
        opts = self.options
        with contextlib.closing(self.source.connect()) as src_conn, \
                contextlib.closing(self.target.connect()) as tgt_conn, \
                contextlib.closing(connect(self.migration_db)) as mig_conn:
            with self.timer.phase("prepare"):
                row, tables, rules, domain, path = self._context(src_conn)
                expected_url = site_url(self.target.addressing, domain, path)
            with self.timer.phase("clean"):
                self._clean(mig_conn, tgt_conn, self.site_id)
            work = {t: tbl.work_table(self.site_id, t) for t in tables}
            with self.timer.phase("copy"):
                copied = self._copy_to_work(tables, work)
            with self.timer.phase("replace"):
                replaced = replace_in_tables(self.migration_db, self.migration_database, list(work.values()), rules,
                                             skip_columns=work_skip_columns(opts.get("skip_columns"), work))
                self._retarget_prefixed_keys(mig_conn, work)
            live_of, stage_of = self._stage_and_count(mig_conn, tgt_conn, work)
            with self.timer.phase("verify"):
                options_live = tbl.retarget_table(tbl.site_table_prefix(self.source.prefix, self.site_id) + "options",
                                                  self.source.prefix, self.target.prefix)
                self._verify_urls(tgt_conn, tbl.stage_table(options_live), expected_url)
            existing = set(tbl.list_tables(tgt_conn, self.target.database)) & set(live_of.values())
            with self.timer.phase("backup"):
                backup_path = self._backup_file(existing, "site-%d" % self.site_id)
            with self.timer.phase("swap"):
                self._swap(tgt_conn, {live: stage_of[w] for w, live in live_of.items()}, existing)
                try:
                    self._verify_urls(tgt_conn, options_live, expected_url)
                except MigrationError:
                    self._swap_back(tgt_conn)
                    raise
                # Until the wp_blogs row is there, a failure swaps the previous tables back (in the cleanup).
                registered = self._ensure_blog_row(src_conn, tgt_conn, row, domain, path)
                self.swapped = None
            with self.timer.phase("cleanup"):
                kept = self._drop_leftovers_of_success(mig_conn, tgt_conn, existing, work)
        return {
            "changed": True,
            "site_id": self.site_id,
            "url": expected_url,
            "tables": sorted(live_of.values()),
            "new_to_target": not existing,
            "blog_row_created": registered,
            "rows": copied.get("rows", 0),
            "bytes": copied.get("bytes", 0),
            "copy_method": copied.get("method"),
            "replacements": replaced.get("tables", {}),
            "rows_changed": replaced.get("rows_changed", 0),
            "backup": {"file": backup_path, "tables": kept},
            "durations": dict(self.timer.durations),
            "rules_count": len(rules),
        }

    def _retarget_prefixed_keys(self, mig_conn, work):
        """Prefixed option names (``wp_43_user_roles``) follow a change of table prefix."""
        if self.source.prefix == self.target.prefix:
            return
        site_prefix = tbl.site_table_prefix(self.source.prefix, self.site_id)
        options_work = work.get(site_prefix + "options")
        if not options_work:
            return
        new_prefix = tbl.retarget_table(site_prefix, self.source.prefix, self.target.prefix)
        with mig_conn.cursor() as cur:
            cur.execute("UPDATE %s.%s SET option_name = CONCAT(%%s, SUBSTRING(option_name, %%s)) "
                        "WHERE option_name = %%s" % (quote_identifier(self.migration_database),
                                                     quote_identifier(options_work)),
                        (new_prefix, len(site_prefix) + 1, site_prefix + "user_roles"))

    def _verify_urls(self, conn, options_table, expected_url):
        """``siteurl`` and ``home`` must point at the site's address in the target.

        Either scheme is accepted (networks mix http and https in their data), and a path below the address
        is too (``siteurl`` of WordPress installed in ``/wp``); a host or base path of the source is not.
        """
        if self.options.get("verify_urls", True) is False:
            return
        with conn.cursor() as cur:
            cur.execute("SELECT option_name, option_value FROM %s.%s WHERE option_name IN ('siteurl', 'home')"
                        % (quote_identifier(self.target.database), quote_identifier(options_table)))
            found = dict(cur.fetchall())
        address = expected_url.split("://", 1)[-1].rstrip("/")
        for name in ("siteurl", "home"):
            value = found.get(name) or ""
            scheme, _sep, rest = value.partition("://")
            rest = rest.rstrip("/")
            if scheme not in ("http", "https") or not (rest == address or rest.startswith(address + "/")):
                raise self._error("site %d: %s in %s is %r after search-replace, expected %r"
                                  % (self.site_id, name, options_table, value, expected_url),
                                  table=options_table,
                                  hint="check url/subsite_domain of %s and %s in wfu_environments, or set "
                                       "verify_urls: false for a site whose %s is deliberately different"
                                       % (self.source.name, self.target.name, name))

    def _ensure_blog_row(self, src_conn, tgt_conn, row, domain, path):
        """A site new to the target needs its wp_blogs row, or WordPress cannot route to it."""
        blogs = self.target.prefix + "blogs"
        if blogs not in tbl.list_tables(tgt_conn, self.target.database):
            return False
        qualified = "%s.%s" % (quote_identifier(self.target.database), quote_identifier(blogs))
        with tgt_conn.cursor() as cur:
            cur.execute("SELECT domain, path FROM %s WHERE blog_id = %%s" % qualified, (self.site_id,))
            if cur.fetchone():
                return False
            cur.execute("INSERT INTO %s (blog_id, site_id, domain, path, registered, last_updated, public, archived, "
                        "mature, spam, deleted, lang_id) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, 0)"
                        % qualified, (self.site_id, row["site_id"], domain, path, row["registered"], row["last_updated"],
                                      row["public"], row["archived"], row["mature"], row["spam"], row["deleted"]))
        return True


class NetworkMigration(_TablePipeline):
    """Migrate the network tables (wp_blogs, wp_site, wp_sitemeta, wp_blogmeta; users when asked)."""

    kind = "network"

    def _tables(self, src_conn):
        present = tbl.list_tables(src_conn, self.source.database)
        tables = tbl.network_tables(present, self.source.prefix, include_users=bool(self.options.get("include_users")))
        if self.source.prefix + "blogs" not in tables:
            raise self._error("%s has no %sblogs table: not a multisite network, or wrong table_prefix"
                              % (self.source.database, self.source.prefix))
        return tables

    def plan(self):
        with contextlib.closing(self.source.connect()) as src_conn:
            tables = self._tables(src_conn)
            blogs = read_blogs(src_conn, self.source.database, self.source.prefix)
            network = Network.from_rows(blogs)
            stats = tbl.table_stats(src_conn, self.source.database, tables)
        mapping = [dict(blog_id=b["blog_id"], source="%s%s" % (b["domain"], b["path"]),
                        target="%s%s" % map_site_address(b["domain"], b["path"], self.source.addressing,
                                                         self.target.addressing, network)) for b in blogs]
        return {"tables": [{"source": t, "target": tbl.retarget_table(t, self.source.prefix, self.target.prefix),
                            "rows": stats.get(t, {}).get("rows", 0)} for t in tables],
                "sites": mapping,
                "rules": rules_for_display(derive_rules(self.source.addressing, self.target.addressing, network))}

    def _run(self):
        if self.check_mode:
            return dict(self.result, plan=self.plan())
        with contextlib.closing(self.source.connect()) as src_conn, \
                contextlib.closing(self.target.connect()) as tgt_conn, \
                contextlib.closing(connect(self.migration_db)) as mig_conn:
            with self.timer.phase("prepare"):
                tables = self._tables(src_conn)
                blogs = read_blogs(src_conn, self.source.database, self.source.prefix)
                network = Network.from_rows(blogs)
                rules = derive_rules(self.source.addressing, self.target.addressing, network)
            with self.timer.phase("clean"):
                self._clean(mig_conn, tgt_conn, "network")
            work = {t: tbl.network_work_table(t) for t in tables}
            with self.timer.phase("copy"):
                copied = self._copy_to_work(tables, work)
            with self.timer.phase("replace"):
                self._map_addresses(mig_conn, work, blogs, network)
                self._retarget_user_options(mig_conn, work)
                replaced = replace_in_tables(self.migration_db, self.migration_database, list(work.values()), rules,
                                             skip_columns=self._skip_columns(work))
            live_of, stage_of = self._stage_and_count(mig_conn, tgt_conn, work)
            existing = set(tbl.list_tables(tgt_conn, self.target.database)) & set(live_of.values())
            with self.timer.phase("backup"):
                backup_path = self._backup_file(existing, "network")
            with self.timer.phase("swap"):
                self._swap(tgt_conn, {live: stage_of[w] for w, live in live_of.items()}, existing)
                self.swapped = None
            with self.timer.phase("cleanup"):
                kept = self._drop_leftovers_of_success(mig_conn, tgt_conn, existing, work)
        return {"changed": True, "tables": sorted(live_of.values()), "rows": copied.get("rows", 0),
                "bytes": copied.get("bytes", 0), "rows_changed": replaced.get("rows_changed", 0),
                "replacements": replaced.get("tables", {}), "sites": len(blogs),
                "backup": {"file": backup_path, "tables": kept}, "durations": dict(self.timer.durations)}

    def _skip_columns(self, work):
        # The domain/path of wp_blogs, wp_site and wp_signups are mapped per row, not searched.
        mapped = ["%s%s.%s" % (self.source.prefix, table, column) for table in ("blogs", "site", "signups")
                  for column in ("domain", "path")]
        return work_skip_columns(list(self.options.get("skip_columns") or ()) + mapped, work)

    def _retarget_user_options(self, mig_conn, work):
        """Per-site user settings (``wp_capabilities``, ``wp_2_user_level``) carry the table prefix in their key."""
        usermeta = work.get(self.source.prefix + "usermeta")
        if not usermeta or self.source.prefix == self.target.prefix:
            return
        with mig_conn.cursor() as cur:
            cur.execute("UPDATE %s.%s SET meta_key = CONCAT(%%s, SUBSTRING(meta_key, %%s)) "
                        "WHERE LEFT(meta_key, %%s) = CAST(%%s AS BINARY)"
                        % (quote_identifier(self.migration_database), quote_identifier(usermeta)),
                        (self.target.prefix, len(self.source.prefix) + 1, len(self.source.prefix), self.source.prefix))

    def _map_addresses(self, mig_conn, work, blogs, network):
        blogs_work = quote_identifier(work[self.source.prefix + "blogs"])
        db = quote_identifier(self.migration_database)
        with mig_conn.cursor() as cur:
            for blog in blogs:
                domain, path = map_site_address(blog["domain"], blog["path"], self.source.addressing,
                                                self.target.addressing, network)
                cur.execute("UPDATE %s.%s SET domain = %%s, path = %%s WHERE blog_id = %%s" % (db, blogs_work),
                            (domain, path, blog["blog_id"]))
            site_table = self.source.prefix + "site"
            if site_table in work:
                cur.execute("SELECT id, domain, path FROM %s.%s" % (db, quote_identifier(work[site_table])))
                for site_id, domain, path in cur.fetchall():
                    new_domain, new_path = map_site_address(domain, path, self.source.addressing,
                                                            self.target.addressing, network)
                    cur.execute("UPDATE %s.%s SET domain = %%s, path = %%s WHERE id = %%s"
                                % (db, quote_identifier(work[site_table])), (new_domain, new_path, site_id))
            signups_table = self.source.prefix + "signups"
            if signups_table in work:
                # A pending signup activates a site at its domain/path: it must be the target's address.
                signups = quote_identifier(work[signups_table])
                cur.execute("SELECT signup_id, domain, path FROM %s.%s WHERE domain <> ''" % (db, signups))
                moved = []
                for signup_id, domain, path in cur.fetchall():
                    try:
                        moved.append(map_site_address(domain, path, self.source.addressing, self.target.addressing,
                                                      network) + (signup_id,))
                    except ConfigError:
                        continue  # an address outside the network's hosts is not ours to move
                cur.executemany("UPDATE %s.%s SET domain = %%s, path = %%s WHERE signup_id = %%s" % (db, signups), moved)
