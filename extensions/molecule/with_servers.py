"""Run a command (the molecule scenarios) against three throwaway MariaDB servers.

    python extensions/molecule/with_servers.py molecule test --all

Starts the source, target and migration servers (tools/mariadb_servers.py), writes one 0600
``[client]`` option file per server into a private directory, runs the command with that directory in
``WFU_MOLECULE_DIR`` (the scenarios' inventory reads it), and stops the servers when the command ends.
The scenarios create and drop their own databases on these servers.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tools.mariadb_servers import ServerSet  # noqa: E402


def write_option_file(path, server):
    """A [client] file with the server's connection; the scenarios never see the password otherwise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("[client]\nhost=%s\nport=%d\nuser=%s\npassword=%s\n"
                     % (server.host, server.port, server.user, server.password))


def main(argv):
    if not argv:
        sys.stderr.write("usage: with_servers.py COMMAND [ARGS...]\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="wfu-molecule-") as workdir:
        servers = ServerSet(("source", "target", "migration"), base_dir=os.path.join(workdir, "servers"))
        with servers:
            for name, server in servers.servers.items():
                write_option_file(os.path.join(workdir, "%s.cnf" % name), server)
            return subprocess.call(argv, cwd=ROOT, env=dict(os.environ, WFU_MOLECULE_DIR=workdir))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
