"""The child process wfu_site_migrate's action plugin runs the pipeline in: what its parent reports, and when it
kills it.  Real forks; the work in the child is a small function instead of the pipeline (the pipeline itself runs
in the child in tests/integration/test_site_migrate_action.py and test_incident.py)."""

import os
import signal
import time
from types import SimpleNamespace

import pytest

from ansible_collections.wfu.multisite.plugins.action.wfu_site_migrate import CHILD_NAME, ActionModule, run_in_child


def test_the_childs_result_comes_back_as_it_returned_it():
    def work():
        return False, {"changed": True, "site_id": 4, "pid": os.getpid(), "ppid": os.getppid(),
                       "name": open("/proc/self/comm", "rb").read().strip().decode()}

    failed, result = run_in_child(work, 4)
    assert failed is False
    assert result["changed"] is True and result["site_id"] == 4
    assert result["ppid"] == os.getpid() != result["pid"]
    assert result["name"] == CHILD_NAME.decode()


def test_a_child_killed_by_a_signal_is_reported_as_a_killed_module():
    def work():
        os.kill(os.getpid(), signal.SIGKILL)

    failed, result = run_in_child(work, 7)
    assert failed is True
    # What the role's rescue reads: rc < 0 is the signal; nothing was cleaned by the child itself.
    assert result["rc"] == -9 and result["site_id"] == 7
    assert "killed by signal 9" in result["msg"]
    assert result["timed_out"] is False and result["cleanup"] == [] and result["durations"] == {}


def test_a_child_that_raises_fails_with_the_error():
    def work():
        raise RuntimeError("the work broke")

    failed, result = run_in_child(work, 3)
    assert failed is True and result["site_id"] == 3
    assert "the work broke" in result["msg"] and "RuntimeError" in result["exception"]


class Interrupted(BaseException):
    """What Ansible's task timeout raises in the worker (TaskTimeoutError is a BaseException too)."""


def test_an_interrupted_wait_kills_the_child_before_it_goes_on(tmp_path):
    pid_file = tmp_path / "child.pid"

    def work():
        pid_file.write_text(str(os.getpid()))
        time.sleep(120)
        return False, {}

    def interrupt(_signum, _frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(Interrupted):
            run_in_child(work, 5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    child = int(pid_file.read_text())
    # Killed and reaped before the exception went on: no such process any more, not even a zombie.
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.parametrize("transport, become, expected", [
    ("local", False, True), ("local", True, False), ("ssh", False, False), ("ssh", True, False)])
def test_only_a_local_connection_without_become_runs_on_the_controller(transport, become, expected):
    action = ActionModule.__new__(ActionModule)
    action._connection = SimpleNamespace(transport=transport)
    action._play_context = SimpleNamespace(become=become)
    assert action._runs_on_controller() is expected
