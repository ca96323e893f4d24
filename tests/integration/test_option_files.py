"""The client programs' option files cannot outlive their process.

mariadb-dump and mariadb read the password from a ``[client]`` option file.  It lives in memory only
(an anonymous memfd passed as ``/dev/fd/N``), so a module killed with SIGKILL in the middle of a copy
(the OOM killer, a task timeout) leaves no file holding the password anywhere: not in ``work_dir``,
not in the temp directory.  And no process ever shows the password on its command line.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import CmdlineWatcher, MigrationSetup, client_children

from tools.wpnetwork import NetworkSpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"

# The pipeline in a process of its own, as in a module.  The source's wp_2_posts is locked just as its dump's
# command is built (after the copy has counted its rows), so that dump waits, holding its option file, until the
# process is killed.
MIGRATE = """
import sys
sys.path[:0] = [{collections!r}, {root!r}, {here!r}]
import pymysql
from params import LOCK, SOURCE, TARGET, MIGRATION
from ansible_collections.wfu.multisite.plugins.module_utils import copy_engine
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint, SiteMigration

real_command = copy_engine.dump_command
held = []

def lock_then_dump(dump_path, options, database, tables, *args, **kwargs):
    if "wp_2_posts" in tables and not held:
        held.append(pymysql.connect(**LOCK))
        held[0].cursor().execute("LOCK TABLES wp_2_posts WRITE")
    return real_command(dump_path, options, database, tables, *args, **kwargs)

copy_engine.dump_command = lock_then_dump
SiteMigration(2, Endpoint(SOURCE), Endpoint(TARGET), MIGRATION, options={{"work_dir": {work_dir!r}}}).run(timeout=600)
"""


@pytest.fixture(scope="module")
def setup(servers):
    migration = MigrationSetup(servers, NetworkSpec(url=DEV, sites=2, posts_per_site=4),
                               NetworkSpec(url=UAT, sites=2, posts_per_site=2, seed=2))
    yield migration
    migration.drop()


def files_holding(secret, *folders):
    """Every file below ``folders`` whose bytes contain ``secret``."""
    found = []
    for folder in folders:
        for directory, _dirs, names in os.walk(folder):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    with open(path, "rb") as handle:
                        if secret.encode() in handle.read():
                            found.append(path)
                except OSError:
                    continue
    return found


def test_a_module_killed_mid_copy_leaves_no_password_on_disk(setup, tmp_path):
    work_dir, temp_dir = tmp_path / "work", tmp_path / "tmp"
    temp_dir.mkdir()
    server = setup.source.server
    # The settings reach the process in a file, as a module's arguments do: never on its command line.
    code = tmp_path / "code"
    code.mkdir()
    (code / "params.py").write_text("LOCK = %r\nSOURCE = %r\nTARGET = %r\nMIGRATION = %r\n" % (
        dict(server.connection(setup.source.database), autocommit=True), setup.source_env(), setup.target_env(),
        setup.migration_db()))
    (code / "migrate.py").write_text(textwrap.dedent(MIGRATE.format(
        collections=os.path.join(ROOT, ".venv", "collections"), root=ROOT, here=str(code), work_dir=str(work_dir))))
    env = dict(os.environ, TMPDIR=str(temp_dir))
    with CmdlineWatcher(server.password, interval=0.002) as watcher:
        migrating = subprocess.Popen([sys.executable, str(code / "migrate.py")], env=env)
        try:
            # The copy dumps table by table; the dump that waits is the one for the locked table: the dump
            # still running half a second after it was first seen (the others end at once).
            deadline = time.monotonic() + 60
            first_seen, dumps = {}, []
            while not dumps and time.monotonic() < deadline and migrating.poll() is None:
                now = time.monotonic()
                for pid, comm, state in client_children(migrating.pid):
                    if comm == "mariadb-dump" and state != "Z":
                        first_seen.setdefault(pid, now)
                        if now - first_seen[pid] >= 0.5:
                            dumps.append(pid)
                time.sleep(0.05)
            assert dumps, "the copy never started a dump that waits for the locked table"
            with open("/proc/%d/cmdline" % dumps[0], "rb") as handle:
                argv = handle.read().split(b"\0")
            assert argv[1].startswith(b"--defaults-extra-file=/dev/fd/")
            # The option file the dump reads is an anonymous in-memory file, not a path on any disk.
            option_fd = argv[1].rsplit(b"/", 1)[1].decode()
            assert os.readlink("/proc/%d/fd/%s" % (dumps[0], option_fd)).startswith("/memfd:")
            # While the copy runs, no file holds the password either.
            assert files_holding(server.password, work_dir, temp_dir) == []
            os.kill(migrating.pid, signal.SIGKILL)
            migrating.wait()
        finally:
            if migrating.poll() is None:
                migrating.kill()
                migrating.wait()
    assert migrating.returncode == -signal.SIGKILL
    assert files_holding(server.password, work_dir, temp_dir) == []
    assert watcher.leaks == [] and watcher.seen.get("mariadb-dump")
