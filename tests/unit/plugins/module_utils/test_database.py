"""db.Database: connection settings resolved once into a value that names itself and keeps the password hidden."""

import os

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, Database

SECRET = "S3cr3t-\"quoted\"-\\back"


def test_the_password_stays_out_of_repr_and_str():
    database = Database.from_params({"host": "db.example.edu", "user": "wp", "password": SECRET, "database": "wp_uat"},
                                    role="target", env="uat")
    assert SECRET not in repr(database) and SECRET not in str(database)
    assert str(database) == "the target database of uat (db.example.edu:3306/wp_uat)"
    assert database.identity() == {"role": "target", "env": "uat", "host": "db.example.edu", "port": 3306,
                                   "socket": None, "database": "wp_uat", "user": "wp"}


@pytest.mark.parametrize("role, env, label, settings", [
    ("source", "dev", "the source database of dev", "wfu_environments.dev.db"),
    ("target", "uat", "the target database of uat", "wfu_environments.uat.db"),
    ("migration", None, "the migration database", "wfu_migration_db"),
    (None, "prod", "the database of prod", "wfu_environments.prod.db"),
])
def test_a_database_says_which_one_it_is(role, env, label, settings):
    database = Database(role=role, env=env, host="h", port=1, database="d")
    assert (database.label(), database.settings_name()) == (label, settings)


def test_an_option_file_is_read_once_and_fills_what_the_mapping_leaves_out(tmp_path):
    option_file = tmp_path / "uat.cnf"
    option_file.write_text("[client]\nhost=db.uat\nport=3307\nuser=awx\npassword=%s\nsocket=\n" % "from-file")
    database = Database.from_params({"config_file": str(option_file), "database": "wp_uat", "user": "wp"})
    assert (database.host, database.port, database.user, database.password) == ("db.uat", 3307, "wp", "from-file")
    option_file.unlink()
    assert database.on("wp_migration").where() == "db.uat:3307/wp_migration"


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="port must be an integer"):
        Database.from_params({"port": "three"})
    with pytest.raises(ConfigError, match="invalid database name"):
        Database.from_params({"database": "wp; DROP"})


def test_the_same_server_by_another_name_for_loopback():
    first = Database(host="127.0.0.1", port=3306, user="wp", database="a")
    assert first.same_server(Database(host="localhost", port=3306, user="wp", database="b"))
    assert first.same_database(Database(host="localhost", port=3306, user="wp", database="a"))
    assert not first.same_server(Database(host="127.0.0.1", port=3307, user="wp", database="a"))
    assert not first.same_server(Database(host="127.0.0.1", port=3306, user="other", database="a"))


def test_client_options_live_in_memory_and_hold_the_quoted_password():
    database = Database(host="db", port=3306, user="wp", password=SECRET, database="d")
    with database.client_options() as (argument, fd):
        assert argument == "--defaults-extra-file=/dev/fd/%d" % fd
        assert os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:")
        assert oct(os.fstat(fd).st_mode & 0o777) == "0o600"
        with open("/dev/fd/%d" % fd, encoding="utf-8") as handle:
            text = handle.read()
    assert text.splitlines()[0] == "[client]"
    assert 'password="S3cr3t-\\"quoted\\"-\\\\back"' in text and "protocol=TCP" in text
    with pytest.raises(OSError):
        os.fstat(fd)
