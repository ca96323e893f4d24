"""atomic_files: private, atomic, fsynced files with a hard-linked .bak, and JSON errors with byte positions."""

import os
import stat
import subprocess

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import (
    StateError, append_line, create_exclusive, make_private_dir, read_json, remove_stale_temp_files, write_atomic)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_atomic_is_private_and_keeps_the_previous_version(tmp_path):
    path = str(tmp_path / "state.json")
    write_atomic(path, b'{"n": 1}\n', keep_backup=True)
    assert not os.path.exists(path + ".bak")  # nothing was replaced yet
    first_inode = os.stat(path).st_ino
    write_atomic(path, b'{"n": 2}\n', keep_backup=True)
    assert read_json(path, "state") == {"n": 2}
    assert read_json(path + ".bak", "state") == {"n": 1}
    assert os.stat(path + ".bak").st_ino == first_inode  # the same file, linked, not copied
    assert mode(path) == 0o600 and mode(path + ".bak") == 0o600
    assert sorted(os.listdir(tmp_path)) == ["state.json", "state.json.bak"]  # no temporary file left


def test_create_exclusive_never_replaces(tmp_path):
    path = str(tmp_path / "uat.lock")
    create_exclusive(path, b"first")
    with pytest.raises(FileExistsError):
        create_exclusive(path, b"second")
    with open(path, "rb") as handle:
        assert handle.read() == b"first"
    assert mode(path) == 0o600 and os.listdir(tmp_path) == ["uat.lock"]


@pytest.mark.parametrize("raw, reason, position", [
    ('{"é": 1,, }'.encode("utf-8"), r"column 9\)", 9),  # the 9th character is the 10th byte: "é" takes two
    (b"", "the file is empty", 0),
    (b'{"a": "\xff"}', "not UTF-8 text", 7),
])
def test_damaged_json_names_the_file_and_the_byte(tmp_path, raw, reason, position):
    path = str(tmp_path / "index.json")
    with open(path, "wb") as handle:
        handle.write(raw)
    with pytest.raises(StateError, match=reason) as caught:
        read_json(path, "migration index", advice=lambda damaged: "Restore %s from somewhere." % damaged)
    message = str(caught.value)
    assert message.startswith("migration index %s is not valid JSON" % path)
    assert message.endswith("at byte %d. Restore %s from somewhere." % (position, path))
    assert caught.value.details == {"path": path, "position": position}


def test_private_dirs(tmp_path):
    path = str(tmp_path / "a" / "migrations")
    make_private_dir(path)
    make_private_dir(path)  # exists: left as it is
    assert mode(path) == 0o700
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(StateError, match="is not a directory"):
        make_private_dir(str(tmp_path / "file"))


def test_append_line_creates_a_private_log(tmp_path):
    path = str(tmp_path / "site-4.log")
    append_line(path, "one\n")
    append_line(path, "two\n")
    assert (tmp_path / "site-4.log").read_text(encoding="utf-8") == "one\ntwo\n" and mode(path) == 0o600


def test_only_temporary_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = [".state.json.abc.%d.tmp" % dead.pid, ".state.json.def.%d.tmp" % os.getpid(), "state.json"]
    for name in names:
        (tmp_path / name).write_text("x", encoding="utf-8")
    remove_stale_temp_files(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])


def test_a_temp_file_whose_pid_now_belongs_to_a_younger_process_is_stale(tmp_path):
    """pids are reused: a temp file named after a live pid is still stale when that process started after the file
    was last written (the writer that made it is gone)."""
    from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import remove_stale_temp_files

    mine = tmp_path / (".state.json.abc.%d.tmp" % os.getpid())
    mine.write_text("{}")
    reused = tmp_path / (".state.json.def.%d.tmp" % os.getpid())
    reused.write_text("{}")
    # Written long before this process started: its writer cannot have been this process.
    os.utime(reused, (1, 1))
    remove_stale_temp_files(str(tmp_path))
    assert mine.exists() and not reused.exists()
