"""Throwaway MariaDB servers on loopback for tests, benchmarks and the demo.

Each server is a ``mariadbd --no-defaults`` with its own datadir, socket and
log under one temporary directory, listening on a free 127.0.0.1 port.  The
servers are children of the process that started them and are told by the
kernel to terminate when that process dies (``PR_SET_PDEATHSIG``), so an
interrupted or killed test run leaves no orphan ``mariadbd`` behind.  A normal
stop sends SIGTERM to the recorded PID and waits, then SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

DEFAULT_USER = "wfu"
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Run in the child before exec: SIGTERM it when the parent exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    os.setpgrp()


def find_binary(*names):
    for name in names:
        for folder in (os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/usr/local/sbin", "/usr/bin"]):
            candidate = os.path.join(folder, name)
            if os.access(candidate, os.X_OK):
                return candidate
    raise RuntimeError(
        "none of %s was found; run `make setup` (installs mariadb-server and mariadb-client)" % ", ".join(names))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One running server and how to reach it."""

    name: str
    host: str
    port: int
    socket: str
    datadir: str
    user: str
    password: str
    pid: int = 0
    log: str = ""
    argv: list = field(default_factory=list, repr=False)
    process: subprocess.Popen = field(default=None, repr=False, compare=False)

    def connection(self, database=None):
        """Connection settings in the shape of the collection's ``db`` option."""
        params = {"host": self.host, "port": self.port, "user": self.user, "password": self.password}
        if database:
            params["database"] = database
        return params

    def connect(self, database=None, **kwargs):
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               database=database, charset="utf8mb4", autocommit=True, **kwargs)

    def is_running(self):
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def describe(self):
        """Where the server is, without the password (for printing)."""
        return {"name": self.name, "host": self.host, "port": self.port, "socket": self.socket,
                "datadir": self.datadir, "user": self.user, "pid": self.pid, "log": self.log}


class ServerSet:
    """Start and stop a group of throwaway servers under one temp dir."""

    def __init__(self, names=("source", "target", "migration"), base_dir=None, password=None,
                 user=DEFAULT_USER, buffer_pool="128M"):
        self.names = list(names)
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="wfu-mariadb-")
        self.password = password or os.urandom(12).hex()
        self.user = user
        self.buffer_pool = buffer_pool
        self.servers = {}

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        try:
            template = self._template_datadir()
            procs = [self._launch(name, template) for name in self.names]
            for server in procs:
                self._wait_ready(server)
                self._create_user(server)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        stop_servers(list(self.servers.values()))
        self.servers.clear()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __getitem__(self, name):
        return self.servers[name]

    # -- steps -------------------------------------------------------------------
    def _template_datadir(self):
        """Initialise one system datadir; each server starts from a copy (saves ~2 s a server)."""
        template = os.path.join(self.base_dir, "template")
        install = find_binary("mariadb-install-db", "mysql_install_db")
        cmd = [install, "--no-defaults", "--datadir=" + template, "--auth-root-authentication-method=normal",
               "--skip-test-db", "--user=" + _run_user()]
        env = dict(os.environ, TMPDIR=_tmpdir(self.base_dir))
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: %s" % (result.stderr or result.stdout)[-2000:])
        return template

    def _launch(self, name, template):
        root = os.path.join(self.base_dir, name)
        datadir = os.path.join(root, "data")
        os.makedirs(root)
        shutil.copytree(template, datadir, symlinks=True)
        port = free_port()
        server = Server(name=name, host="127.0.0.1", port=port, socket=os.path.join(root, "mysqld.sock"),
                        datadir=datadir, user=self.user, password=self.password, log=os.path.join(root, "error.log"))
        server.argv = _server_argv(server, self.buffer_pool)
        _spawn(server)
        self.servers[name] = server
        return server

    @staticmethod
    def _wait_ready(server, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not server.is_running():
                raise RuntimeError("mariadbd %s exited at start; log:\n%s" % (server.name, _tail(server.log)))
            if os.path.exists(server.socket):
                with contextlib.suppress(OSError), socket.create_connection((server.host, server.port), 1):
                    return
            time.sleep(0.05)
        raise RuntimeError("mariadbd %s not ready after %ss; log:\n%s" % (server.name, timeout, _tail(server.log)))

    def _create_user(self, server):
        client = find_binary("mariadb", "mysql")
        statements = "".join(
            "CREATE USER IF NOT EXISTS '{u}'@'{h}' IDENTIFIED BY '{p}';"
            "GRANT ALL PRIVILEGES ON *.* TO '{u}'@'{h}' WITH GRANT OPTION;".format(u=server.user, h=host, p=self.password)
            for host in ("127.0.0.1", "localhost", "%"))
        # The SQL (with the password) goes through stdin, never argv.
        result = subprocess.run([client, "--no-defaults", "--socket=" + server.socket, "--user=root"],
                                input=statements + "FLUSH PRIVILEGES;", capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError("creating user on %s failed: %s" % (server.name, result.stderr))


def stop_server(server, timeout=30):
    """Stop one server by its PID: SIGTERM, wait, then SIGKILL."""
    stop_servers([server], timeout)


def stop_servers(servers, timeout=30):
    """Stop servers by their PIDs, all at once: SIGTERM to each, wait for all, then SIGKILL what still runs."""
    running = []
    for server in servers:
        if server.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGTERM)
            running.append(server)
        else:
            _reap(server)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        for server in running:
            _reap(server)
        running = [server for server in running if server.is_running()]
        if running:
            time.sleep(0.05)
    for server in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
        if server.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=10)


def start_server_again(server):
    """Restart a stopped server on the same datadir and port (for outage tests)."""
    _spawn(server)
    ServerSet._wait_ready(server)


def _spawn(server):
    server.process = subprocess.Popen(server.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    server.pid = server.process.pid


def _server_argv(server, buffer_pool):
    root = os.path.dirname(server.datadir)
    return [
        find_binary("mariadbd", "mysqld"), "--no-defaults",
        "--datadir=" + server.datadir, "--socket=" + server.socket, "--port=%d" % server.port,
        "--bind-address=127.0.0.1", "--pid-file=" + os.path.join(root, "mysqld.pid"), "--tmpdir=" + _tmpdir(root),
        "--log-error=" + server.log, "--user=" + _run_user(),
        "--innodb-buffer-pool-size=" + buffer_pool, "--innodb-log-file-size=256M",
        "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin", "--max-allowed-packet=1G",
        "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
        "--skip-name-resolve", "--max-connections=500",
    ]


def _tmpdir(root):
    """A temp dir of the server's own: servers started at once must not share /tmp's #sql files."""
    path = os.path.join(root, "tmp")
    os.makedirs(path, exist_ok=True)
    return path


def _reap(server):
    if server.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=0)


def _run_user():
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _tail(path, lines=30):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv=None):
    """Start servers, print their settings as JSON, stay up until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["source", "target", "migration"])
    args = parser.parse_args(argv)
    servers = ServerSet(args.names)
    with servers:
        print(json.dumps({n: s.describe() for n, s in servers.servers.items()}, indent=2), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
