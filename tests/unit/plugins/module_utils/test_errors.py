"""Error classification: systemic (stop the run) versus site (go on), hints, and no password in any result."""

import errno
import socket
import subprocess

import pymysql
import pytest

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    HINTS, SITE, SYSTEMIC, MigrationError, classify_error, error_code, failure_reason,
    failure_result, message_error_code, message_reason, redact)

# stderr lines as MariaDB 10.11's mariadb-dump and mariadb print them (captured from the real tools).
DUMP_ACCESS_DENIED = ("mariadb-dump: Got error: 1045: \"Access denied for user 'wfu'@'127.0.0.1' (using password: "
                      "YES)\" when trying to connect")
DUMP_CANNOT_CONNECT = "mariadb-dump: Got error: 2002: \"Can't connect to server on '127.0.0.1' (115)\" when trying to connect"
DUMP_MISSING_TABLE = 'mariadb-dump: Couldn\'t find table: "nope"'
DUMP_UNKNOWN_DATABASE = "mariadb-dump: Got error: 1049: \"Unknown database 'nodb'\" when selecting the database"
DUMP_BROKEN_PIPE = "mariadb-dump: Got errno 32 on write"
LOAD_SYNTAX = ("ERROR 1064 (42000) at line 2: You have an error in your SQL syntax; check the manual that corresponds "
               "to your MariaDB server version for the right syntax to use near 'selec x' at line 1")
LOAD_MISSING_TABLE = "ERROR 1146 (42S02) at line 1: Table 'd.nope' doesn't exist"
LOAD_DENIED_TABLE = "ERROR 1142 (42000) at line 1: CREATE command denied to user 'ro'@'127.0.0.1' for table `d`.`x`"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("text, code, reason", [
    (DUMP_ACCESS_DENIED, 1045, "access"),
    (DUMP_CANNOT_CONNECT, 2002, "connection"),
    (DUMP_UNKNOWN_DATABASE, 1049, "missing_database"),
    (DUMP_BROKEN_PIPE, None, "connection"),
    ("ERROR 2003 (HY000): Can't connect to MySQL server on 'db.example.edu:3306' (111)", 2003, "connection"),
    ("ERROR 2013 (HY000) at line 48: Lost connection to server during query", 2013, "connection"),
    ("mysqldump: Error 2013: Lost connection to MySQL server during query when dumping table `wp_posts` at row: 812",
     2013, "connection"),
    ("ERROR 1040 (HY000): Too many connections", 1040, "resources"),
    ("ERROR 1290 (HY000) at line 30: The MariaDB server is running with the --read-only option so it cannot "
     "execute this statement", 1290, "read_only"),
    ("ERROR 1053 (08S01) at line 9: Server shutdown in progress", 1053, "shutdown"),
    ("ERROR 1114 (HY000) at line 77: The table 'wp_5_posts' is full", 1114, "disk_full"),
    ("ERROR 1030 (HY000) at line 77: Got error 28 \"No space left on device\" from storage engine InnoDB", 1030,
     "disk_full"),
    ("mysqldump: Got error: 1044: Access denied for user 'wp'@'%' to database 'wp' when selecting the database",
     1044, "access"),
    (LOAD_DENIED_TABLE, 1142, "access"),
    ("mariadb-dump: Couldn't execute 'show create table `x`': Table 'wp.x' doesn't exist (1146)", 1146, "site_data"),
])
def test_messages_of_the_command_line_tools_are_classified(text, code, reason):
    assert message_error_code(text) == code
    assert message_reason(text) == reason


@pytest.mark.parametrize("text", [DUMP_MISSING_TABLE, LOAD_SYNTAX, LOAD_MISSING_TABLE,
                                  "ERROR 1062 (23000) at line 40: Duplicate entry '5' for key 'PRIMARY'",
                                  "ERROR 1205 (HY000): Lock wait timeout exceeded; try restarting transaction",
                                  "ERROR 1366 (22007): Incorrect string value: '\\xF0\\x9F' for column"])
def test_errors_of_one_sites_tables_or_data_are_site_failures(text):
    assert message_reason(text) == "site_data"


def test_a_refused_connection_from_pymysql_is_systemic():
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql.connect(host="127.0.0.1", port=free_port(), user="x", password="y", connect_timeout=2)
    assert error_code(caught.value) == 2003
    assert classify_error(caught.value) == SYSTEMIC
    assert failure_reason(caught.value) == "connection"


@pytest.mark.parametrize("exc, expected", [
    (pymysql.err.OperationalError(1045, "Access denied for user 'wp'@'10.0.0.5' (using password: YES)"), SYSTEMIC),
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), SYSTEMIC),
    (pymysql.err.OperationalError(2006, "MySQL server has gone away"), SYSTEMIC),
    (pymysql.err.OperationalError(1021, "Disk full (/tmp/#sql_1.MAI); waiting for someone to free some space..."),
     SYSTEMIC),
    (pymysql.err.OperationalError(1792, "Cannot execute statement in a READ ONLY transaction"), SYSTEMIC),
    (pymysql.err.InternalError(1036, "Table 'wp_options' is read only"), SYSTEMIC),
    (pymysql.err.InterfaceError(0, ""), SYSTEMIC),
    (pymysql.err.ProgrammingError(1146, "Table 'wp.wp_7_posts' doesn't exist"), SITE),
    (pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"), SITE),
    (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"), SITE),
    (pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"), SITE),
    (pymysql.err.DataError(1406, "Data too long for column 'post_title' at row 1"), SITE),
    (OSError(errno.ENOSPC, "No space left on device"), SYSTEMIC),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), SYSTEMIC),
    (ConfigError("port must be an integer"), SYSTEMIC),
    (subprocess.TimeoutExpired(["mariadb-dump"], 30), SITE),
    (ValueError("unexpected value in wp_5_options"), SITE),
])
def test_exceptions_are_classified(exc, expected):
    assert classify_error(exc) == expected


def test_a_missing_client_binary_is_systemic():
    with pytest.raises(FileNotFoundError) as caught:
        subprocess.run(["mariadb-dump", "--version"], env={"PATH": "/nonexistent"}, check=False)
    assert failure_reason(caught.value) == "missing_binary"
    assert classify_error(caught.value) == SYSTEMIC
    assert failure_result(caught.value)["hint"] == HINTS["missing_binary"]


def test_the_cause_of_a_wrapping_exception_decides():
    try:
        try:
            raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
        except pymysql.err.OperationalError as exc:
            raise RuntimeError("copy failed") from exc
    except RuntimeError as outer:
        assert classify_error(outer) == SYSTEMIC


def test_migration_error_names_site_table_phase_and_what_to_do():
    error = MigrationError("Table 'wp.wp_12_posts' doesn't exist", site_id=12, table="wp_12_posts", phase="copy",
                           error_code=1146)
    text = str(error)
    assert text.startswith("Site 12, table wp_12_posts, phase copy: Table 'wp.wp_12_posts' doesn't exist (error 1146)")
    assert "failure of this site only" in text and HINTS["site_data"] in text
    assert "\n" not in text
    assert error.failure_class == SITE and error.reason == "site_data"


def test_migration_error_without_reason_takes_the_class_it_is_given():
    error = MigrationError("the migration host lost its network", failure_class=SYSTEMIC)
    assert error.failure_class == SYSTEMIC and error.reason == "environment"
    assert "systemic failure" in str(error)


def test_wrap_keeps_the_context_of_a_migration_error_and_adds_what_was_missing():
    original = MigrationError("too slow", table="wp_3_posts", reason="timeout")
    wrapped = MigrationError.wrap(original, site_id=3, phase="copy", table="other")
    assert wrapped is original
    assert (wrapped.site_id, wrapped.table, wrapped.phase, wrapped.failure_class) == (3, "wp_3_posts", "copy", SITE)
    assert wrapped.hint == HINTS["timeout"]


def test_failure_result_has_the_contract_keys_and_no_password():
    exc = pymysql.err.OperationalError(
        1045, "Access denied for user 'wp'@'10.1.2.3' (using password: YES) password=hunter2 "
              "CREATE USER x IDENTIFIED BY 's3cret'")
    result = failure_result(exc, phase="copy", site_id=7, table="wp_7_posts", secrets=["topsecret"])
    assert set(result) == {"msg", "failure_class", "reason", "error_code", "phase", "site_id", "table", "hint",
                           "database"}
    assert result["failure_class"] == SYSTEMIC and result["reason"] == "access" and result["error_code"] == 1045
    assert (result["phase"], result["site_id"], result["table"]) == ("copy", 7, "wp_7_posts")
    assert "hunter2" not in result["msg"] and "s3cret" not in result["msg"]
    assert "(using password: YES)" in result["msg"]
    assert result["msg"].startswith("Site 7, table wp_7_posts, phase copy: Access denied")


@pytest.mark.parametrize("text, secret", [
    ('[client]\npassword="p@ss word"\n', "p@ss word"),
    ("--password=abc123 --user=wp", "abc123"),
    ('{"user": "wp", "password": "xyz789"}', "xyz789"),
    ("GRANT ALL ON *.* TO 'wp'@'%' IDENTIFIED BY 'it''s'", "it''s"),
    ("ALTER USER wp IDENTIFIED VIA mysql_native_password USING PASSWORD('n3w')", "n3w"),
    ("SET PASSWORD = PASSWORD('old-style')", "old-style"),
    ("connect failed for vault value swordfish", "swordfish"),
])
def test_redact_removes_passwords(text, secret):
    assert secret not in redact(text, secrets=["swordfish"])
