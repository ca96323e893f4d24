"""processes: the playbook process above a module, and whether a recorded process is still alive.

Real processes only: a sleeping child stands for another run, a killed one for a dead run.
"""

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from state_helpers import COLLECTIONS

from ansible_collections.wfu.multisite.plugins.module_utils import processes
from ansible_collections.wfu.multisite.plugins.module_utils.processes import (
    ALIVE, DEAD, UNKNOWN, find_playbook_pid, identity_is_alive, process_identity, process_stat, same_process)


def test_identity_of_a_live_process(sleeper):
    identity = process_identity(sleeper.pid)
    assert identity["pid"] == sleeper.pid and identity["host"] == socket.gethostname()
    assert identity["start_time"] == process_stat(sleeper.pid).start_time
    assert identity["boot_id"] and identity["pid_namespace"].startswith("pid:[")
    assert identity_is_alive(identity) == ALIVE
    assert identity_is_alive(process_identity(os.getpid())) == ALIVE
    assert same_process(identity, process_identity(sleeper.pid))
    assert not same_process(identity, process_identity(os.getpid()))


def test_a_killed_process_is_dead_even_before_it_is_reaped():
    proc = subprocess.Popen(["sleep", "60"])
    identity = process_identity(proc.pid)
    proc.kill()
    while process_stat(proc.pid).state != "Z":
        time.sleep(0.01)
    assert identity_is_alive(identity) == DEAD  # a zombie
    proc.wait()
    assert identity_is_alive(identity) == DEAD  # gone


@pytest.mark.parametrize("change, expected", [
    ({"start_time": -1}, DEAD),                       # the pid now belongs to another process
    ({"boot_id": "another-boot"}, DEAD),              # recorded before a reboot
    ({"host": "elsewhere.example.edu"}, UNKNOWN),     # another host: nothing here can see it
    ({"pid_namespace": "pid:[1]"}, UNKNOWN),          # another container with the same host name
    ({"pid": None}, UNKNOWN),                         # no ansible-playbook was found to record
    ({"pid": True}, UNKNOWN),
    ({"start_time": None}, ALIVE),                    # less recorded: the pid alone decides
])
def test_liveness_of_a_recorded_identity(sleeper, change, expected):
    identity = dict(process_identity(sleeper.pid), **change)
    if change.get("start_time") == -1:
        identity["start_time"] = process_stat(sleeper.pid).start_time - 1
    assert identity_is_alive(identity) == expected


def test_not_an_identity_is_unknown():
    assert identity_is_alive({}) == UNKNOWN
    assert identity_is_alive("pid 12") == UNKNOWN
    assert not same_process({}, {})


MODULE_LIKE = ("import sys; sys.path.insert(0, %r); "
               "from ansible_collections.wfu.multisite.plugins.module_utils.processes import find_playbook_pid; "
               "print(find_playbook_pid())" % COLLECTIONS)

FAKE_PLAYBOOK = textwrap.dedent("""
    import os, subprocess, sys
    # A forked worker keeps its parent's command line, as ansible-playbook's workers do; the "module"
    # below it runs under a shell, as modules do.
    child = os.fork()
    if child == 0:
        python = os.path.realpath(sys.executable)
        out = subprocess.run(["/bin/sh", "-c", '"$0" -c "$1"; true', python, sys.argv[1]],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip(), flush=True)
        os._exit(0)
    os.waitpid(child, 0)
""")


def test_the_run_is_the_outermost_ansible_playbook_process(tmp_path):
    script = tmp_path / "fake_playbook.py"
    script.write_text(FAKE_PLAYBOOK, encoding="utf-8")
    fake = tmp_path / "ansible-playbook"
    fake.symlink_to(sys.executable)
    proc = subprocess.Popen([str(fake), str(script), MODULE_LIKE], stdout=subprocess.PIPE, text=True)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0
    assert int(output.strip()) == proc.pid
    assert find_playbook_pid() is None  # pytest itself runs under no ansible process


def test_ansible_cli_names():
    assert processes.is_ansible_cli(["/usr/bin/python3", "/venv/bin/ansible-playbook", "site.yml"])
    assert processes.is_ansible_cli(["ansible-playbook"])
    assert not processes.is_ansible_cli(["/usr/bin/python3", "-m", "pytest", "ansible-playbook"])
