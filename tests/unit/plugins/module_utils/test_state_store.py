"""The migration state store: layout, atomic writes, damaged and foreign files, resume, counters, logs, holders.

Everything runs against real files in a temporary directory and real processes (for the holders and
the kill -9 test); nothing is mocked.  Locks are in test_state_locks.py, the shape of records in
test_state_records.py, the module's actions in test_state_actions.py.
"""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from state_helpers import (
    COLLECTIONS, edit_state, log_text, new_migration, read, snapshot, snapshot_of, stored_options, stored_outcomes,
    stored_state)

from ansible_collections.wfu.multisite.plugins.module_utils.errors import redact
from ansible_collections.wfu.multisite.plugins.module_utils.processes import process_identity
from ansible_collections.wfu.multisite.plugins.module_utils.state_records import SCHEMA_VERSION
from ansible_collections.wfu.multisite.plugins.module_utils.state_store import StateError, StateStore


# --- create and the layout ----------------------------------------------------------------------

@pytest.mark.files_layout
def test_create_writes_the_contract_layout_privately(store):
    result = store.create("dev", "uat", options={"site_timeout": 600, "db": {"user": "wp", "password": "hunter2"},
                                                 "vault_password": "x"},
                          sites=[1, 5, 3], network_tables="only")
    migration = result["migration"]
    assert result["changed"] is True
    assert migration["id"] == "dev-to-uat-2026-11-24T02-52-55"
    assert migration["status"] == "running"
    assert migration["site_order"] == [1, 5, 3]
    assert migration["sites_by_status"]["pending"] == [1, 5, 3]
    assert migration["counters"] == {"pending": 3, "in_progress": 0, "completed": 0, "failed": 0, "timeout": 0,
                                     "skipped": 0, "total": 3}
    paths = migration["paths"]
    state = read(paths["state"])
    assert state["schema_version"] == SCHEMA_VERSION
    assert state["id"] == migration["id"]
    assert state["sites"]["5"] == {"status": "pending", "attempts": 0, "started": None, "finished": None,
                                   "duration": None, "error": None, "phase": None}
    assert state["network_tables"]["status"] == "pending"
    assert state["options"] == {"site_timeout": 600, "db": {"user": "wp"}, "network_tables": "only"}
    assert read(paths["options"]) == state["options"]
    assert read(paths["completed"]) == [] and read(paths["failed"]) == []
    assert read(paths["index"])["migrations"] == [
        {"id": migration["id"], "source_env": "dev", "target_env": "uat", "status": "running",
         "started": state["started"], "updated": state["updated"]}]
    for base, dirs, files in os.walk(store.state_dir):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(base, name)).st_mode) == 0o700
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(base, name)).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(store.state_dir).st_mode) == 0o700
    assert state["holder"] == dict(process_identity(os.getpid()), since=state["started"])
    for base, _dirs, files in os.walk(store.state_dir):
        for name in files:
            with open(os.path.join(base, name), encoding="utf-8") as handle:
                assert "hunter2" not in handle.read()


def test_create_without_network_tables_marks_them_skipped(store):
    migration = store.create("dev", "uat", options={"network_tables": False})["migration"]
    assert migration["network_tables"]["status"] == "skipped"
    assert migration["options"]["network_tables"] is False


def test_same_second_gets_a_suffix_and_check_mode_writes_nothing(store):
    first = new_migration(store)
    before = snapshot_of(store)
    would_be = store.create("dev", "uat", check_mode=True)
    assert would_be["changed"] is True
    assert would_be["migration"]["id"] == first + "-2"
    assert snapshot_of(store) == before
    assert new_migration(store) == first + "-2"
    assert new_migration(store) == first + "-3"


def test_create_rejects_bad_names(store):
    with pytest.raises(StateError, match="invalid source_env"):
        store.create("../etc", "uat")
    with pytest.raises(StateError, match="two environments"):
        store.create("uat", "uat")
    with pytest.raises(StateError, match="twice"):
        store.create("dev", "uat", sites=[1, 2, 1])


# --- atomicity ----------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import itertools, os, sys
    sys.path.insert(0, %(collections)r)
    from ansible_collections.wfu.multisite.plugins.module_utils.state_store import StateStore
    store = StateStore(%(state_dir)r, holder_pid=os.getpid())
    print("ready", flush=True)
    for n in itertools.count():
        site = n %% 2000 + 1
        store.mark_site(%(migration_id)r, site, "in_progress", phase="copy")
        store.mark_site(%(migration_id)r, site, "completed" if n %% 3 else "failed", error="x" * 200,
                        details={"rows": n, "tables": 12})
""")


@pytest.mark.files_layout
def test_kill_minus_nine_mid_write_always_leaves_valid_state(store):
    migration_id = new_migration(store, sites=range(1, 2001))
    paths = store.paths(migration_id)
    script = WRITER % {"collections": COLLECTIONS, "state_dir": store.state_dir, "migration_id": migration_id}
    rng = random.Random(20261124)
    killed_with_temp_files = 0
    for _round in range(12):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if any(name.endswith(".tmp") for name in os.listdir(paths["dir"])):
            killed_with_temp_files += 1
        state = store.load_state(migration_id)  # raises on a torn or invalid file
        assert len(state["sites"]) == 2000
        assert read(paths["state"] + ".bak")["id"] == migration_id
        assert isinstance(read(paths["completed"]), list)
        assert isinstance(read(paths["failed"]), list)
        assert read(paths["index"])["migrations"][0]["id"] == migration_id
    print("kills that interrupted a write: %d of 12" % killed_with_temp_files)
    left_in_progress = store.load_state(migration_id)["counters"]["in_progress"]
    resumed = store.load(migration_id)
    assert not [name for name in os.listdir(paths["dir"]) if name.endswith(".tmp")]
    assert len(resumed["interrupted"]) == left_in_progress
    assert resumed["migration"]["counters"]["in_progress"] == 0


# --- damaged and foreign files -------------------------------------------------------------------

@pytest.mark.files_layout
def test_corrupt_state_is_reported_with_position_and_left_untouched(store):
    migration_id = new_migration(store)
    store.mark_site(migration_id, 1, "in_progress")
    path = store.paths(migration_id)["state"]
    with open(path, "rb") as handle:
        good = handle.read()
    position = good.index(b'"target_env"')
    with open(path, "wb") as handle:
        handle.write(good[:position] + b"#" + good[position + 1:])
    before = snapshot_of(store)
    for attempt in (lambda: store.load(migration_id), lambda: store.mark_site(migration_id, 2, "in_progress"),
                    lambda: store.status(migration_id), lambda: store.finish(migration_id, "failed")):
        with pytest.raises(StateError) as caught:
            attempt()
        message = str(caught.value)
        assert path in message
        assert "at byte %d" % position in message
        assert "Nothing was changed" in message
        assert "state.json.bak" in message and "cp -p" in message
        assert caught.value.details["position"] == position
    assert snapshot_of(store) == before
    listed = store.list_migrations()["migrations"]
    assert listed[0]["id"] == migration_id and listed[0]["resumable"] is False and "byte %d" % position in listed[0]["error"]
    # The .bak really is the version to restore.
    assert read(path + ".bak")["id"] == migration_id


@pytest.mark.files_layout
@pytest.mark.parametrize("content, expected", [
    ({"id": "x"}, "no schema_version"),
    ({"schema_version": 99}, "newer wfu.multisite"),
    ({"schema_version": "1"}, "invalid schema_version"),
    ([1, 2, 3], "no schema_version"),
])
def test_foreign_state_is_refused_never_reset(store, content, expected):
    migration_id = new_migration(store)
    path = store.paths(migration_id)["state"]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle)
    before = snapshot_of(store)
    with pytest.raises(StateError, match=expected):
        store.load(migration_id)
    assert snapshot_of(store) == before


def test_a_malformed_row_is_named_and_left_as_it_is(make_store, backend):
    if backend != "database":
        pytest.skip("the files backend's version is test_state_records.test_a_malformed_record_is_named_...")
    store = make_store()
    migration_id = new_migration(store)
    edit_state(store, migration_id, lambda state: state["sites"]["2"].update(attempts="x"))
    before = snapshot_of(store)
    with pytest.raises(StateError) as caught:
        store.mark_site(migration_id, 2, "in_progress")
    message = str(caught.value)
    assert message.startswith("%s.wfu_state_migrations row %s (database %s on " % (
        store.db.database.database, migration_id, store.db.database.database)), message
    assert "site 2, field attempts" in message and "Nothing was changed." in message
    assert caught.value.details["site_id"] == "2" and caught.value.details["field"] == "attempts"
    assert snapshot_of(store) == before


@pytest.mark.files_layout
def test_state_copied_into_another_directory_is_refused(store):
    migration_id = new_migration(store)
    copy_id = "dev-to-uat-2026-01-01T00-00-00"
    os.mkdir(os.path.join(store.state_dir, copy_id))
    with open(store.paths(migration_id)["state"], "rb") as src, \
            open(os.path.join(store.state_dir, copy_id, "state.json"), "wb") as dst:
        dst.write(src.read())
    with pytest.raises(StateError, match="holds migration .* not 'dev-to-uat-2026-01-01T00-00-00'"):
        store.load(copy_id)


@pytest.mark.files_layout
def test_corrupt_index_is_rebuilt_from_the_states(store, clock):
    first = new_migration(store)
    clock.advance(60)
    second = store.create("dev", "pprd")["migration"]["id"]
    with open(store.index_path, "w", encoding="utf-8") as handle:
        handle.write("{nope")
    listed = store.list_migrations()
    assert [row["id"] for row in listed["migrations"]] == [first, second]
    assert "rebuilding the index" in store.warnings[0]
    store.mark_site(first, 1, "in_progress")
    assert [entry["id"] for entry in read(store.index_path)["migrations"]] == [first, second]


# --- load: latest, resume, interrupted -------------------------------------------------------------

def test_unknown_id_lists_the_nearest(store):
    migration_id = new_migration(store)
    with pytest.raises(StateError) as caught:
        store.load(migration_id[:-2] + "99")
    assert migration_id in str(caught.value)
    assert caught.value.details["candidates"] == [migration_id]


def test_latest_is_the_newest_unfinished_matching_migration(store, clock):
    oldest = new_migration(store)
    clock.advance(3600)
    to_pprd = store.create("dev", "pprd")["migration"]["id"]
    clock.advance(3600)
    newest = new_migration(store)
    store.finish(newest, "completed")
    assert store.load("latest")["migration"]["id"] == to_pprd
    assert store.load("latest", target_env="uat")["migration"]["id"] == oldest
    assert store.status()["migration"]["id"] == newest  # status: newest whatever its status
    store.finish(oldest, "completed")
    with pytest.raises(StateError, match="nothing to resume for any -> uat"):
        store.load("latest", target_env="uat")
    with pytest.raises(StateError, match="no migrations for dev -> prod"):
        store.load("latest", source_env="dev", target_env="prod")


def test_resume_uses_saved_options_with_overrides(store):
    migration_id = store.create("dev", "uat", options={"site_timeout": 600, "retry_failed": False, "backup": True},
                                sites=[1, 2])["migration"]["id"]
    store.finish(migration_id, "failed", reason="disk full")
    resumed = store.load(migration_id, options={"site_timeout": 1800, "backup": None, "root_password": "x"})
    assert resumed["changed"] is True
    assert resumed["options_overridden"] == ["site_timeout"]
    options = resumed["migration"]["options"]
    assert options == {"site_timeout": 1800, "retry_failed": False, "backup": True, "network_tables": True}
    assert stored_options(store, migration_id) == options
    assert resumed["migration"]["status"] == "running" and resumed["migration"]["reason"] is None
    again = store.load(migration_id, options={"site_timeout": 1800})
    assert again["changed"] is False


def test_in_progress_sites_come_back_as_interrupted(store):
    migration_id = new_migration(store)
    store.mark_site(migration_id, 1, "in_progress")
    store.mark_site(migration_id, 1, "completed")
    store.mark_site(migration_id, 3, "in_progress")
    store.mark_site(migration_id, 3, "failed", error="boom")
    store.mark_site(migration_id, 3, "in_progress")
    store.mark_network(migration_id, "in_progress")
    before = snapshot_of(store)
    checked = store.load(migration_id, check_mode=True)
    assert checked["interrupted"] == [3] and checked["changed"] is True
    assert snapshot_of(store) == before
    resumed = store.load(migration_id)
    assert resumed["interrupted"] == [3]
    assert resumed["network_interrupted"] is True
    record = stored_state(store, migration_id)["sites"]["3"]
    assert record["status"] == "pending" and record["attempts"] == 2 and "interrupted" in record["error"]
    assert resumed["migration"]["sites_by_status"]["pending"] == [2, 3, 4, 5]
    assert resumed["migration"]["sites_by_status"]["completed"] == [1]
    assert resumed["migration"]["network_tables"]["status"] == "pending"
    assert "interrupted" in log_text(store, migration_id, "site-3").splitlines()[-1]


def test_loading_a_completed_migration_changes_nothing(store):
    migration_id = new_migration(store, sites=[1])
    store.mark_site(migration_id, 1, "completed")
    store.finish(migration_id, "completed")
    before = snapshot_of(store)
    result = store.load(migration_id)
    assert result["changed"] is False and result["migration"]["resumable"] is False
    assert snapshot_of(store) == before


# --- site updates, counters, derived files, logs -----------------------------------------------------

def test_counters_attempts_durations_and_consecutive_failures(store, clock):
    migration_id = new_migration(store, sites=range(1, 7))
    steps = [(1, "completed", 0), (2, "failed", 1), (3, "timeout", 2), (4, "skipped", 2), (5, "failed", 3),
             (6, "completed", 0)]
    for site_id, outcome, expected in steps:
        store.mark_site(migration_id, site_id, "in_progress", phase="copy")
        clock.advance(2.5)
        result = store.mark_site(migration_id, site_id, outcome, error="E%d" % site_id, phase="swap",
                                 failure_class="site")
        assert result["consecutive_failures"] == expected
    assert result["counters"] == {"pending": 0, "in_progress": 0, "completed": 2, "failed": 2, "timeout": 1,
                                  "skipped": 1, "total": 6}
    assert result["progress"]["done"] == 6 and result["progress"]["average_site_seconds"] == 2.5
    record = result["site"]
    assert record["id"] == 6 and record["attempts"] == 1 and record["duration"] == 2.5
    assert record["error"] == "E6" and record["phase"] == "swap" and record["failure_class"] is None
    store.mark_site(migration_id, 2, "in_progress")
    retried = store.mark_site(migration_id, 2, "completed", details={"rows": 7})
    assert retried["site"]["attempts"] == 2 and retried["site"]["error"] is None
    assert retried["site"]["result"] == {"rows": 7}
    completed, failed = stored_outcomes(store, migration_id)
    assert completed == [1, 2, 6]
    assert [(entry["id"], entry["status"], entry["error"], entry["phase"], entry["failure_class"])
            for entry in failed] == [(3, "timeout", "E3", "swap", "site"), (5, "failed", "E5", "swap", "site")]


def test_unannounced_outcome_counts_an_attempt_and_skip_does_not(store):
    migration_id = new_migration(store)
    assert store.mark_site(migration_id, 1, "failed")["site"]["attempts"] == 1
    skipped = store.mark_site(migration_id, 2, "skipped", error="large site deferred")["site"]
    assert skipped["attempts"] == 0 and skipped["error"] == "large site deferred"


def test_unknown_site_and_bad_status_are_refused(store):
    migration_id = new_migration(store)
    with pytest.raises(StateError, match="site 99 is not part of migration"):
        store.mark_site(migration_id, 99, "in_progress")
    with pytest.raises(StateError, match="not 'paused'"):
        store.mark_site(migration_id, 1, "paused")


def test_site_log_lines_are_timestamped_and_redacted(store):
    migration_id = new_migration(store)
    store.mark_site(migration_id, 4, "in_progress", phase="copy")
    error = ("(1045, \"Access denied for user 'wp'@'10.0.0.5' (using password: YES)\")\n"
             "dsn mysql://wp:s3cr3t@db.example.edu/wordpress password='hunter2' PASSWORD=abc;"
             " ALTER USER wp IDENTIFIED BY 'topsecret'")
    store.mark_site(migration_id, 4, "failed", error=error, phase="copy", failure_class="systemic",
                    details={"rows": 3, "db_password": "zzz"})
    text = log_text(store, migration_id, "site-4")
    if store.__class__ is StateStore:
        assert stat.S_IMODE(os.stat(os.path.join(store.paths(migration_id)["logs"], "site-4.log")).st_mode) == 0o600
    lines = text.splitlines()
    assert lines[0].startswith("2026-11-24T02:52:55.000Z migration=%s site=4 status=in_progress attempt=1" % migration_id)
    assert "status=failed attempt=1 phase=copy class=systemic" in lines[1]
    assert '"rows": 3' in lines[1]
    stored = json.dumps([stored_state(store, migration_id), stored_outcomes(store, migration_id)])
    for secret in ("s3cr3t", "hunter2", "abc;", "topsecret", "zzz"):
        assert secret not in text
        assert secret not in stored
    assert "using password: YES" in text  # the server's wording is kept; it holds no secret


def test_redact_examples():
    assert redact("password=abc def") == "password=******** def"
    assert redact('{"db_password": "x y", "user": "u"}') == '{"db_password": ******** "user": "u"}'.replace(
        "******** ", "********, ")
    assert redact("https://u:p%40ss@host/x") == "https://u:********@host/x"
    assert redact(None) is None


def test_long_errors_keep_head_and_tail(store):
    migration_id = new_migration(store)
    error = "HEAD " + "x" * 10000 + " TAIL"
    record = store.mark_site(migration_id, 1, "failed", error=error)["site"]
    assert record["error"].startswith("HEAD ") and record["error"].endswith(" TAIL")
    assert len(record["error"]) < 4100


def test_large_details_are_kept_compactly(store):
    migration_id = new_migration(store)
    details = {"rows": 5, "tables": {"wp_5_posts_%d" % n: {"rows": n} for n in range(400)}, "note": "n" * 900}
    result = store.mark_site(migration_id, 1, "completed", details=details)["site"]["result"]
    assert result["rows"] == 5 and result["truncated"] is True and "tables" not in result
    assert len(result["note"]) < 600


def test_network_updates(store, clock):
    migration_id = new_migration(store)
    store.mark_network(migration_id, "in_progress")
    clock.advance(4)
    result = store.mark_network(migration_id, "completed", details={"tables": 4})
    record = result["network_tables"]
    assert record["status"] == "completed" and record["duration"] == 4.0 and record["attempts"] == 1
    assert store.mark_network(migration_id, "completed")["network_tables"]["attempts"] == 2
    assert len(log_text(store, migration_id, "network").splitlines()) == 3


# --- finish, list, status ----------------------------------------------------------------------------

def test_finish_list_and_status(store, clock):
    migration_id = new_migration(store, sites=range(1, 5))
    for site_id, outcome in ((1, "completed"), (2, "failed"), (3, "completed")):
        store.mark_site(migration_id, site_id, "in_progress")
        clock.advance(site_id * 10)
        store.mark_site(migration_id, site_id, outcome, error="table wp_2_posts is corrupt" if outcome == "failed"
                        else None, phase="copy", failure_class="site")
    finished = store.finish(migration_id, "failed", reason="max_fail_percentage exceeded")
    assert finished["changed"] is True and finished["migration"]["status"] == "failed"
    assert store.finish(migration_id, "failed", reason="max_fail_percentage exceeded")["changed"] is False
    row = store.list_migrations()["migrations"][0]
    assert (row["pair"], row["status"], row["progress"], row["failures"], row["resumable"]) == (
        "dev -> uat", "failed", "2/4", 1, True)
    table = store.list_migrations()["table"]
    assert table[0].split()[:4] == ["ID", "PAIR", "STATUS", "PROGRESS"]
    assert migration_id in table[1] and "2/4" in table[1] and table[1].endswith("yes")
    status = store.status(migration_id)
    assert status["changed"] is False
    assert [site["id"] for site in status["failed_sites"]] == [2]
    assert status["durations"]["count"] == 2 and status["durations"]["average"] == 20.0
    assert status["durations"]["slowest"][0] == {"id": 3, "duration": 30.0}
    assert status["resume_command"] == "ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration_id
    report = "\n".join(status["report"])
    assert "site 2: failed in phase copy (site, 1 attempts): table wp_2_posts is corrupt" in report
    assert "max_fail_percentage exceeded" in report and status["resume_command"] in report


# --- the run that holds a migration: interrupted runs ----------------------------------------------------

def run_and_die(store, migration_id=None):
    """Create (or load) a migration from a process that then dies, as an ansible-playbook killed with -9 does."""
    if hasattr(store, "db"):
        where = "state_db import DatabaseStateStore as Store; where = %r" % (store.db.database.identity(),)
        where = where[:-1] + ", 'password': %r}" % store.db.database.password
        where += "; where = {k: v for k, v in where.items() if k in ('host', 'port', 'user', 'password', 'database')}"
    else:
        where = "state_store import StateStore as Store; where = %r" % store.state_dir
    code = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, %r)
        from ansible_collections.wfu.multisite.plugins.module_utils.%s
        store = Store(where, holder_pid=os.getpid())
        if %r:
            store.load(%r)
        else:
            store.create("dev", "uat", sites=[1, 2, 3])
        os.kill(os.getpid(), 9)
    """) % (COLLECTIONS, where, migration_id, migration_id)
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -signal.SIGKILL
    return migration_id or store.status()["migration"]["id"]


def test_a_running_migration_whose_run_is_gone_is_shown_interrupted(store):
    migration_id = run_and_die(store)
    store.mark_site(migration_id, 1, "in_progress")
    before = snapshot_of(store)
    status = store.status(migration_id)
    migration = status["migration"]
    assert migration["status"] == "running" and migration["effective_status"] == "interrupted"
    assert migration["holder"]["liveness"] == "dead"
    report = "\n".join(status["report"])
    assert "interrupted" in report.splitlines()[0]
    assert "Its run (pid %d on host " % migration["holder"]["pid"] in report and "is gone" in report
    assert "Resume: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration_id in report
    row = store.list_migrations()["migrations"][0]
    assert row["status"] == "running" and row["effective_status"] == "interrupted" and row["resumable"] is True
    assert "interrupted" in store.list_migrations()["table"][1]
    assert snapshot_of(store) == before  # derived when read: status and list write nothing


def test_resume_latest_takes_over_an_interrupted_migration(store):
    migration_id = run_and_die(store)
    store.mark_site(migration_id, 2, "in_progress")
    loaded = store.load("latest")
    assert loaded["migration"]["id"] == migration_id and loaded["interrupted"] == [2]
    assert loaded["migration"]["effective_status"] == "running"
    assert loaded["migration"]["holder"]["liveness"] == "self"
    state = stored_state(store, migration_id)
    assert state["holder"]["pid"] == os.getpid()
    assert state["resumes"][-1]["holder"]["pid"] == os.getpid()
    # This run stops on a failure; the next one resumes and is killed: the state names that one as gone.
    store.finish(migration_id, "failed", reason="target down")
    run_and_die(store, migration_id)
    assert store.status(migration_id)["migration"]["effective_status"] == "interrupted"


def test_a_migration_a_live_run_holds_is_not_resumed_beside_it(tmp_path, sleeper, clock):
    state_dir = str(tmp_path / "migrations")
    other = StateStore(state_dir, holder_pid=sleeper.pid, clock=clock)
    migration_id = new_migration(other)
    mine = StateStore(state_dir, holder_pid=os.getpid(), clock=clock)
    assert mine.status(migration_id)["migration"]["effective_status"] == "running"
    before = snapshot(state_dir)
    with pytest.raises(StateError, match="is being run by pid %d on host .*which is still running" % sleeper.pid):
        mine.load(migration_id)
    assert snapshot(state_dir) == before
    forced = mine.load(migration_id, force=True)
    assert forced["migration"]["holder"]["pid"] == os.getpid()
    assert "Run by pid %d" % os.getpid() in "\n".join(mine.status(migration_id)["report"])


def test_a_holder_on_another_host_is_running_as_far_as_anyone_here_knows(store):
    migration_id = new_migration(store)
    edit_state(store, migration_id, lambda state: state["holder"].update(host="awx-job-77-abcde", awx_job_id="77",
                                                                         run_token=None))
    status = store.status(migration_id)
    assert status["migration"]["effective_status"] == "running"
    assert status["migration"]["holder"]["liveness"] == "unknown"
    assert "AWX job 77" in "\n".join(status["report"]) and "cannot be checked from here" in "\n".join(status["report"])
    assert store.load(migration_id)["migration"]["holder"]["liveness"] == "self"  # the lock decides, not this


def test_awx_job_ids_are_recorded_with_the_holder(tmp_path, clock):
    store = StateStore(str(tmp_path), holder_pid=os.getpid(), clock=clock, awx_job_id=77, awx_workflow_job_id="70")
    migration_id = new_migration(store)
    holder = stored_state(store, migration_id)["holder"]
    assert holder["awx_job_id"] == "77" and holder["awx_workflow_job_id"] == "70"
