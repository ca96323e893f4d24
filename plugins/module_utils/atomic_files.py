# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private files that a process killed at any instant leaves whole: the state store's file layer.

Every file is replaced, never edited: the new content goes to a temporary file in the same directory
(0600, named ``.<name>.<random>.<pid>.tmp``), is fsynced and renamed over the old name, then the
directory is fsynced.  ``write_atomic(..., keep_backup=True)`` first hard-links the version being
replaced to ``<name>.bak``, so both names hold a complete file at every instant.  Directories are 0700.

``StateError`` is the error of this layer and of everything built on it (the run locks, the state
store): a problem with the state directory that the user can act on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile

from ansible_collections.wfu.multisite.plugins.module_utils.processes import started_at

TEMP_FILE_RE = re.compile(r"^\..+\.(\d+)\.tmp$")


class StateError(Exception):
    """A problem the user can act on; ``details`` are extra keys for the task result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


def make_private_dir(path):
    """Create ``path`` (0700) and its missing parents; an existing directory is left as it is."""
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise StateError("%s exists and is not a directory" % path, path=path) from None


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_file_beside(path):
    """A fresh 0600 temporary file next to ``path``; the pid in its name tells whose it is."""
    return tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".%d.tmp" % os.getpid(),
                            dir=os.path.dirname(path))


def _write_temp(path, data):
    fd, temp = _temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return temp


def write_atomic(path, data, keep_backup=False, sync_dir=True):
    """Replace ``path`` with ``data`` (bytes) so that readers see the old or the new file, never a mix.

    With ``keep_backup`` the replaced version stays as ``<path>.bak``.  ``sync_dir=False`` leaves the
    directory's fsync to a caller that writes several files into it.
    """
    temp = _write_temp(path, data)
    try:
        if keep_backup and os.path.exists(path):
            backup_temp = temp + ".bak.%d.tmp" % os.getpid()
            os.link(path, backup_temp)
            os.replace(backup_temp, path + ".bak")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if sync_dir:
        fsync_dir(os.path.dirname(path))


def create_exclusive(path, data):
    """Create ``path`` holding ``data`` in one step, or raise FileExistsError: link() refuses an existing name."""
    temp = _write_temp(path, data)
    try:
        os.link(temp, path)
    finally:
        os.unlink(temp)
    fsync_dir(os.path.dirname(path))


def json_bytes(value):
    return (json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def read_json(path, what, advice=None):
    """Parse a JSON file; a damaged one raises StateError naming the file and the byte position.

    ``advice(path)`` gives the next step to append to that message.  A missing file raises FileNotFoundError.
    """
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw.strip():
        reason, position = "the file is empty", 0
    else:
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            reason, position = "not UTF-8 text", exc.start
        except json.JSONDecodeError as exc:
            reason = "%s (line %d, column %d)" % (exc.msg, exc.lineno, exc.colno)
            position = len(exc.doc[:exc.pos].encode("utf-8"))
    message = "%s %s is not valid JSON: %s at byte %d." % (what, path, reason, position)
    if advice is not None:
        message = ("%s %s" % (message, advice(path))).rstrip()
    raise StateError(message, path=path, position=position)


def append_line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


def remove_stale_temp_files(directory):
    """Temporary files of writers that were killed mid-write: their pid is gone, or is another process's now (one
    that started after the file was last written: pids are reused, quickly on a busy machine)."""
    for name in os.listdir(directory):
        match = TEMP_FILE_RE.match(name)
        if not match:
            continue
        path = os.path.join(directory, name)
        started = started_at(int(match.group(1)))
        try:
            written = os.stat(path).st_mtime
        except FileNotFoundError:
            continue
        # A second of slack for the clocks' resolutions: a writer is never that much younger than its file.
        if started is None or started > written + 1.0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
