"""Run locks (issue 8, items 6, 7, 8 and 11): a lock names its holder; without force it is taken over or removed
only when its holder is this run or provably gone; force overrides any lock and says what it overrode.

Real processes stand for the other runs: a sleeping child is a live run, a killed one a dead run.
"""

import os
import socket
import subprocess
import time

import pytest
from state_helpers import new_migration, read, snapshot, write_lock

from ansible_collections.wfu.multisite.plugins.module_utils.processes import process_identity, process_stat
from ansible_collections.wfu.multisite.plugins.module_utils.state_store import StateError, StateStore

MIGRATION = "dev-to-uat-2026-11-24T02-52-55"


def test_a_lock_names_its_holder(tmp_path, clock):
    store = StateStore(str(tmp_path), holder_pid=os.getpid(), clock=clock, awx_job_id="77", awx_workflow_job_id="70")
    taken = store.locks.lock("uat", migration_id=MIGRATION)
    assert taken["changed"] is True and taken["lock_name"] == "uat"
    assert taken["lock_file"] == os.path.join(str(tmp_path), "locks", "uat.lock")
    expected = dict(process_identity(os.getpid()), awx_job_id="77", awx_workflow_job_id="70", migration_id=MIGRATION,
                    target_env="uat", started="2026-11-24T02:52:55.000Z")
    assert taken["lock"] == expected and read(taken["lock_file"]) == expected
    again = store.locks.lock("uat")
    assert again["already_held"] is True and again["changed"] is False and "liveness" not in again["lock"]


def test_a_live_holder_is_refused_with_its_name(tmp_path, sleeper):
    other = StateStore(str(tmp_path), holder_pid=sleeper.pid)
    other.locks.lock("uat", migration_id=MIGRATION)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    lock_file = read(other.locks.path("uat"))
    for attempt in (lambda: mine.locks.lock("uat"), lambda: mine.locks.unlock("uat"),
                    lambda: mine.locks.unlock("uat", migration_id=MIGRATION)):
        with pytest.raises(StateError) as caught:
            attempt()
        message = str(caught.value)
        assert "held by migration %s (pid %d on host %s, since " % (MIGRATION, sleeper.pid, socket.gethostname()) in message
        assert "which is still running" in message and "Nothing was changed" in message
        assert "migration_cleanup -e force_unlock=uat -e force=true" in message
        assert caught.value.details["holder"]["liveness"] == "alive"
    assert read(other.locks.path("uat")) == lock_file
    with pytest.raises(StateError, match="still running"):
        mine.create("dev", "uat")
    assert mine.locks.lock("pprd")["changed"] is True  # another target is free


def test_force_takes_over_a_live_holder_and_says_so(tmp_path, sleeper):
    StateStore(str(tmp_path), holder_pid=sleeper.pid).locks.lock("uat", migration_id=MIGRATION)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    taken = mine.locks.lock("uat", force=True)
    assert taken["forced"] is True and taken["stale_lock_taken_over"] is True
    assert taken["previous_holder"]["pid"] == sleeper.pid and taken["previous_holder"]["liveness"] == "alive"
    assert mine.warnings == ["Took over lock 'uat' of migration %s (pid %d on host %s, since %s UTC), whose run is "
                             "still running. If it still runs, it now runs beside this one."
                             % (MIGRATION, sleeper.pid, socket.gethostname(),
                                taken["previous_holder"]["started"][:19].replace("T", " "))]
    assert read(mine.locks.path("uat"))["pid"] == os.getpid()


def test_force_unlock_removes_a_live_holder_and_says_so(tmp_path, sleeper):
    StateStore(str(tmp_path), holder_pid=sleeper.pid).locks.lock("uat", migration_id=MIGRATION)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    released = mine.locks.unlock("uat", force=True)
    assert released["released"] is True and released["forced"] is True
    assert released["previous_holder"]["pid"] == sleeper.pid and released["previous_holder"]["liveness"] == "alive"
    assert mine.warnings[0].startswith("Removed lock 'uat' of migration %s (pid %d" % (MIGRATION, sleeper.pid))
    assert "still running" in mine.warnings[0]
    assert not os.path.exists(mine.locks.path("uat"))


def test_a_dead_holder_is_taken_over_without_force(tmp_path):
    dead = subprocess.Popen(["sleep", "60"])
    StateStore(str(tmp_path), holder_pid=dead.pid).locks.lock("uat", migration_id=MIGRATION)
    dead.kill()
    while process_stat(dead.pid).state != "Z":
        time.sleep(0.01)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    taken = mine.locks.lock("uat")  # killed, not yet reaped: a zombie is as dead as a gone process
    dead.wait()
    assert taken["stale_lock_taken_over"] is True and taken["forced"] is False
    assert taken["previous_holder"]["pid"] == dead.pid and taken["previous_holder"]["migration_id"] == MIGRATION
    assert taken["previous_holder"]["liveness"] == "dead"
    assert "whose run is gone." in mine.warnings[0]
    assert read(mine.locks.path("uat"))["pid"] == os.getpid()


def test_a_dead_holders_lock_is_removed_without_force(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    write_lock(mine, "uat", pid=dead.pid, host=socket.gethostname(), start_time=1, boot_id=None, migration_id=MIGRATION)
    released = mine.locks.unlock("uat", migration_id="dev-to-uat-other")
    assert released["released"] is True and released["forced"] is False
    assert released["previous_holder"]["liveness"] == "dead" and mine.warnings == []


def test_reused_pid_or_reboot_makes_a_lock_stale(tmp_path, sleeper):
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    real = process_identity(sleeper.pid)
    for stale in ({"start_time": real["start_time"] - 1}, {"boot_id": "another-boot"}):
        write_lock(mine, "uat", **dict(real, migration_id="old", started="2026-01-01T00:00:00.000Z", **stale))
        assert mine.locks.lock("uat")["stale_lock_taken_over"] is True
        mine.locks.unlock("uat")
    write_lock(mine, "uat", **dict(real, migration_id="old", started="2026-01-01T00:00:00.000Z"))
    with pytest.raises(StateError, match="still running"):
        mine.locks.lock("uat")


@pytest.mark.parametrize("holder", [
    {"pid": 4242, "host": "awx-job-77-xkq2p", "start_time": 1, "boot_id": "b", "awx_job_id": "77"},
    {"pid": None, "host": socket.gethostname()},  # taken where no ansible-playbook process could be found
])
def test_a_holder_nothing_here_can_check_is_refused_unless_forced(tmp_path, holder):
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    write_lock(mine, "uat", migration_id=MIGRATION, target_env="uat", started="2026-01-01T00:00:00.000Z", **holder)
    before = read(mine.locks.path("uat"))
    for attempt in (lambda: mine.locks.lock("uat"), lambda: mine.locks.unlock("uat")):
        with pytest.raises(StateError) as caught:
            attempt()
        message = str(caught.value)
        assert "held by migration %s (pid %s on host %s, since 2026-01-01 00:00:00 UTC" % (
            MIGRATION, holder["pid"], holder["host"]) in message
        assert "cannot tell whether that run is still going" in message and "force_unlock=uat -e force=true" in message
        if holder.get("awx_job_id"):
            assert "AWX job 77" in message
    assert read(mine.locks.path("uat")) == before
    taken = mine.locks.lock("uat", force=True)
    assert taken["forced"] is True and taken["previous_holder"]["host"] == holder["host"]
    assert taken["previous_holder"]["liveness"] == "unknown"
    assert "cannot be checked from here" in mine.warnings[0]


def test_a_damaged_lock_needs_force(tmp_path):
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    os.makedirs(os.path.dirname(mine.locks.path("uat")))
    with open(mine.locks.path("uat"), "w", encoding="utf-8") as handle:
        handle.write("{")
    for attempt in (lambda: mine.locks.lock("uat"), lambda: mine.locks.unlock("uat")):
        with pytest.raises(StateError, match="lock 'uat' cannot be read .*not valid JSON.*force: true"):
            attempt()
    assert mine.locks.lock("uat", force=True)["previous_holder"]["liveness"] == "damaged"
    assert "the lock file cannot be read" in mine.warnings[0]


def test_create_names_the_migration_in_this_runs_lock_and_finish_releases_it(store):
    taken = store.locks.lock("uat")
    assert taken["lock"]["migration_id"] is None
    migration_id = new_migration(store)
    assert store.locks.read("uat")["migration_id"] == migration_id
    with pytest.raises(StateError, match="belongs to migration %s of this run, not to dev-to-uat-else; it was left "
                                         "in place" % migration_id):
        store.locks.unlock("uat", migration_id="dev-to-uat-else")
    finished = store.finish(migration_id, "completed")
    assert finished["lock_released"] is True and store.locks.read("uat") is None
    assert store.locks.unlock("uat") == {"changed": False, "released": False, "forced": False, "lock_name": "uat",
                                         "lock_file": store.locks.path("uat"), "previous_holder": None}


def test_finish_leaves_another_runs_lock(tmp_path, sleeper):
    StateStore(str(tmp_path), holder_pid=sleeper.pid).locks.lock("uat", migration_id=MIGRATION)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    migration_id = mine.create("dev", "pprd")["migration"]["id"]
    assert mine.finish(migration_id, "aborted")["lock_released"] is False
    assert os.path.exists(mine.locks.path("uat"))


def test_status_shows_the_lock_and_its_holder(store, make_store, sleeper):
    migration_id = new_migration(store)
    assert store.status(migration_id)["lock"] is None
    make_store(holder_pid=sleeper.pid).locks.lock("uat", migration_id=migration_id)
    lock = store.status(migration_id)["lock"]
    assert lock["pid"] == sleeper.pid and lock["liveness"] == "alive"


def test_check_mode_locks_write_nothing(tmp_path, sleeper):
    state_dir = str(tmp_path / "migrations")
    mine = StateStore(state_dir, holder_pid=os.getpid())
    assert mine.locks.lock("uat", check_mode=True)["changed"] is True
    assert not os.path.exists(state_dir)  # not even the locks directory
    StateStore(state_dir, holder_pid=sleeper.pid).locks.lock("uat", migration_id=MIGRATION)
    before = snapshot(state_dir)
    assert mine.locks.lock("uat", force=True, check_mode=True)["forced"] is True
    assert mine.locks.unlock("uat", force=True, check_mode=True)["released"] is True
    assert snapshot(state_dir) == before


# --- site claims, on both backends ---------------------------------------------------------------------------------

def wait_until(condition, what, timeout=30):
    """Poll until ``condition()`` holds (a bound against a hang, not a measured time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting for %s" % what
        time.sleep(0.1)


def test_a_claim_names_its_holder_and_dies_with_it(store, make_store, backend):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        migration_id = new_migration(store)
        other = make_store(holder_pid=proc.pid)
        won = other.claim(migration_id, 3)
        assert (won["claimed"], won["changed"], won["already_held"]) == (True, True, False)
        assert won["holder"]["pid"] == proc.pid
        again = other.claim(migration_id, 3)
        assert again["claimed"] is True and again["already_held"] is True and again["changed"] is False
        refused = store.claim(migration_id, 3)
        assert refused["claimed"] is False and refused["changed"] is False
        assert "site 3 of migration %s is claimed by pid %d on host" % (migration_id, proc.pid) in \
            refused["claim_refused"]
        assert store.claims_view(migration_id)["3"]["liveness"] == "alive"
        with pytest.raises(StateError, match="claimed by pid %d" % proc.pid if backend == "database" else "held by"):
            store.release(migration_id, 3)
        assert store.claim(migration_id, 4)["claimed"] is True  # another site is free
    finally:
        proc.kill()
        proc.wait()
    # Its holder is gone (on the database its keeper notices and ends): taken over, to be cleaned and redone.
    wait_until(lambda: store.claims_view(migration_id)["3"]["liveness"] == "dead", "the claim's holder to be gone")
    taken = store.claim(migration_id, 3)
    assert taken["claimed"] is True and taken["dead_holder"] is True and taken["previous_holder"]["pid"] == proc.pid
    assert "clean the site's leftovers and redo it" in taken["claim_note"]
    assert store.release(migration_id, 3)["released"] is True
    assert "3" not in store.claims_view(migration_id)
    with pytest.raises(StateError, match="site 99 is not part of migration"):
        store.claim(migration_id, 99)


def test_slices_of_one_workflow_share_the_run_lock_not_the_claims(make_store, backend):
    if backend != "database":
        pytest.skip("on files a slice in another process is told apart by its pid only")
    proc = subprocess.Popen(["sleep", "60"])
    try:
        first = make_store(holder_pid=proc.pid, awx_job_id="201", awx_workflow_job_id="200")
        second = make_store(awx_job_id="202", awx_workflow_job_id="200")
        stranger = make_store(awx_job_id="301", awx_workflow_job_id="300")
        migration_id = new_migration(first)
        assert first.locks.lock("uat", migration_id=migration_id)["changed"] is True
        shared = second.locks.lock("uat", migration_id=migration_id)
        assert shared["already_held"] is True and shared["changed"] is False
        with pytest.raises(StateError, match="AWX workflow job 200"):
            stranger.locks.lock("uat")
        assert first.claim(migration_id, 2)["claimed"] is True
        refused = second.claim(migration_id, 2)
        assert refused["claimed"] is False and "AWX job 201" in refused["claim_refused"]
    finally:
        proc.kill()
        proc.wait()
