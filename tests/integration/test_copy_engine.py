"""The copy engine against real MariaDB servers: every method, renames, awkward data, memory, failures, timeouts.

Each method copies the same table of awkward values (4-byte UTF-8, every byte
value in a blob, NULLs, zero dates, latin1, bit, json, geometry, generated and
invisible columns) and the copy must read back identical.  A decoy table with
the source's name waits in the destination: a renamed copy must not touch it.
"""

import os
import re
import threading
import time

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils import copy_engine
from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import (
    DumpPipeline, copy_tables, dump_command, load_command, verify_copy)
from ansible_collections.wfu.multisite.plugins.module_utils.db import Database
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import SITE, SYSTEMIC, MigrationError
from tools.mariadb_servers import ServerSet, start_server_again, stop_server

CLIENT_PROGRAMS = {"mariadb", "mariadb-dump", "mysql", "mysqldump"}
BIG_ROWS = 20000  # about 50 MB of text and binary data

TRICKY_TABLE = """
CREATE TABLE `{name}` (
  `id` int unsigned NOT NULL AUTO_INCREMENT,
  `txt` longtext COLLATE utf8mb4_unicode_520_ci,
  `latin` varchar(50) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL,
  `bin` longblob,
  `vb` varbinary(16) DEFAULT NULL,
  `dt` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `ts` timestamp NULL DEFAULT NULL,
  `tm` time(6) DEFAULT NULL,
  `amount` decimal(20,6) DEFAULT NULL,
  `f` float DEFAULT NULL,
  `dbl` double DEFAULT NULL,
  `bits` bit(10) DEFAULT NULL,
  `choice` enum('a','b','ç') DEFAULT NULL,
  `flags` set('x','y') DEFAULT NULL,
  `doc` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`doc`)),
  `yr` year(4) DEFAULT NULL,
  `place` point DEFAULT NULL,
  `twice` int AS (`id` * 2) VIRTUAL,
  `hidden` int DEFAULT 7 INVISIBLE,
  PRIMARY KEY (`id`),
  KEY `dt` (`dt`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci
"""

TRICKY_ROWS = [
    "INSERT INTO `{name}` (id) VALUES (1)",
    "INSERT INTO `{name}` (id, txt, latin, bin, vb, dt, ts, tm, amount, f, dbl, bits, choice, flags, doc, yr, place, "
    "hidden) VALUES (2, CONCAT('😀 «quotes» '' \" back\\\\slash\\nnew line\\r\\0nul ', CHAR(26), "
    "' \\nINSERT INTO `{name}` VALUES (9);'), 'café', %s, X'00FF275C0A0D1A', '2024-02-29 12:34:56', "
    "'2024-03-31 02:30:00', '-838:59:59.000000', -12345678901234.123456, 1.5, 1e-300, b'1010101010', 'ç', 'x,y', "
    "'{{\"a\": \"é\", \"s\": \"a:1:{{s:3:\\\\\"url\\\\\";}}\"}}', 2155, ST_GeomFromText('POINT(1.5 -2)'), 42)",
    "INSERT INTO `{name}` (id, txt, latin, bin, vb, hidden) VALUES (3, '', '', '', '', NULL)",
]

COMPARED_COLUMNS = ("id, txt, latin, bin, vb, CAST(dt AS CHAR), CAST(ts AS CHAR), CAST(tm AS CHAR), amount, f, dbl, "
                    "bits, choice, flags, doc, yr, ST_AsText(place), twice, hidden")


def db_on(server, name, role=None):
    """The Database of ``name`` on a test server."""
    return Database.from_params(server.connection(name), role=role)


def rows_of(server, database, table):
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT %s FROM `%s` ORDER BY id" % (COMPARED_COLUMNS, table))
        return cur.fetchall()


def definition_of(server, database, table):
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE `%s`" % table)
        text = cur.fetchone()[1]
    return re.sub(r" AUTO_INCREMENT=\d+", "", text.replace("`%s`" % table, "`T`", 1))


def execute(server, database, *statements):
    with server.connect(database) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def make_tricky_tables(server, database):
    execute(server, database, TRICKY_TABLE.format(name="tricky"), "CREATE TABLE empty_t (id int PRIMARY KEY)")
    with server.connect(database) as conn, conn.cursor() as cur:
        for statement in TRICKY_ROWS:
            statement = statement.format(name="tricky")
            cur.execute(statement, (bytes(range(256)) * 3,) if "%s" in statement else None)


def client_children():
    """The mariadb / mariadb-dump processes (zombies included) that are children of this process."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid, encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        command = stat[stat.index("(") + 1:stat.rindex(")")]
        state, parent = stat[stat.rindex(")") + 2:].split()[:2]
        if int(parent) == os.getpid() and command in CLIENT_PROGRAMS:
            found.append((int(pid), command, state))
    return found


def rss_bytes():
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Watcher(threading.Thread):
    """Samples this process's RSS and every process's argv while a copy runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self.command_lines = []

    def run(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open("/proc/%s/cmdline" % pid, "rb") as handle:
                            self.command_lines.append(handle.read())
                    except OSError:
                        continue

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


@pytest.fixture(scope="module")
def big_db(servers):
    """A source database with one ~50 MB table, made once for the module."""
    name = "copy_big_%d" % os.getpid()
    execute(servers["source"], None, "CREATE DATABASE `%s`" % name)
    execute(servers["source"], name,
            "CREATE TABLE big (id int PRIMARY KEY, body longtext, raw varbinary(64), note varchar(100)) "
            "DEFAULT CHARSET=utf8mb4",
            "INSERT INTO big SELECT seq, REPEAT(CONCAT(MD5(seq), ' 😀 é '), 60), UNHEX(SHA2(seq, 512)), "
            "CONCAT('row ', seq) FROM seq_1_to_%d" % BIG_ROWS,
            "ANALYZE TABLE big")  # information_schema sizes lag behind a bulk insert until then
    yield name
    execute(servers["source"], None, "DROP DATABASE IF EXISTS `%s`" % name)


@pytest.fixture(scope="module")
def outage_server():
    """A private server that tests may stop (the session's servers stay up for everyone else)."""
    server_set = ServerSet(("outage",))
    server_set.start()
    try:
        yield server_set["outage"]
    finally:
        server_set.stop()


METHOD_ROUTES = {"insert_select": ("source", "source"), "dump": ("source", "target"), "pymysql": ("source", "target")}


@pytest.mark.parametrize("method", sorted(METHOD_ROUTES))
def test_every_method_copies_awkward_data_exactly_and_leaves_the_decoy_alone(servers, fresh_db, method):
    source_name, dest_name = METHOD_ROUTES[method]
    source, dest = servers[source_name], servers[dest_name]
    source_db, dest_db = fresh_db(source_name), fresh_db(dest_name)
    make_tricky_tables(source, source_db)
    execute(dest, dest_db, "CREATE TABLE tricky (id int PRIMARY KEY, note varchar(20))",
            "INSERT INTO tricky VALUES (1, 'decoy')")

    stats = copy_tables(db_on(source, source_db), ["tricky", "empty_t"], db_on(dest, dest_db),
                        rename={"tricky": "stage_tricky", "empty_t": "stage_empty"}, method=method)

    assert stats["method"] == method
    assert stats["tables"]["stage_tricky"]["rows"] == 3 and stats["tables"]["stage_empty"]["rows"] == 0
    assert stats["rows"] == 3 and stats["bytes"] > 0 and stats["seconds"] >= 0
    assert rows_of(dest, dest_db, "stage_tricky") == rows_of(source, source_db, "tricky")
    assert definition_of(dest, dest_db, "stage_tricky") == definition_of(source, source_db, "tricky")
    with dest.connect(dest_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM tricky")
        assert cur.fetchall() == ((1, "decoy"),)
        cur.execute("SELECT COUNT(*) FROM stage_empty")
        assert cur.fetchone() == (0,)
    assert client_children() == []


def test_dump_without_rename_replaces_tables_of_the_same_name(servers, fresh_db):
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    make_tricky_tables(servers["source"], source_db)
    execute(servers["target"], dest_db, "CREATE TABLE tricky (old int)", "INSERT INTO tricky VALUES (1), (2)")

    stats = copy_tables(db_on(servers["source"], source_db), ["tricky"], db_on(servers["target"], dest_db))

    assert stats["method"] == "dump" and stats["tables"] == {"tricky": {"rows": 3, "bytes": stats["bytes"]}}
    assert rows_of(servers["target"], dest_db, "tricky") == rows_of(servers["source"], source_db, "tricky")


def test_copies_work_whatever_sql_mode_the_servers_run_with(servers, fresh_db):
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    make_tricky_tables(servers["source"], source_db)
    modes = {"source": "ANSI_QUOTES,STRICT_ALL_TABLES",
             "target": "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,NO_BACKSLASH_ESCAPES"}
    previous = {}
    try:
        for name, mode in modes.items():
            with servers[name].connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.sql_mode")
                previous[name] = cur.fetchone()[0]
                cur.execute("SET GLOBAL sql_mode = %s", (mode,))
        for method in ("dump", "pymysql"):
            copy_tables(db_on(servers["source"], source_db), ["tricky"], db_on(servers["target"], dest_db),
                        rename={"tricky": method}, method=method)
            assert rows_of(servers["target"], dest_db, method) == rows_of(servers["source"], source_db, "tricky")
    finally:
        for name, mode in previous.items():
            with servers[name].connect() as conn, conn.cursor() as cur:
                cur.execute("SET GLOBAL sql_mode = %s", (mode,))


def test_large_dump_through_the_rewriter_streams_in_bounded_memory_and_keeps_the_password_off_argv(
        servers, fresh_db, big_db):
    dest_db = fresh_db("target")
    with Watcher() as watcher:
        stats = copy_tables(db_on(servers["source"], big_db), ["big"], db_on(servers["target"], dest_db),
                            rename={"big": "stage_big"}, method="dump")
    assert stats["rows"] == BIG_ROWS and stats["bytes"] > 40e6
    dumps_seen = [line.split(b"\0") for line in watcher.command_lines
                  if os.path.basename(line.split(b"\0")[0]) in (b"mariadb-dump", b"mysqldump")]
    assert dumps_seen, "the watcher never saw the dump running"
    assert all(argv[1].startswith(b"--defaults-extra-file=") for argv in dumps_seen)
    assert not any(servers.password.encode() in line for line in watcher.command_lines)
    assert watcher.peak - watcher.baseline < 50e6
    assert client_children() == []


def test_large_pymysql_copy_streams_in_bounded_memory(servers, fresh_db, big_db):
    dest_db = fresh_db("target")
    with Watcher() as watcher:
        stats = copy_tables(db_on(servers["source"], big_db), ["big"], db_on(servers["target"], dest_db),
                            method="pymysql")
    assert stats["rows"] == BIG_ROWS
    assert watcher.peak - watcher.baseline < 50e6
    with servers["target"].connect(dest_db) as conn, conn.cursor() as cur:
        cur.execute("CHECKSUM TABLE big")
        copied = cur.fetchone()[1]
    with servers["source"].connect(big_db) as conn, conn.cursor() as cur:
        cur.execute("CHECKSUM TABLE big")
        assert cur.fetchone()[1] == copied


def test_insert_select_does_not_lock_the_live_source_rows(servers, fresh_db, big_db):
    dest_db = fresh_db("source")
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(stats=copy_tables(
        db_on(servers["source"], big_db), ["big"], db_on(servers["source"], dest_db), rename={"big": "work_big"})))
    worker.start()
    try:
        with servers["source"].connect(big_db) as conn, conn.cursor() as cur:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and worker.is_alive():
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO%%work_big%%'")
                if cur.fetchone()[0]:
                    break
                time.sleep(0.01)
            assert worker.is_alive(), "the copy finished before the writer could try"
            # A row the copy has already read: REPEATABLE READ would hold a shared lock on it until the end.
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute("UPDATE big SET note = 'written during the copy' WHERE id = 1")
            assert worker.is_alive(), "the copy finished before the writer's update"
    finally:
        worker.join(60)
    assert outcome["stats"]["method"] == "insert_select" and outcome["stats"]["rows"] == BIG_ROWS


def test_wrong_password_of_the_source_is_systemic(servers, fresh_db):
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    execute(servers["source"], source_db, "CREATE TABLE t (id int)")
    wrong = dict(servers["source"].connection(), password="not-the-password")
    with pytest.raises(MigrationError) as caught:
        copy_tables(Database.from_params(wrong).on(source_db), ["t"], db_on(servers["target"], dest_db))
    error = caught.value
    assert (error.failure_class, error.reason, error.error_code, error.phase) == (SYSTEMIC, "access", 1045, "copy")
    assert "not-the-password" not in str(error)


def test_wrong_password_of_the_destination_fails_the_loader_and_is_systemic(servers, fresh_db):
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    execute(servers["source"], source_db, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
    wrong = dict(servers["target"].connection(), password="not-the-password")
    with pytest.raises(MigrationError) as caught:
        copy_tables(db_on(servers["source"], source_db), ["t"], Database.from_params(wrong, role="target").on(dest_db),
                    method="dump")
    error = caught.value
    assert (error.failure_class, error.reason, error.error_code) == (SYSTEMIC, "access", 1045)
    assert "loading into the target database (127.0.0.1:%d/%s): mariadb failed (exit status 1): ERROR 1045 (28000): " \
        "Access denied" % (servers["target"].port, dest_db) in str(error)
    assert client_children() == []


def test_a_failing_dump_is_reported_rather_than_the_truncated_load(servers, fresh_db, tmp_path):
    dest_db = fresh_db("target")
    dump_path, client_path = copy_engine.client_tools()
    wrong = dict(servers["source"].connection(), password="not-the-password")
    with Database.from_params(wrong).client_options() as source_options, \
            db_on(servers["target"], None).client_options() as dest_options, \
            open(tmp_path / "dump.err", "w+b") as dump_errors, open(tmp_path / "load.err", "w+b") as load_errors:
        pipeline = DumpPipeline(dump_command(dump_path, source_options, "mysql", ["user"]),
                                load_command(client_path, dest_options, dest_db), dump_errors, load_errors,
                                None, Deadline(30))
        pipeline.run()
        side, text, status = pipeline.failure()
    assert (side, status) == ("dump", 2) and text.startswith("mariadb-dump: Got error: 1045: \"Access denied")
    assert not pipeline.timed_out and client_children() == []


def test_a_stopped_server_is_systemic_and_the_copy_works_again_once_it_is_back(servers, fresh_db, outage_server):
    source_db = fresh_db("source")
    execute(servers["source"], source_db, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1), (2)")
    execute(outage_server, None, "CREATE DATABASE IF NOT EXISTS landing")
    stop_server(outage_server)
    try:
        for method in ("dump", "pymysql"):
            with pytest.raises(MigrationError) as caught:
                copy_tables(db_on(servers["source"], source_db), ["t"], db_on(outage_server, "landing"),
                            method=method)
            assert caught.value.failure_class == SYSTEMIC and caught.value.reason == "connection", str(caught.value)
    finally:
        start_server_again(outage_server)
    stats = copy_tables(db_on(servers["source"], source_db), ["t"], db_on(outage_server, "landing"))
    assert stats["rows"] == 2
    assert client_children() == []


def test_a_server_that_goes_down_during_the_copy_is_systemic(servers, big_db, outage_server):
    execute(outage_server, None, "DROP DATABASE IF EXISTS landing", "CREATE DATABASE landing")
    outcome = {}

    def run():
        try:
            outcome["stats"] = copy_tables(db_on(servers["source"], big_db), ["big"], db_on(outage_server, "landing"),
                                           method="dump")
        except MigrationError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker.is_alive():
            with outage_server.connect("landing") as conn, conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'landing'")
                if cur.fetchone()[0]:
                    break
            time.sleep(0.02)
        stop_server(outage_server)
        worker.join(60)
    finally:
        if not outage_server.is_running():
            start_server_again(outage_server)
    assert "error" in outcome, "the copy finished before the server went down: %r" % outcome
    assert outcome["error"].failure_class == SYSTEMIC, str(outcome["error"])
    assert outcome["error"].reason in ("connection", "shutdown")
    # The loader's stderr had the failing INSERT echoed in it; row data must not reach the message.
    assert "😀" not in str(outcome["error"]) and len(str(outcome["error"])) < 2000
    assert client_children() == []


def test_a_missing_source_table_is_a_site_failure_that_names_the_table(servers, fresh_db):
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    execute(servers["source"], source_db, "CREATE TABLE wp_9_posts (id int)")
    with pytest.raises(MigrationError) as caught:
        copy_tables(db_on(servers["source"], source_db), ["wp_9_posts", "wp_9_options"],
                    db_on(servers["target"], dest_db))
    assert (caught.value.failure_class, caught.value.table, caught.value.phase) == (SITE, "wp_9_options", "copy")
    with servers["target"].connect(dest_db) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == ()


def test_verification_catches_a_destination_that_lost_rows(servers, fresh_db):
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    execute(servers["source"], source_db, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1), (2), (3)")
    execute(servers["target"], dest_db, "CREATE TABLE s_t (id int)", "INSERT INTO s_t VALUES (1), (2)")
    with pytest.raises(MigrationError) as caught:
        verify_copy(db_on(servers["source"], source_db), db_on(servers["target"], dest_db), {"t": "s_t"}, {"t": 3})
    error = caught.value
    assert (error.failure_class, error.reason, error.table) == (SITE, "verification", "t")
    assert "s_t has 2 rows after the copy, but %s.t had 3 before the copy and has 3 now" % source_db in str(error)
    # A source that changed during the copy is accepted when the copy matches its count before or after.
    assert verify_copy(db_on(servers["source"], source_db), db_on(servers["target"], dest_db),
                       {"t": "s_t"}, {"t": 2}) == {"s_t": 2}


@pytest.mark.parametrize("method", sorted(METHOD_ROUTES))
def test_timeout_stops_the_copy_and_leaves_no_child_process(servers, fresh_db, method):
    source_name, dest_name = METHOD_ROUTES[method]
    source_db, dest_db = fresh_db(source_name), fresh_db(dest_name)
    execute(servers[source_name], source_db, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
    execute(servers[dest_name], dest_db, "CREATE TABLE stage_t (id int)")
    # An open transaction that has read the destination table holds its metadata lock: DROP TABLE waits.
    blocker = servers[dest_name].connect(dest_db)
    try:
        with blocker.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("SELECT * FROM stage_t")
        started = time.monotonic()
        with pytest.raises(MigrationError) as caught, Deadline(2).armed() as deadline:
            copy_tables(db_on(servers[source_name], source_db), ["t"], db_on(servers[dest_name], dest_db),
                        rename={"t": "stage_t"}, method=method, deadline=deadline)
        elapsed = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()
    assert (caught.value.reason, caught.value.failure_class, caught.value.phase) == ("timeout", SITE, "copy")
    assert 2 <= elapsed < 10
    assert client_children() == []


def test_a_killed_loaders_session_is_ended_by_its_lock_and_nothing_of_it_runs_after(servers, fresh_db):
    """A loader started with a session lock takes it as it connects; once its process is killed, its session may
    still be on the server with a statement to finish (here an INSERT waiting for a table lock).
    ``end_sessions_holding`` ends that session: after it returns the session is gone and its statement never ran,
    so nothing the loader sent lands after the cleanup that follows."""
    from ansible_collections.wfu.multisite.plugins.module_utils import server_locks

    server = servers["target"]
    database = fresh_db("target")
    execute(server, database, "CREATE TABLE blocker (id INT PRIMARY KEY)")
    dest = db_on(server, database, role="target")
    name = "wfu:load:test%d:1" % os.getpid()
    holder = server.connect(database)
    loader = None
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES blocker WRITE")
        with dest.client_options() as options:
            loader = copy_engine.spawn_client(
                copy_engine.load_command(copy_engine.required_client_tools()[1], options, database, session_lock=name),
                stdin=copy_engine.subprocess.PIPE, stdout=copy_engine.subprocess.DEVNULL,
                stderr=copy_engine.subprocess.DEVNULL)
        loader.stdin.write(b"INSERT INTO blocker VALUES (1);\n")
        loader.stdin.flush()
        session = None
        with server.connect() as conn, conn.cursor() as cur:
            for _attempt in range(200):
                cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
                session = cur.fetchone()[0]
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE "
                            "'INSERT INTO blocker%%'", (session,))
                if session is not None and cur.fetchone()[0] == 1:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the loader's session did not take its lock and wait in its INSERT")
        loader.kill()
        loader.wait()
        with server.connect() as conn:
            assert server_locks.end_sessions_holding(conn, [name, "wfu:load:never-used:1"], 10) == []
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (session,))
                assert cur.fetchone()[0] == 0, "the killed loader's session is still on the server"
        with holder.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        time.sleep(0.5)
        assert rows_of_blocker(server, database) == ()
    finally:
        holder.close()
        if loader is not None and loader.poll() is None:
            loader.kill()
            loader.wait()


def rows_of_blocker(server, database):
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM blocker")
        return cur.fetchall()


def test_a_loader_lock_name_is_checked():
    with pytest.raises(copy_engine.ConfigError, match="lock name"):
        copy_engine.load_command("mariadb", ("--defaults-extra-file=/dev/fd/3", 3), "db", session_lock="x'); DROP")
