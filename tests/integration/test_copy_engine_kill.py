"""A module process killed mid-copy (OOM killer, task timeout) must not leave its client programs running."""

import os
import signal
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(p) for p in handle.read().split()]
    except FileNotFoundError:
        return []


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_clients_die_with_a_killed_copier(servers, fresh_db, tmp_path):
    """Without a rename the dump feeds the loader directly, so only the kernel can stop them with the copier."""
    source_db, dest_db = fresh_db("source"), fresh_db("target")
    with servers["source"].connect(source_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY AUTO_INCREMENT, body LONGTEXT)")
        cur.execute("INSERT INTO big (body) SELECT REPEAT('x', 200000) FROM seq_1_to_1000")
    params = tmp_path / "params.py"
    params.write_text("SOURCE = %r\nDEST = %r\n" % (servers["source"].connection(), servers["target"].connection()))
    script = textwrap.dedent("""
        import sys
        sys.path[:0] = [%r, %r]
        from params import SOURCE, DEST
        from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import copy_tables
        from ansible_collections.wfu.multisite.plugins.module_utils.db import Database
        copy_tables(Database.from_params(SOURCE).on(%r), ["big"], Database.from_params(DEST).on(%r), method="dump")
    """ % (os.path.join(ROOT, ".venv", "collections"), str(tmp_path), source_db, dest_db))
    copier = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    clients = []
    while len(clients) < 2 and time.monotonic() < deadline:
        clients = _children(copier.pid)
        time.sleep(0.05)
    assert len(clients) >= 2, "the copy did not start its dump and load clients"
    os.kill(copier.pid, signal.SIGKILL)
    copier.wait()
    deadline = time.monotonic() + 1  # far less than the copy itself takes
    while any(_alive(pid) for pid in clients) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in clients), "mariadb-dump/mariadb outlived the killed copier"
