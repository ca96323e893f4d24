"""The migration state store: layout, atomic writes, damaged files, resume, counters and locks.

Everything runs against real files in a temporary directory and real processes (for the locks and
the kill -9 test); nothing is mocked.
"""

import datetime
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils import state as state_mod
from ansible_collections.wfu.multisite.plugins.module_utils.state import (
    StateError, StateStore, find_playbook_pid, process_identity, redact, run_action)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")


class Clock:
    """A settable UTC clock, so ids and durations are predictable."""

    def __init__(self, start="2026-11-24T02:52:55"):
        self.moment = datetime.datetime.fromisoformat(start).replace(tzinfo=datetime.timezone.utc)

    def __call__(self):
        return self.moment

    def advance(self, seconds):
        self.moment += datetime.timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return StateStore(str(tmp_path / "migrations"), holder_pid=os.getpid(), clock=clock)


@pytest.fixture
def sleeper():
    """A live process to stand for another run's ansible-playbook."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def read(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def snapshot(directory):
    """Every file under ``directory`` with its bytes and mtime, to prove nothing was written."""
    files = {}
    for base, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                files[path] = (handle.read(), os.stat(path).st_mtime_ns)
    return files


def new_migration(store, sites=(1, 2, 3, 4, 5), **kwargs):
    return store.create("dev", "uat", sites=list(sites), **kwargs)["migration"]["id"]


def write_lock(store, target_env, **fields):
    os.makedirs(os.path.dirname(store.lock_path(target_env)), exist_ok=True)
    with open(store.lock_path(target_env), "w", encoding="utf-8") as handle:
        json.dump(fields, handle)


# --- create and the layout ----------------------------------------------------------------------

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
    assert state["schema_version"] == state_mod.SCHEMA_VERSION
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
    before = snapshot(store.state_dir)
    would_be = store.create("dev", "uat", check_mode=True)
    assert would_be["changed"] is True
    assert would_be["migration"]["id"] == first + "-2"
    assert snapshot(store.state_dir) == before
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
    from ansible_collections.wfu.multisite.plugins.module_utils.state import StateStore
    store = StateStore(%(state_dir)r, holder_pid=os.getpid())
    print("ready", flush=True)
    for n in itertools.count():
        site = n %% 2000 + 1
        store.mark_site(%(migration_id)r, site, "in_progress", phase="copy")
        store.mark_site(%(migration_id)r, site, "completed" if n %% 3 else "failed", error="x" * 200,
                        details={"rows": n, "tables": 12})
""")


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

def test_corrupt_state_is_reported_with_position_and_left_untouched(store):
    migration_id = new_migration(store)
    store.mark_site(migration_id, 1, "in_progress")
    path = store.paths(migration_id)["state"]
    with open(path, "rb") as handle:
        good = handle.read()
    position = good.index(b'"target_env"')
    with open(path, "wb") as handle:
        handle.write(good[:position] + b"#" + good[position + 1:])
    before = snapshot(store.state_dir)
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
    assert snapshot(store.state_dir) == before
    listed = store.list_migrations()["migrations"]
    assert listed[0]["id"] == migration_id and listed[0]["resumable"] is False and "byte %d" % position in listed[0]["error"]
    # The .bak really is the version to restore.
    assert read(path + ".bak")["id"] == migration_id


def test_byte_position_counts_utf8_bytes(store):
    migration_id = new_migration(store)
    path = store.paths(migration_id)["state"]
    with open(path, "wb") as handle:
        handle.write('{"é": 1,, }'.encode("utf-8"))
    # The error is at the 9th character, which is the 10th byte: "é" takes two.
    with pytest.raises(StateError, match=r"column 9\) at byte 9\."):
        store.load_state(migration_id)


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
    before = snapshot(store.state_dir)
    with pytest.raises(StateError, match=expected):
        store.load(migration_id)
    assert snapshot(store.state_dir) == before


def test_state_copied_into_another_directory_is_refused(store):
    migration_id = new_migration(store)
    copy_id = "dev-to-uat-2026-01-01T00-00-00"
    os.mkdir(os.path.join(store.state_dir, copy_id))
    with open(store.paths(migration_id)["state"], "rb") as src, \
            open(os.path.join(store.state_dir, copy_id, "state.json"), "wb") as dst:
        dst.write(src.read())
    with pytest.raises(StateError, match="holds migration .* not 'dev-to-uat-2026-01-01T00-00-00'"):
        store.load(copy_id)


def test_site_with_unknown_status_is_named(store):
    migration_id = new_migration(store)
    path = store.paths(migration_id)["state"]
    state = read(path)
    state["sites"]["3"]["status"] = "done"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    with pytest.raises(StateError, match="site 3 has no valid status"):
        store.load(migration_id)


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
    assert read(store.paths(migration_id)["options"]) == options
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
    before = snapshot(store.state_dir)
    checked = store.load(migration_id, check_mode=True)
    assert checked["interrupted"] == [3] and checked["changed"] is True
    assert snapshot(store.state_dir) == before
    resumed = store.load(migration_id)
    assert resumed["interrupted"] == [3]
    assert resumed["network_interrupted"] is True
    record = read(store.paths(migration_id)["state"])["sites"]["3"]
    assert record["status"] == "pending" and record["attempts"] == 2 and "interrupted" in record["error"]
    assert resumed["migration"]["sites_by_status"]["pending"] == [2, 3, 4, 5]
    assert resumed["migration"]["sites_by_status"]["completed"] == [1]
    assert resumed["migration"]["network_tables"]["status"] == "pending"
    with open(os.path.join(store.paths(migration_id)["logs"], "site-3.log"), encoding="utf-8") as handle:
        assert "interrupted" in handle.read().splitlines()[-1]


def test_loading_a_completed_migration_changes_nothing(store):
    migration_id = new_migration(store, sites=[1])
    store.mark_site(migration_id, 1, "completed")
    store.finish(migration_id, "completed")
    before = snapshot(store.state_dir)
    result = store.load(migration_id)
    assert result["changed"] is False and result["migration"]["resumable"] is False
    assert snapshot(store.state_dir) == before


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
    paths = store.paths(migration_id)
    assert read(paths["completed"]) == [1, 2, 6]
    failed = read(paths["failed"])
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
    log_path = os.path.join(store.paths(migration_id)["logs"], "site-4.log")
    assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600
    with open(log_path, encoding="utf-8") as handle:
        text = handle.read()
    lines = text.splitlines()
    assert lines[0].startswith("2026-11-24T02:52:55.000Z migration=%s site=4 status=in_progress attempt=1" % migration_id)
    assert "status=failed attempt=1 phase=copy class=systemic" in lines[1]
    assert '"rows": 3' in lines[1]
    for secret in ("s3cr3t", "hunter2", "abc;", "topsecret", "zzz"):
        assert secret not in text
        for path in (store.paths(migration_id)["state"], store.paths(migration_id)["failed"]):
            with open(path, encoding="utf-8") as handle:
                assert secret not in handle.read()
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


def test_set_sites_from_sites_info_list_keeps_known_records(store):
    migration_id = store.create("dev", "uat")["migration"]["id"]
    info = [{"id": 7, "domain": "news.dev.example.edu", "path": "/", "bytes": 1200, "large": False,
             "tables": ["wp_7_posts"]},
            {"id": 3, "domain": "big.dev.example.edu", "path": "/", "bytes": 9 * 10 ** 9, "large": True,
             "tables": ["wp_3_posts"]}]
    result = store.set_sites(migration_id, site_info=info)
    assert result["added"] == [7, 3] and result["migration"]["site_order"] == [7, 3]
    assert result["migration"]["large_sites"] == [3]
    record = read(store.paths(migration_id)["state"])["sites"]["3"]
    assert record["bytes"] == 9 * 10 ** 9 and record["large"] is True and "tables" not in record
    store.mark_site(migration_id, 7, "completed")
    again = store.set_sites(migration_id, sites=[3, 9], site_info={"9": {"bytes": 5}})
    assert again["added"] == [9]
    assert again["migration"]["site_order"] == [3, 9, 7]
    assert again["migration"]["sites_by_status"]["completed"] == [7]
    assert store.set_sites(migration_id, sites=[3, 9])["changed"] is False


def test_check_mode_updates_write_nothing(store):
    migration_id = new_migration(store)
    before = snapshot(store.state_dir)
    result = store.mark_site(migration_id, 1, "in_progress", check_mode=True)
    assert result["changed"] is True and result["site"]["status"] == "in_progress"
    store.mark_network(migration_id, "completed", check_mode=True)
    store.set_sites(migration_id, sites=[8], check_mode=True)
    store.finish(migration_id, "aborted", check_mode=True)
    store.lock("uat", check_mode=True)
    assert snapshot(store.state_dir) == before


def test_network_updates(store, clock):
    migration_id = new_migration(store)
    store.mark_network(migration_id, "in_progress")
    clock.advance(4)
    result = store.mark_network(migration_id, "completed", details={"tables": 4})
    record = result["network_tables"]
    assert record["status"] == "completed" and record["duration"] == 4.0 and record["attempts"] == 1
    assert store.mark_network(migration_id, "completed")["network_tables"]["attempts"] == 2
    with open(os.path.join(store.paths(migration_id)["logs"], "network.log"), encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 3


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


def test_run_action_returns_facts_only_for_whole_state_actions(tmp_path):
    params = dict.fromkeys(state_mod.argument_spec(), None)
    params.update(state_dir=str(tmp_path), force=False)
    created = run_action(dict(params, action="create", source_env="dev", target_env="uat", sites=[1, 2]),
                         holder_pid=os.getpid())
    migration_id = created["migration_id"]
    assert created["ansible_facts"]["wfu_migration"]["id"] == migration_id
    marked = run_action(dict(params, action="site", migration_id=migration_id, site_id=2, status="in_progress"))
    assert "ansible_facts" not in marked and "migration" not in marked
    assert set(marked) == {"changed", "migration_id", "site_id", "site", "counters", "consecutive_failures",
                           "progress", "log_file"}
    assert len(json.dumps(marked)) < 1500
    listed = run_action(dict(params, action="list"))
    assert listed["changed"] is False and "ansible_facts" not in listed


# --- locks ---------------------------------------------------------------------------------------------

def test_lock_is_exclusive_against_a_live_holder(tmp_path, sleeper):
    other = StateStore(str(tmp_path), holder_pid=sleeper.pid)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    taken = other.lock("uat", migration_id="dev-to-uat-2026-11-24T02-52-55")
    assert taken["changed"] is True and taken["lock"]["pid"] == sleeper.pid
    assert taken["lock"]["host"] == socket.gethostname() and taken["lock"]["start_time"]
    lock_file = read(other.lock_path("uat"))
    for force in (False, True):
        with pytest.raises(StateError) as caught:
            mine.lock("uat", force=force)
        message = str(caught.value)
        assert "dev-to-uat-2026-11-24T02-52-55" in message and "pid %d" % sleeper.pid in message
        assert socket.gethostname() in message and "still running" in message
    assert read(other.lock_path("uat")) == lock_file
    with pytest.raises(StateError, match="still running"):
        mine.create("dev", "uat")
    with pytest.raises(StateError, match="left in place"):
        mine.unlock("uat")
    assert other.lock("uat")["already_held"] is True
    assert mine.lock("pprd")["changed"] is True  # another target is free


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen(["sleep", "60"])
    StateStore(str(tmp_path), holder_pid=dead.pid).lock("uat", migration_id="dev-to-uat-2026-11-24T02-52-55")
    dead.kill()
    while state_mod.process_stat(dead.pid)[0] != "Z":
        time.sleep(0.01)
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    # Killed but not yet reaped: a zombie is as dead as a gone process.
    taken = mine.lock("uat")
    dead.wait()
    assert taken["stale_lock_taken_over"] is True
    assert taken["previous_holder"]["pid"] == dead.pid
    assert taken["previous_holder"]["migration_id"] == "dev-to-uat-2026-11-24T02-52-55"
    assert read(mine.lock_path("uat"))["pid"] == os.getpid()


def test_reused_pid_or_reboot_makes_a_lock_stale(tmp_path, sleeper):
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    real = process_identity(sleeper.pid)
    write_lock(mine, "uat", pid=sleeper.pid, host=real["host"], start_time=real["start_time"] - 1,
               boot_id=real["boot_id"], migration_id="old", started="2026-01-01T00:00:00.000Z")
    assert mine.lock("uat")["stale_lock_taken_over"] is True
    mine.unlock("uat")
    write_lock(mine, "uat", pid=sleeper.pid, host=real["host"], start_time=real["start_time"],
               boot_id="another-boot", migration_id="old", started="2026-01-01T00:00:00.000Z")
    assert mine.lock("uat")["stale_lock_taken_over"] is True
    mine.unlock("uat")
    write_lock(mine, "uat", pid=sleeper.pid, host=real["host"], start_time=real["start_time"],
               boot_id=real["boot_id"], migration_id="old", started="2026-01-01T00:00:00.000Z")
    with pytest.raises(StateError, match="still running"):
        mine.lock("uat")


def test_lock_from_another_host_needs_force(tmp_path):
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    write_lock(mine, "uat", pid=4242, host="elsewhere.example.edu", start_time=1, boot_id="b",
               migration_id="dev-to-uat-x", started="2026-01-01T00:00:00.000Z")
    with pytest.raises(StateError, match="cannot tell whether that run is still going.*force_unlock=uat"):
        mine.lock("uat")
    taken = mine.lock("uat", force=True)
    assert taken["stale_lock_taken_over"] is True and taken["previous_holder"]["host"] == "elsewhere.example.edu"


def test_damaged_lock_needs_force(tmp_path):
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    os.makedirs(os.path.dirname(mine.lock_path("uat")))
    with open(mine.lock_path("uat"), "w", encoding="utf-8") as handle:
        handle.write("{")
    with pytest.raises(StateError, match="cannot tell"):
        mine.lock("uat")
    assert mine.lock("uat", force=True)["changed"] is True


def test_create_names_the_migration_in_this_runs_lock_and_finish_releases_it(store):
    store.lock("uat")
    migration_id = new_migration(store)
    assert read(store.lock_path("uat"))["migration_id"] == migration_id
    with pytest.raises(StateError, match="left in place"):
        StateStore(store.state_dir, holder_pid=1).unlock("uat", migration_id="dev-to-uat-something-else")
    finished = store.finish(migration_id, "completed")
    assert finished["lock_released"] is True and not os.path.exists(store.lock_path("uat"))
    assert store.unlock("uat") == {"changed": False, "released": False, "lock_file": store.lock_path("uat"),
                                   "previous_holder": None}


def test_finish_leaves_another_migrations_lock(tmp_path, sleeper):
    other = StateStore(str(tmp_path), holder_pid=sleeper.pid)
    other.lock("uat", migration_id="dev-to-uat-2026-01-01T00-00-00")
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    migration_id = mine.create("dev", "pprd")["migration"]["id"]
    assert mine.finish(migration_id, "aborted")["lock_released"] is False
    assert os.path.exists(mine.lock_path("uat"))
    released = mine.unlock("uat", force=True)
    assert released["released"] is True and released["previous_holder"]["pid"] == sleeper.pid


def test_unlock_by_migration_id_from_another_process(tmp_path, sleeper):
    StateStore(str(tmp_path), holder_pid=sleeper.pid).lock("uat", migration_id="dev-to-uat-a")
    mine = StateStore(str(tmp_path), holder_pid=os.getpid())
    assert mine.unlock("uat", migration_id="dev-to-uat-a")["released"] is True


MODULE_LIKE = ("import sys; sys.path.insert(0, %r); "
               "from ansible_collections.wfu.multisite.plugins.module_utils.state import find_playbook_pid; "
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


def test_lock_holder_is_the_outermost_ansible_playbook_process(tmp_path):
    script = tmp_path / "fake_playbook.py"
    script.write_text(FAKE_PLAYBOOK, encoding="utf-8")
    fake = tmp_path / "ansible-playbook"
    fake.symlink_to(sys.executable)
    proc = subprocess.Popen([str(fake), str(script), MODULE_LIKE], stdout=subprocess.PIPE, text=True)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0
    assert int(output.strip()) == proc.pid
    assert find_playbook_pid() is None  # pytest itself runs under no ansible process
