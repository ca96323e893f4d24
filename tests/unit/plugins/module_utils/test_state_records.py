"""The shape of a state (issue 8, item 10): a malformed record, or a missing state.json, gets a message that
names the file, the site and the field, and the restore command when the .bak can replace it; never a TypeError.
"""

import os
import shutil

import pytest
from state_helpers import edit_state, new_migration, snapshot, stored_state, write

from ansible_collections.wfu.multisite.plugins.module_utils.state_records import (
    BadField, apply_step, check_state, compact_result)
from ansible_collections.wfu.multisite.plugins.module_utils.state_store import StateError


def set_site(site, **fields):
    return lambda state: state["sites"][site].update(fields)


def replace_site(site, record):
    return lambda state: state["sites"].__setitem__(site, record)


def rekey_site(old, new):
    def change(state):
        state["sites"] = {new if key == old else key: record for key, record in state["sites"].items()}
    return change


MALFORMED = {
    "attempts is text": (set_site("3", attempts="x"), "3", "attempts", "'x' is not a count"),
    "negative attempts": (set_site("3", attempts=-1), "3", "attempts", "-1 is not a count"),
    "attempts is a bool": (set_site("3", attempts=True), "3", "attempts", "True is not a count"),
    "unknown status": (set_site("3", status="done"), "3", "status", "'done' is not one of pending, in_progress"),
    "record is a list": (replace_site("3", ["pending"]), "3", "record", "it is a list, not a mapping"),
    "record is text": (replace_site("3", "pending"), "3", "record", "it is a str, not a mapping"),
    "duration is text": (set_site("3", duration="slow"), "3", "duration", "'slow' is not a number of seconds"),
    "started is not a time": (set_site("3", started="yesterday"), "3", "started", "'yesterday' is not a UTC time"),
    "error is a number": (set_site("3", error=42), "3", "error", "42 is not text"),
    "unknown failure class": (set_site("3", failure_class="cosmic"), "3", "failure_class", "'cosmic' is not one of"),
    "site key is not digits": (rekey_site("3", "three"), "three", "sites", "the key 'three' is not a site id"),
    "site key is not canonical": (rekey_site("3", "03"), "03", "sites", "the key '03' is not a site id"),
    "negative consecutive failures": (lambda state: state.update(consecutive_failures=-1), None,
                                      "consecutive_failures", "-1 is not a count"),
    "network attempts are text": (lambda state: state["network_tables"].update(attempts="2"), None,
                                  "network_tables.attempts", "'2' is not a count"),
    "site_order names another site": (lambda state: state.update(site_order=[1, 2, 33, 4, 5]), None, "site_order",
                                      "does not list the same sites"),
    "site_order holds text": (lambda state: state.update(site_order=["1", "2", "3", "4", "5"]), None, "site_order",
                              "as numbers"),
    "options is a list": (lambda state: state.update(options=[]), None, "options", "not a mapping"),
    "missing keys": (lambda state: state.pop("sites"), None, "sites", "missing"),
}


@pytest.mark.files_layout
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_record_is_named_with_the_way_back(store, case):
    change, site, field, problem = MALFORMED[case]
    migration_id = new_migration(store)
    store.mark_site(migration_id, 1, "completed")
    store.mark_site(migration_id, 2, "in_progress")  # state.json.bak: the state with site 1 completed
    path = edit_state(store, migration_id, change)
    backup = path + ".bak"
    before = snapshot(store.state_dir)
    attempts = {"load": lambda: store.load(migration_id), "mark_site": lambda: store.mark_site(migration_id, 3, "in_progress"),
                "mark_network": lambda: store.mark_network(migration_id, "in_progress"),
                "status": lambda: store.status(migration_id), "finish": lambda: store.finish(migration_id, "failed")}
    for name, attempt in attempts.items():
        with pytest.raises(StateError) as caught:
            attempt()
        message = str(caught.value)
        where = "site %s, field %s" % (site, field) if site is not None else "field %s" % field
        assert message.startswith("%s: %s: " % (path, where)), (name, message)
        assert problem in message, (name, message)
        assert "Nothing was changed" in message
        assert "is intact" in message and "`cp -p %s %s`" % (backup, path) in message, (name, message)
        assert caught.value.details == {"path": path, "site_id": site, "field": field}
    assert snapshot(store.state_dir) == before
    listed = store.list_migrations()["migrations"][0]
    assert listed["id"] == migration_id and where in listed["error"] and listed["resumable"] is False
    # The advice holds: restoring the .bak gives a state that loads.
    shutil.copy2(backup, path)
    restored = store.load(migration_id)["migration"]["sites_by_status"]
    assert restored["completed"] == [1] and restored["pending"] == [2, 3, 4, 5]


@pytest.mark.files_layout
def test_the_bak_is_offered_only_when_it_is_intact(store):
    migration_id = new_migration(store)
    store.mark_site(migration_id, 1, "completed")
    path = edit_state(store, migration_id, set_site("3", attempts="x"))
    with open(path + ".bak", "w", encoding="utf-8") as handle:
        handle.write("{")
    with pytest.raises(StateError) as caught:
        store.mark_site(migration_id, 3, "in_progress")
    message = str(caught.value)
    assert "site 3, field attempts" in message and "cp -p" not in message
    assert "%s.bak cannot replace it (migration state %s.bak is not valid JSON" % (path, path) in message
    assert "repair the file by hand" in message
    # A .bak with the same bad field is no better.
    shutil.copy2(path, path + ".bak")
    with pytest.raises(StateError, match=r"\.bak cannot replace it \(.*site 3, field attempts"):
        store.load(migration_id)
    os.unlink(path + ".bak")
    with pytest.raises(StateError, match=r"There is no .*state.json.bak to restore from"):
        store.load(migration_id)


@pytest.mark.files_layout
def test_a_missing_state_beside_a_good_bak_says_so(store, clock):
    migration_id = new_migration(store)
    clock.advance(90)
    store.mark_site(migration_id, 2, "completed")  # the .bak is the state as of creation
    paths = store.paths(migration_id)
    os.unlink(paths["state"])
    before = snapshot(store.state_dir)
    for attempt in (lambda: store.load(migration_id), lambda: store.status(migration_id),
                    lambda: store.mark_site(migration_id, 1, "in_progress")):
        with pytest.raises(StateError) as caught:
            attempt()
        message = str(caught.value)
        assert message == ("migration %s has no state.json (%s is missing), but its state.json.bak, the state as of "
                           "2026-11-24 02:52:55 UTC, is intact. Nothing was changed. Restore it with `cp -p %s.bak %s`, "
                           "then run again." % (migration_id, paths["state"], paths["state"], paths["state"]))
        assert "no migration" not in message and "nearest" not in message
    assert snapshot(store.state_dir) == before
    row = store.list_migrations()["migrations"][0]
    assert row["id"] == migration_id and "cp -p" in row["error"]
    shutil.copy2(paths["state"] + ".bak", paths["state"])
    assert store.load(migration_id)["migration"]["id"] == migration_id


@pytest.mark.files_layout
def test_a_missing_state_without_a_usable_bak(store):
    migration_id = new_migration(store)
    paths = store.paths(migration_id)
    os.unlink(paths["state"])
    with pytest.raises(StateError, match="no state.json and no state.json.bak: its state is lost"):
        store.load(migration_id)
    write(paths["state"] + ".bak", {"schema_version": 1, "id": "another"})
    with pytest.raises(StateError, match=r"has no state.json .* cannot replace it: .* holds migration 'another'"):
        store.load(migration_id)


def test_check_state_accepts_what_the_store_writes(store):
    migration_id = new_migration(store)
    store.mark_site(migration_id, 1, "in_progress")
    store.mark_site(migration_id, 1, "failed", error="boom", failure_class="site", details={"rows": 1})
    store.mark_network(migration_id, "completed")
    check_state(stored_state(store, migration_id))
    with pytest.raises(BadField):
        check_state([])


def test_apply_step_and_compact_result():
    record = {"status": "pending", "attempts": 0}
    apply_step(record, "in_progress", "2026-11-24T02:52:55.000Z", phase="copy")
    apply_step(record, "failed", "2026-11-24T02:53:05.500Z", error="dsn mysql://wp:hunter2@db/wp",
               failure_class="systemic", details={"rows": 3, "db_password": "zzz", "note": "password=abc"})
    assert record["attempts"] == 1 and record["duration"] == 10.5 and record["phase"] == "copy"
    assert "hunter2" not in record["error"]
    assert record["result"] == {"rows": 3, "note": "password=********"}
    assert compact_result(None) is None


def test_a_site_done_in_parts_keeps_them_across_attempts_until_it_completes(store):
    migration_id = new_migration(store, sites=(2, 3))
    store.mark_site(migration_id, 2, "in_progress", phase="start")
    store.mark_site(migration_id, 2, "in_progress", phase_done="tables", phase="media",
                    details={"rows": 40, "url": "https://uat.example.edu/two"})
    failed = store.mark_site(migration_id, 2, "failed", phase="media", error="rsync: mkdir failed",
                             details={"reason": "site_data"})["site"]
    assert (failed["attempts"], failed["phases_done"]) == (1, ["tables"])
    assert failed["result"] == {"rows": 40, "url": "https://uat.example.edu/two", "reason": "site_data"}
    # The plan of the resume (and the summary) tell which parts are done.
    assert store.status(migration_id)["migration"]["phases_done"] == {"2": ["tables"]}
    again = store.mark_site(migration_id, 2, "in_progress", phase="media")["site"]
    assert (again["attempts"], again["phases_done"]) == (2, ["tables"])
    assert again["result"]["url"] == "https://uat.example.edu/two"
    store.mark_site(migration_id, 2, "in_progress", phase_done="media", phase="hook", details={"media_copied": 3})
    assert stored_state(store, migration_id)["sites"]["2"]["phases_done"] == ["tables", "media"]
    done = store.mark_site(migration_id, 2, "completed", phase="done", details={"media_copied": 3})["site"]
    assert "phases_done" not in done and done["result"]["rows"] == 40 and done["result"]["media_copied"] == 3
    assert store.status(migration_id)["migration"]["phases_done"] == {}
    check_state(stored_state(store, migration_id))


def test_a_part_is_recorded_done_only_on_a_site_in_progress(store):
    migration_id = new_migration(store, sites=(2,))
    with pytest.raises(StateError, match="in progress"):
        store.mark_site(migration_id, 2, "in_progress", phase_done="tables")
    store.mark_site(migration_id, 2, "in_progress")
    with pytest.raises(StateError, match="in_progress"):
        store.mark_site(migration_id, 2, "completed", phase_done="tables")
    with pytest.raises(StateError, match="phase_done must be one of tables, media"):
        store.mark_site(migration_id, 2, "in_progress", phase_done="hook")
