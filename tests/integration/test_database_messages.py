"""Every connection knows which database it is: its part in the migration, its environment, host, port and name.

A wrong password for the target and for the migration database must read differently, a refused
connection must name host, port and environment, and the settings of a database are resolved once.
"""

import socket

import pytest
from helpers import MigrationSetup

from ansible_collections.wfu.multisite.plugins.module_utils import db
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError, failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint, SiteMigration
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
WRONG = "Wrong-Pa55word-%d" % 7331


@pytest.fixture(scope="module")
def setup(servers):
    migration = MigrationSetup(servers, NetworkSpec(url=DEV, sites=2, posts_per_site=2),
                               NetworkSpec(url=UAT, sites=2, posts_per_site=1, seed=2))
    yield migration
    migration.drop()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def migrate(setup, target_db=None, migration_db=None):
    target = setup.target_env()
    if target_db is not None:
        target["db"] = target_db
    site = SiteMigration(2, Endpoint(setup.source_env()), Endpoint(target), migration_db or setup.migration_db())
    with pytest.raises(MigrationError) as raised:
        site.run(timeout=60)
    return raised.value


def test_a_wrong_password_says_which_database_refused_it(setup):
    target_error = migrate(setup, target_db=dict(setup.target_env()["db"], password=WRONG))
    migration_error = migrate(setup, migration_db=dict(setup.migration_db(), password=WRONG))
    target_where = "127.0.0.1:%d/%s" % (setup.target_server.port, setup.target_database)
    migration_where = "127.0.0.1:%d/%s" % (setup.migration_server.port, setup.migration_database)
    assert "the target database of uat (%s) refused the login of user 'wfu'" % target_where in str(target_error)
    assert "wfu_environments.uat.db" in target_error.hint
    assert "the migration database (%s) refused the login of user 'wfu'" % migration_where in str(migration_error)
    assert "wfu_migration_db" in migration_error.hint
    for error in (target_error, migration_error):
        assert (error.failure_class, error.reason, error.error_code, error.phase) == ("systemic", "access", 1045, "connect")
        assert WRONG not in str(error)
    assert failure_result(target_error)["database"] == {
        "role": "target", "env": "uat", "host": "127.0.0.1", "port": setup.target_server.port, "socket": None,
        "database": setup.target_database, "user": "wfu"}
    assert failure_result(migration_error)["database"]["role"] == "migration"


def test_a_refused_connection_names_host_port_and_environment(setup):
    port = free_port()
    error = migrate(setup, target_db=dict(setup.target_env()["db"], port=port))
    assert ("cannot connect to the target database of uat (127.0.0.1:%d/%s)" % (port, setup.target_database)
            in str(error)), str(error)
    assert "Connection refused" in str(error)
    assert (error.failure_class, error.reason) == ("systemic", "connection")


def test_a_failing_statement_names_its_database(setup, monkeypatch):
    """Not only the connect: an error of a statement on an open connection carries its database too."""
    def missing_table(self, conn, work):
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM wfu_no_such_table")

    monkeypatch.setattr(SiteMigration, "_retarget_prefixed_keys", missing_table)
    error = migrate(setup)
    assert "the migration database (127.0.0.1:%d/%s): Table" % (setup.migration_server.port,
                                                                setup.migration_database) in str(error)
    assert (error.failure_class, error.phase, error.database.role) == ("site", "replace", "migration")


def test_connection_settings_are_resolved_once_per_database(setup, tmp_path, monkeypatch):
    """The option file of a database is read once per site, however many connections the site makes."""
    option_file = tmp_path / "uat.cnf"
    server = setup.target_server
    option_file.write_text("[client]\nhost=%s\nport=%d\nuser=%s\npassword=%s\n"
                           % (server.host, server.port, server.user, server.password))
    option_file.chmod(0o600)
    reads = []
    real = db._read_option_file

    def counting(path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(db, "_read_option_file", counting)
    target = dict(setup.target_env(), db={"config_file": str(option_file), "database": setup.target_database})
    result = SiteMigration(2, Endpoint(setup.source_env()), Endpoint(target), setup.migration_db()).run(timeout=120)
    assert result["tables"] == setup.expected_target_tables(2)
    assert reads == [str(option_file)]
