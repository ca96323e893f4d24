"""The throwaway-server launcher: start, connect with the password, no orphans after a crash or Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pymysql
import pytest

from tools.mariadb_servers import ServerSet, start_server_again, stop_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().split()[2] != "Z"


def test_servers_accept_the_password_and_refuse_a_wrong_one(servers):
    for name in ("source", "target", "migration"):
        server = servers[name]
        assert server.host == "127.0.0.1" and server.port != 3306
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@character_set_server, @@port")
            charset, port = cur.fetchone()
        assert charset == "utf8mb4" and port == server.port
        with pytest.raises(pymysql.err.OperationalError) as err:
            pymysql.connect(host=server.host, port=server.port, user=server.user, password="wrong")
        assert err.value.args[0] == 1045


def test_password_is_not_on_any_command_line(servers):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    assert servers.password.encode() not in handle.read()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue


def test_stop_and_restart_on_the_same_port():
    with ServerSet(["solo"]) as server_set:
        server = server_set["solo"]
        pid = server.pid
        stop_server(server)
        assert not _alive(pid)
        start_server_again(server)
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@port")
            assert cur.fetchone()[0] == server.port
    assert not server.is_running()
    assert not os.path.exists(server_set.base_dir)


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_no_orphan_server_when_the_owner_is_interrupted(how, tmp_path):
    """Ctrl-C (SIGINT) or kill -9 of the process that started the servers must not leave mariadbd running."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from tools.mariadb_servers import ServerSet
        s = ServerSet(["a", "b"]).start()
        open(%r, "w").write(" ".join(str(x.pid) for x in s.servers.values()))
        try:
            time.sleep(600)
        finally:
            s.stop()
    """ % (ROOT, str(pidfile)))
    owner = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "servers did not start"
        time.sleep(0.1)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert all(_alive(p) for p in pids)
    owner.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
    owner.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "orphan mariadbd left after %s" % how
