# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which process a run is, and whether a process recorded earlier is still alive.

A run is its ``ansible-playbook`` process: modules and action plugins live for one task, so whatever
must outlive a task (a run lock, the holder of a migration's state, a watchdog's parent) names the
playbook process, found with ``find_playbook_pid()``.

An *identity* is the mapping ``process_identity(pid)`` returns::

    {"pid": 48121, "host": "ctl01", "start_time": 81234567, "boot_id": "c31a…", "pid_namespace": "pid:[4026531836]"}

``start_time`` (clock ticks since boot, from ``/proc/<pid>/stat``) tells a reused pid from the
original, ``boot_id`` a process from before a reboot, ``pid_namespace`` a process in another
container that happens to share the host name.  ``identity_is_alive(identity)`` judges one:
``ALIVE``, ``DEAD``, or ``UNKNOWN`` when nothing on this machine can see it (another host, another
pid namespace, no pid recorded).  Everything here reads ``/proc`` (Linux).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import signal
import socket
import time

ALIVE = "alive"
DEAD = "dead"
UNKNOWN = "unknown"

# Process names whose lifetime is the playbook run; a run is the outermost of them.
ANSIBLE_CLI_NAMES = ("ansible-playbook", "ansible", "ansible-console")

ProcessStat = collections.namedtuple("ProcessStat", "state parent_pid start_time")


def process_stat(pid):
    """The ``ProcessStat`` (state letter, parent pid, start time in clock ticks since boot) of ``pid``, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its last ')' are fixed.
    fields = raw[raw.rindex(")") + 2:].split()
    return ProcessStat(fields[0], int(fields[1]), int(fields[19]))


def started_at(pid):
    """When process ``pid`` started, as a ``time.time()`` value (None when there is no such process)."""
    stat = process_stat(pid)
    if stat is None:
        return None
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - stat.start_time / os.sysconf("SC_CLK_TCK"))


def process_argv(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def pid_namespace():
    """The name of this process's pid namespace (``pid:[4026531836]``): pids are comparable only inside one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def is_ansible_cli(argv):
    return any(os.path.basename(arg) in ANSIBLE_CLI_NAMES for arg in argv[:2])


def find_playbook_pid(start_pid=None):
    """The pid of the ansible-playbook (or ansible) process this code runs under, or None.

    Its forked workers carry the same command line, hence the outermost of the consecutive ansible
    processes above ``start_pid`` (default: this process).
    """
    pid = start_pid or os.getpid()
    found = None
    while pid > 1:
        if is_ansible_cli(process_argv(pid)):
            found = pid
        elif found is not None:
            break
        stat = process_stat(pid)
        if stat is None:
            break
        pid = stat.parent_pid
    return found


def process_identity(pid):
    """The identity of ``pid`` (see the module docstring); ``pid`` None gives an identity nobody can judge."""
    stat = process_stat(pid) if pid else None
    return {"pid": pid, "host": socket.gethostname(), "start_time": stat.start_time if stat else None,
            "boot_id": boot_id(), "pid_namespace": pid_namespace()}


def same_process(first, second):
    """Whether two identities name one process (same pid, host, start time, boot and pid namespace)."""
    keys = ("pid", "host", "start_time", "boot_id", "pid_namespace")
    return first.get("pid") is not None and all(first.get(key) == second.get(key) for key in keys)


def identity_is_alive(identity):
    """``ALIVE``, ``DEAD`` (gone, a zombie, its pid reused, or the machine rebooted since) or ``UNKNOWN``."""
    pid = identity.get("pid") if isinstance(identity, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 1 or identity.get("host") != socket.gethostname():
        return UNKNOWN
    recorded_namespace = identity.get("pid_namespace")
    if recorded_namespace and recorded_namespace != pid_namespace():
        return UNKNOWN
    recorded_boot = identity.get("boot_id")
    current_boot = boot_id()
    if recorded_boot and current_boot and recorded_boot != current_boot:
        return DEAD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return DEAD
    except PermissionError:
        pass  # it exists, owned by another user
    stat = process_stat(pid)
    if stat is None:
        return ALIVE  # it exists, but /proc hides it (hidepid): nothing says it is not the same process
    if stat.state in ("Z", "X"):
        return DEAD
    if identity.get("start_time") is not None and stat.start_time != identity["start_time"]:
        return DEAD
    return ALIVE


_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Run in a child process before exec (``preexec_fn``): the kernel kills it when the module process dies.

    Without this a module killed by a task timeout or the out-of-memory killer would leave its children (the
    MariaDB clients, rsync) running, still writing while the role's rescue cleans up after them.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
