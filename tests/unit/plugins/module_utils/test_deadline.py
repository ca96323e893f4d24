"""Deadline: the one time limit of a call, what fires it, and what it raises (no database needed)."""

import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, Database
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import GRACE, Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError


@pytest.mark.parametrize("seconds", [-1, "10", True, None])
def test_a_time_limit_is_a_number_of_seconds(seconds):
    with pytest.raises(ConfigError, match="number of seconds"):
        Deadline(seconds)


def test_no_limit_never_expires_and_bounds_no_statement():
    deadline = Deadline(0)
    with deadline.armed():
        time.sleep(0.05)
    assert (deadline.remaining(), deadline.expired(), deadline.statement_timeout()) == (None, False, None)


def test_a_statement_may_wait_the_remaining_time_plus_the_grace():
    deadline = Deadline(30)
    assert 30 + GRACE - 1 < deadline.statement_timeout() <= 30 + GRACE


def test_the_limit_interrupts_a_wait_in_the_main_thread_with_the_calls_error():
    deadline = Deadline(0.3, error=lambda table=None: MigrationError("too slow", reason="timeout", table=table))
    started = time.monotonic()
    with pytest.raises(MigrationError, match="too slow"):
        with deadline.armed():
            time.sleep(10)
    assert time.monotonic() - started < 5 and deadline.expired()


def test_an_interrupt_from_another_thread_ends_the_call_with_its_error():
    deadline = Deadline(0)
    stop = MigrationError("the playbook is gone", reason="interrupted")
    threading.Timer(0.2, deadline.interrupt, args=(stop,)).start()
    with pytest.raises(MigrationError) as raised:
        with deadline.armed():
            time.sleep(10)
    assert raised.value is stop and deadline.failure() is stop


def test_a_watched_process_that_ends_interrupts_the_call():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    deadline = Deadline(0)
    with pytest.raises(MigrationError, match=r"\(pid %d\) that started this call ended" % child.pid):
        with deadline.armed(), deadline.stop_when_gone(child.pid, what="the test's child"):
            time.sleep(10)
    child.wait()


def test_a_watched_process_that_lives_on_changes_nothing():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = Deadline(0)
        with deadline.armed(), deadline.stop_when_gone(child.pid):
            time.sleep(0.2)
        assert not deadline.expired()
    finally:
        child.kill()
        child.wait()


def test_outside_the_main_thread_the_deadline_fires_without_raising():
    deadline = Deadline(0.2)
    seen = {}

    def wait():
        with deadline.armed():
            time.sleep(0.6)
            seen["expired"] = deadline.expired()

    worker = threading.Thread(target=wait)
    worker.start()
    worker.join()
    assert seen == {"expired": True}


def test_a_server_that_did_not_answer_takes_the_blame():
    deadline = Deadline(0.1)
    target = Database(role="target", env="uat", host="192.0.2.1", port=3306, database="wp_uat")
    migration = Database(role="migration", host="192.0.2.2", port=3306, database="wp_migration")
    deadline._fired.set()  # as after firing, once the helper thread has probed the servers
    deadline._stopped.set()
    deadline._unreachable = {migration: MigrationError("the migration database did not answer",
                                                       reason="server_not_answering", database=migration),
                             target: MigrationError("the target database of uat did not answer",
                                                    reason="server_not_answering", database=target)}
    blamed = deadline.blame(MigrationError("site 4 did not finish within 15 s", site_id=4, phase="copy",
                                           reason="timeout"))
    assert (blamed.failure_class, blamed.reason, blamed.database, blamed.site_id, blamed.phase) == (
        "systemic", "server_not_answering", target, 4, "copy")
    assert blamed.message == "site 4 did not finish within 15 s: the target database of uat did not answer"
    assert Deadline(5).blame(blamed) is blamed
