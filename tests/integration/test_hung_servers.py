"""A server that hangs (its mariadbd stopped with SIGSTOP: it accepts connections and never answers).

The site must end within its own time limit plus a bounded grace, classified systemic with the
name of the database that hung, leave nothing half-written, and work again once the server is back.
The servers that are frozen here are the tests' own.
"""

import contextlib
import time

import pytest
from helpers import MigrationSetup, client_children, frozen

from ansible_collections.wfu.multisite.plugins.module_utils import pipeline
from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import SiteMigration
from tools.mariadb_servers import ServerSet
from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
SITE_TIMEOUT = 15
# What the call may take beyond its limit: the probe that names the hung server, the cleanup of the others.
GRACE = 10


@pytest.fixture(scope="module")
def private(servers):
    """Source on the shared server; target and migration database on servers of this module's own."""
    with ServerSet(("target", "migration")) as own:
        setup = MigrationSetup({"source": servers["source"], "target": own["target"], "migration": own["migration"]},
                               NetworkSpec(url=DEV, sites=3, posts_per_site=4),
                               NetworkSpec(url=UAT, sites=3, posts_per_site=2, seed=2))
        yield setup
        setup.drop()


def run_frozen(setup, monkeypatch, which, when):
    """Run site 2 with the ``which`` server frozen from ``when`` on; return (error, seconds)."""
    server = {"target": setup.target_server, "migration": setup.migration_server}[which]
    hold = []

    def freeze():
        hold.append(frozen(server))
        hold[-1].__enter__()

    if when == "before":
        freeze()
    else:
        real = getattr(SiteMigration, when)

        def then_freeze(self, *args, **kwargs):
            freeze()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(SiteMigration, when, then_freeze)
    started = time.monotonic()
    try:
        with pytest.raises(MigrationError) as raised:
            setup.site(2).run(timeout=SITE_TIMEOUT)
        return raised.value, time.monotonic() - started
    finally:
        for block in hold:
            block.__exit__(None, None, None)


@pytest.mark.parametrize("which, when", [
    ("target", "before"),
    ("migration", "_copy_to_work"),
    ("target", "_stage"),
    ("target", "_swap"),
], ids=["target-hung-from-the-start", "migration-hangs-at-the-copy", "target-hangs-at-the-stage",
        "target-hangs-at-the-swap"])
def test_a_hung_server_ends_the_site_in_time_as_systemic_naming_the_database(private, monkeypatch, which, when):
    setup = private
    before = setup.target_fingerprint()
    error, seconds = run_frozen(setup, monkeypatch, which, when)
    server = {"target": setup.target_server, "migration": setup.migration_server}[which]
    database = {"target": setup.target_database, "migration": setup.migration_database}[which]
    label = "the target database of uat" if which == "target" else "the migration database"
    assert seconds < SITE_TIMEOUT + GRACE, (seconds, str(error))
    assert (error.failure_class, error.reason) == ("systemic", "server_not_answering"), str(error)
    assert "%s (127.0.0.1:%d/%s) did not answer" % (label, server.port, database) in str(error)
    assert error.database.role == which and error.site_id == 2
    assert client_children() == []
    # Back again: nothing was half-written, and the site migrates (staging tables the cleanup had to leave on the
    # hung server are the next run's to drop).
    monkeypatch.undo()
    live = [t for t in setup.target_tables() if not tbl.target_leftovers([t], setup.target_prefix)]
    assert setup.target_fingerprint(live) == before
    result = setup.site(2).run(timeout=120)
    assert result["tables"] == setup.expected_target_tables(2)
    assert tbl.work_tables_of(setup.migration_tables()) == []
    assert tbl.target_leftovers(setup.target_tables(), setup.target_prefix) == []


class _FreezingAfterTheLimit:
    """A connection whose server is frozen as soon as the swap's time limit (the statement before the RENAME) is
    answered: the RENAME then waits in the server's socket until the call has given up."""

    def __init__(self, conn, freeze):
        self._conn, self._freeze = conn, freeze

    def __getattr__(self, name):
        return getattr(self._conn, name)

    @contextlib.contextmanager
    def cursor(self):
        with self._conn.cursor() as cur:
            execute = cur.execute

            def execute_then_freeze(statement, args=None):
                result = execute(statement, args)
                if statement.startswith("SET @wfu_not_after"):
                    self._freeze()
                return result

            cur.execute = execute_then_freeze
            yield cur


def test_a_swap_the_server_reads_after_the_call_gave_up_is_not_run(private, monkeypatch):
    """The target hangs between the swap's two statements; it wakes up after the call ended: the RENAME waiting in
    its socket must not run, or the target would change after the site was recorded failed and cleaned."""
    setup = private
    before = setup.target_fingerprint()
    hold = []

    def freeze():
        hold.append(frozen(setup.target_server))
        hold[-1].__enter__()

    real = tbl.rename_tables
    monkeypatch.setattr(tbl, "rename_tables", lambda conn, *args, **kwargs: real(
        _FreezingAfterTheLimit(conn, freeze), *args, **kwargs))
    try:
        with pytest.raises(MigrationError) as raised:
            setup.site(2).run(timeout=SITE_TIMEOUT)
    finally:
        for block in hold:
            block.__exit__(None, None, None)
    assert hold, "the swap was never reached"
    assert (raised.value.failure_class, raised.value.reason) == ("systemic", "server_not_answering"), str(raised.value)
    monkeypatch.undo()
    # The server now reads what waited in its socket; give it the time to run it, had it been allowed to.
    assert not statements_running(setup.target_server, ("EXECUTE IMMEDIATE", "RENAME TABLE"), wait=10)
    live = [t for t in setup.target_tables() if not tbl.target_leftovers([t], setup.target_prefix)]
    assert setup.target_fingerprint(live) == before
    result = setup.site(2).run(timeout=120)
    assert result["tables"] == setup.expected_target_tables(2)
    assert tbl.target_leftovers(setup.target_tables(), setup.target_prefix) == []


def statements_running(server, starts, wait):
    """The statements starting with one of ``starts`` that still run on ``server`` after at least one second, and
    once none is left or ``wait`` seconds have passed."""
    time.sleep(1)
    deadline = time.monotonic() + wait
    while True:
        with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL")
            found = [row[0] for row in cur.fetchall() if row[0].startswith(starts)]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


# Runs until killed: unlike SLEEP(), BENCHMARK() does not stop when its client goes away.
SLOW_STATEMENT = "SELECT /* wfu-slow-statement */ BENCHMARK(100000000000, SHA2('wfu', 512))"


def test_a_slow_statement_on_a_healthy_server_is_killed_at_the_deadline(private, monkeypatch):
    """The deadline kills the running statement on the server (KILL QUERY); every server answers, so the failure
    is the site's timeout."""
    setup = private
    real = pipeline.copy_tables

    def copy_slowly(source, tables, *args, **kwargs):
        with contextlib.closing(source.connect(deadline=kwargs["deadline"])) as conn, conn.cursor() as cur:
            cur.execute(SLOW_STATEMENT)
        return real(source, tables, *args, **kwargs)

    monkeypatch.setattr(pipeline, "copy_tables", copy_slowly)
    try:
        started = time.monotonic()
        with pytest.raises(MigrationError) as raised:
            setup.site(2).run(timeout=3)
        assert time.monotonic() - started < 3 + GRACE
        assert (raised.value.failure_class, raised.value.reason, raised.value.phase) == ("site", "timeout", "copy")
        still_running = slow_statements(setup.source.server, wait=5)
        assert still_running == [], "the statement still runs on the server after the deadline"
    finally:
        for connection_id in slow_statements(setup.source.server, wait=0):
            with contextlib.suppress(Exception), contextlib.closing(setup.source.server.connect()) as conn:
                conn.cursor().execute("KILL QUERY %d" % connection_id)


def slow_statements(server, wait):
    """Connection ids running SLOW_STATEMENT, once none is left or after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%%wfu-slow-statement%%' "
                        "AND ID <> CONNECTION_ID()")
            found = [row[0] for row in cur.fetchall()]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
