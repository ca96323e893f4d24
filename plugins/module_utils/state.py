# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration state store: what a migration has done, kept so that it can be resumed.

Layout under the state directory (``wfu_state_dir``, default ``~/.wfuwp/migrations``)::

    index.json                  every migration: id, source_env, target_env, status, started, updated
    <id>/state.json             the whole state (state.json.bak: the version before the last write)
    <id>/options.json           the options the migration runs with (the base of a resume)
    <id>/completed.json         ids of the completed sites, in migration order
    <id>/failed.json            the failed and timed-out sites with error, phase and failure class
    <id>/logs/site-<N>.log      one line per status change of site N (network.log for the network tables)
    locks/<target_env>.lock     who is migrating into an environment right now

Every file is replaced atomically (temporary file in the same directory, fsync, rename, fsync of the
directory), so a process killed at any instant leaves the previous or the next version, never a torn
one.  Files are 0600 and directories 0700.

``StateStore`` does the work and raises ``StateError`` for anything a user can hit;
``run_action`` maps the options of the ``wfu_migration_state`` module (the same for its action
plugin) onto it.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import fcntl
import json
import os
import re
import tempfile

from ansible_collections.wfu.multisite.plugins.module_utils.processes import (
    find_playbook_pid, identity_is_alive, process_identity, process_stat, same_process)

SCHEMA_VERSION = 1
DEFAULT_STATE_DIR = "~/.wfuwp/migrations"

ACTIONS = ("create", "load", "set_sites", "site", "network", "finish", "list", "status", "lock", "unlock")
MIGRATION_STATUSES = ("running", "paused", "failed", "aborted", "completed")
FINISH_STATUSES = ("completed", "failed", "aborted", "paused")
SITE_STATUSES = ("pending", "in_progress", "completed", "failed", "timeout", "skipped")
SITE_UPDATE_STATUSES = ("in_progress", "completed", "failed", "timeout", "skipped")
NETWORK_STATUSES = ("pending", "in_progress", "completed", "failed", "skipped")
FAILURE_CLASSES = ("systemic", "site")
FAILED_STATUSES = ("failed", "timeout")
DONE_STATUSES = ("completed", "failed", "timeout", "skipped")

RESUME_COMMAND = "ansible-playbook wfu.multisite.env_migrate -e resume=%s"
UNLOCK_COMMAND = "ansible-playbook wfu.multisite.migration_cleanup -e force_unlock=%s"

ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIGRATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
TEMP_FILE_RE = re.compile(r"^\..+\.(\d+)\.tmp$")
SECRET_KEY_RE = re.compile(r"pass(word|wd)|secret", re.IGNORECASE)
SECRET_TEXT_RES = (
    # "using password: YES" in MariaDB's access-denied message holds no secret and helps, so it stays.
    re.compile(r"""(?i)(["']?\w*(?:password|passwd|secret)\w*["']?\s*[=:]\s*)(?!(?:YES|NO)\))("[^"]*"|'[^']*'|[^\s,;&})\]]+)"""),
    re.compile(r"""(?i)(\bidentified\s+(?:by|with\s+\S+\s+(?:as|by))\s+)('[^']*'|"[^"]*"|\S+)"""),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(?=@)"),
)
REDACTED = "********"

MAX_ERROR_CHARS = 4000
MAX_RESULT_CHARS = 4096
SITE_INFO_KEYS = ("bytes", "large", "domain", "path")


class StateError(Exception):
    """A problem the user can act on; ``details`` are extra result keys for the task result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


def argument_spec():
    """The options of ``wfu_migration_state``, shared by the module and its action plugin."""
    return dict(
        action=dict(type="str", required=True, choices=list(ACTIONS)),
        state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
        migration_id=dict(type="str"),
        source_env=dict(type="str"),
        target_env=dict(type="str"),
        options=dict(type="dict"),
        sites=dict(type="list", elements="int"),
        site_info=dict(type="raw"),
        network_tables=dict(type="raw"),
        site_id=dict(type="int"),
        status=dict(type="str", choices=sorted(set(MIGRATION_STATUSES + SITE_STATUSES + NETWORK_STATUSES) - {"running"})),
        error=dict(type="str"),
        phase=dict(type="str"),
        failure_class=dict(type="str", choices=list(FAILURE_CLASSES)),
        details=dict(type="dict"),
        reason=dict(type="str"),
        force=dict(type="bool", default=False),
    )


REQUIRED_IF = [
    ("action", "create", ("source_env", "target_env")),
    ("action", "load", ("migration_id",)),
    ("action", "set_sites", ("migration_id",)),
    ("action", "site", ("migration_id", "site_id", "status")),
    ("action", "network", ("migration_id", "status")),
    ("action", "finish", ("migration_id", "status")),
    ("action", "lock", ("target_env",)),
    ("action", "unlock", ("target_env",)),
]


# --- time -------------------------------------------------------------------------------------

def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(moment):
    """ISO 8601 UTC with milliseconds: sortable as text, precise enough for site durations."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def seconds_between(start_text, end_text):
    return round((parse_time(end_text) - parse_time(start_text)).total_seconds(), 3)


# --- secrets ----------------------------------------------------------------------------------

def redact(text):
    """Mask anything in a message that looks like a password (``password=...``, URL credentials)."""
    if not text:
        return text
    for pattern in SECRET_TEXT_RES:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


def without_secrets(value):
    """A copy of ``value`` without mapping keys that name a password or secret, at any depth."""
    if isinstance(value, dict):
        return {key: without_secrets(item) for key, item in value.items() if not SECRET_KEY_RE.search(str(key))}
    if isinstance(value, (list, tuple)):
        return [without_secrets(item) for item in value]
    return value


def shorten(text, limit=MAX_ERROR_CHARS):
    """Keep the head and the tail of a long message: the cause is at one end or the other."""
    if text is None or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head - 40
    return "%s … [%d characters cut] … %s" % (text[:head], len(text) - head - tail, text[-tail:])


def compact_result(details):
    """What a site record keeps of a step's ``details``: all of it when small, else its scalars."""
    if not details:
        return None
    clean = without_secrets(details)
    if len(json.dumps(clean, default=str)) <= MAX_RESULT_CHARS:
        return clean
    scalars = {key: value for key, value in clean.items()
               if isinstance(value, (str, int, float, bool)) or value is None}
    scalars = {key: shorten(value, 500) if isinstance(value, str) else value for key, value in scalars.items()}
    scalars["truncated"] = True
    return scalars


# --- files ------------------------------------------------------------------------------------

def make_private_dir(path):
    """Create ``path`` (0700) and its missing parents; an existing directory is left as it is."""
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise StateError("%s exists and is not a directory" % path) from None


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path):
    """A fresh temporary name next to ``path``; the pid in it tells ``remove_stale_temp_files`` whose it is."""
    fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".%d.tmp" % os.getpid(),
                                dir=os.path.dirname(path))
    return fd, temp


def write_atomic(path, data, keep_backup=False, sync_dir=True):
    """Replace ``path`` with ``data`` (bytes) so that readers see the old or the new file, never a mix.

    With ``keep_backup`` the replaced version stays as ``<path>.bak``; it is hard-linked into place
    before the rename, so at every instant both names hold a complete file.  ``sync_dir=False``
    leaves the directory's fsync to a caller that writes several files into it.
    """
    directory = os.path.dirname(path)
    fd, temp = temp_path_for(path)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
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
        fsync_dir(directory)


def json_bytes(value):
    return (json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def render_state(state):
    """state.json text: one line per top-level key and one line per site, readable and grep-able."""
    encode = LINE_ENCODER.encode
    lines = ["  %s: %s" % (encode(key), encode(value)) for key, value in state.items() if key != "sites"]
    # Site keys are digit strings (see site_id_int), so they need no encoding.
    site_lines = ['    "%s": %s' % (site_key, encode(record)) for site_key, record in state["sites"].items()]
    if site_lines:
        lines.append('  "sites": {\n' + ",\n".join(site_lines) + "\n  }")
    else:
        lines.append('  "sites": {}')
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode("utf-8")


def read_json(path, what):
    """Parse a JSON file; a damaged one raises StateError naming the file and the byte position."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw.strip():
        raise damaged_file_error(path, what, "the file is empty", 0)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise damaged_file_error(path, what, "not UTF-8 text", exc.start) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        position = len(text[:exc.pos].encode("utf-8"))
        reason = "%s (line %d, column %d)" % (exc.msg, exc.lineno, exc.colno)
        raise damaged_file_error(path, what, reason, position) from None


def damaged_file_error(path, what, reason, position):
    backup = path + ".bak"
    if os.path.exists(backup):
        advice = ("The version before the last write is %s: check it with `python3 -m json.tool %s` and, if it is "
                  "intact, restore it with `cp -p %s %s`." % (backup, backup, backup, path))
    else:
        advice = "There is no %s to restore from; repair the file by hand or start a new migration." % backup
    return StateError("%s %s is not valid JSON: %s at byte %d. Nothing was changed. %s"
                      % (what, path, reason, position, advice), path=path, position=position)


def append_line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


# --- lock holders -----------------------------------------------------------------------------

def holder_liveness(lock, me):
    """How the holder recorded in ``lock`` relates to this process ``me``.

    'self' (this playbook run), 'alive', 'dead' (gone, pid reused, or rebooted since) or
    'unknown' (another host, or no pid recorded: nothing here can tell).
    """
    if same_process(lock, me):
        return "self"
    return identity_is_alive(lock)


def describe_holder(lock):
    if lock.get("damaged"):
        return "an unknown run (the lock file cannot be read)"
    return "migration %s (pid %s on host %s, since %s)" % (
        lock.get("migration_id") or "not yet created", lock.get("pid"), lock.get("host"), lock.get("started"))


# --- the store --------------------------------------------------------------------------------

def normalize_network_tables(value):
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "only":
        return "only"
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise StateError("network_tables must be true, false or 'only', not %r" % (value,))


def normalize_site_info(site_info):
    """``site_info`` as {site id: {bytes, large, domain, path}} plus the order it came in.

    Accepts the ``sites`` list of ``wfu_sites_info`` (dicts with an ``id``) or a mapping of site id to
    such a dict; keys other than bytes, large, domain and path are left out.
    """
    if not site_info:
        return {}, []
    if isinstance(site_info, dict):
        items = list(site_info.items())
    elif isinstance(site_info, list):
        items = []
        for entry in site_info:
            if not isinstance(entry, dict) or "id" not in entry:
                raise StateError("site_info entries must be mappings with an 'id' (as wfu_sites_info returns them)")
            items.append((entry["id"], entry))
    else:
        raise StateError("site_info must be a list of sites (with 'id') or a mapping of site id to its details")
    info, order = {}, []
    for raw_id, entry in items:
        site_id = site_id_int(raw_id)
        if not isinstance(entry, dict):
            raise StateError("site_info for site %s must be a mapping" % site_id)
        info[site_id] = {key: entry[key] for key in SITE_INFO_KEYS if key in entry}
        order.append(site_id)
    return info, order


def site_id_int(value):
    try:
        site_id = int(value)
    except (TypeError, ValueError):
        raise StateError("site ids are integers, not %r" % (value,)) from None
    if site_id < 1:
        raise StateError("site ids are positive integers, not %d" % site_id)
    return site_id


def new_site_record():
    return {"status": "pending", "attempts": 0, "started": None, "finished": None, "duration": None,
            "error": None, "phase": None}


def check_env_name(name, what):
    if not isinstance(name, str) or not ENV_NAME_RE.match(name):
        raise StateError("invalid %s %r: use letters, digits, '.', '_' or '-' (at most 64)" % (what, name))
    return name


class StateStore:
    """All migrations under one state directory.

    ``holder_pid`` is the process that owns the locks taken through this store (default: the
    ansible-playbook process above us, see ``find_playbook_pid``); ``clock`` returns the current UTC
    time (tests pin it).
    """

    def __init__(self, state_dir, holder_pid=None, clock=utc_now):
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir))
        self.clock = clock
        self.warnings = []
        self._holder_pid = holder_pid
        self._me = None

    # paths

    def migration_dir(self, migration_id):
        if not isinstance(migration_id, str) or not MIGRATION_ID_RE.match(migration_id):
            raise StateError("invalid migration id %r" % (migration_id,))
        return os.path.join(self.state_dir, migration_id)

    def paths(self, migration_id):
        directory = self.migration_dir(migration_id)
        return {
            "dir": directory,
            "state": os.path.join(directory, "state.json"),
            "options": os.path.join(directory, "options.json"),
            "completed": os.path.join(directory, "completed.json"),
            "failed": os.path.join(directory, "failed.json"),
            "logs": os.path.join(directory, "logs"),
            "index": self.index_path,
        }

    @property
    def index_path(self):
        return os.path.join(self.state_dir, "index.json")

    def lock_path(self, target_env):
        return os.path.join(self.state_dir, "locks", "%s.lock" % check_env_name(target_env, "target_env"))

    def me(self):
        if self._me is None:
            self._me = process_identity(self._holder_pid or find_playbook_pid())
        return self._me

    def now(self):
        return format_time(self.clock())

    # reading and writing one migration

    def load_state(self, migration_id):
        """The state of one migration, checked to be ours, of a schema we read, and consistent."""
        path = self.paths(migration_id)["state"]
        if not os.path.exists(path):
            raise self._unknown_migration(migration_id)
        state = read_json(path, "migration state")
        if not isinstance(state, dict) or "schema_version" not in state:
            raise StateError("%s is not a wfu.multisite migration state (it has no schema_version). Nothing was "
                             "changed; move the file away if it does not belong here." % path, path=path)
        version = state["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StateError("%s has an invalid schema_version %r. Nothing was changed." % (path, version), path=path)
        if version > SCHEMA_VERSION:
            raise StateError("%s was written by a newer wfu.multisite (state schema %d; this one reads up to %d). "
                             "Nothing was changed; upgrade the collection to resume it." % (path, version, SCHEMA_VERSION),
                             path=path)
        if state.get("id") != migration_id:
            raise StateError("%s holds migration %r, not %r: was it copied from another migration's directory? "
                             "Nothing was changed." % (path, state.get("id"), migration_id), path=path)
        self._check_consistent(state, path)
        return state

    def _check_consistent(self, state, path):
        missing = [key for key in ("source_env", "target_env", "status", "started", "updated", "options", "sites",
                                   "site_order", "network_tables", "consecutive_failures") if key not in state]
        if missing:
            raise StateError("%s lacks %s. Nothing was changed; restore %s.bak if it is intact."
                             % (path, ", ".join(missing), path), path=path)
        if state["status"] not in MIGRATION_STATUSES:
            raise StateError("%s has an unknown migration status %r. Nothing was changed." % (path, state["status"]),
                             path=path)
        sites = state["sites"]
        if not isinstance(sites, dict) or not isinstance(state["site_order"], list):
            raise StateError("%s: 'sites' must be a mapping and 'site_order' a list. Nothing was changed." % path,
                             path=path)
        for site_key, record in sites.items():
            if not isinstance(record, dict) or record.get("status") not in SITE_STATUSES:
                raise StateError("%s: site %s has no valid status (one of %s). Nothing was changed."
                                 % (path, site_key, ", ".join(SITE_STATUSES)), path=path)
        order = state["site_order"]
        if len(order) != len(sites) or {str(site_id) for site_id in order} != sites.keys():
            raise StateError("%s: 'site_order' and 'sites' list different sites. Nothing was changed." % path,
                             path=path)

    def _unknown_migration(self, migration_id):
        known = [entry["id"] for entry in self._entries()]
        nearest = difflib.get_close_matches(migration_id, known, n=5, cutoff=0.5) or known[-5:]
        if nearest:
            hint = "; the nearest: %s" % ", ".join(nearest)
        else:
            hint = "; there are no migrations there yet"
        return StateError("no migration %r in %s%s" % (migration_id, self.state_dir, hint), candidates=nearest)

    def save_state(self, state, outcomes_changed=False):
        """Write the state and what is derived from it.

        completed.json and failed.json are rewritten only when ``outcomes_changed`` (a site moved into
        or out of completed/failed/timeout/skipped) or when they are missing.
        """
        paths = self.paths(state["id"])
        state["updated"] = self.now()
        state["counters"] = count_sites(state)
        write_atomic(paths["state"], render_state(state), keep_backup=True, sync_dir=False)
        if outcomes_changed or not os.path.exists(paths["failed"]):
            outcomes = outcome_lists(state)
            write_atomic(paths["completed"], json_bytes(outcomes[0]), sync_dir=False)
            write_atomic(paths["failed"], json_bytes(outcomes[1]), sync_dir=False)
        fsync_dir(paths["dir"])
        self._update_index(state)

    def _resolve_id(self, migration_id, source_env=None, target_env=None, resumable_only=True):
        """An explicit id as given; 'latest' as the newest matching migration (not completed, when resumable_only)."""
        if migration_id != "latest":
            return migration_id
        entries = [entry for entry in self._entries()
                   if (source_env is None or entry.get("source_env") == source_env)
                   and (target_env is None or entry.get("target_env") == target_env)]
        for entry in sorted(entries, key=lambda item: item.get("started") or "", reverse=True):
            if not resumable_only:
                return entry["id"]
            # The index may lag a write cut short by a kill; the state itself decides.
            if self.load_state(entry["id"])["status"] != "completed":
                return entry["id"]
        pair = " for %s -> %s" % (source_env or "any", target_env or "any") if (source_env or target_env) else ""
        if not entries:
            raise StateError("no migrations%s in %s" % (pair, self.state_dir))
        newest = ", ".join(entry["id"] for entry in entries[-5:])
        raise StateError("nothing to resume%s in %s: every migration there is completed (%s). Start a new one with "
                         "-e source_env=... -e target_env=..." % (pair, self.state_dir, newest))

    # the index

    @contextlib.contextmanager
    def _index_guard(self):
        """Serialize read-modify-write of index.json between runs into different targets."""
        make_private_dir(self.state_dir)
        fd = os.open(os.path.join(self.state_dir, ".index.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_index(self):
        if not os.path.exists(self.index_path):
            return []
        try:
            index = read_json(self.index_path, "migration index")
            if not isinstance(index, dict) or not isinstance(index.get("migrations"), list):
                raise StateError("%s is not a wfu.multisite migration index" % self.index_path)
            version = index.get("schema_version")
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise StateError("%s has schema_version %r, not one this collection writes" % (self.index_path, version))
        except StateError as exc:
            # The index only repeats what the state files say; rebuild it from them rather than stop.
            self.warnings.append("%s; rebuilding the index from the migrations' state files." % exc)
            return []
        return [entry for entry in index["migrations"] if isinstance(entry, dict) and "id" in entry]

    def _entries(self):
        """Index entries, plus migrations whose directory exists but which the index missed."""
        entries = {entry["id"]: entry for entry in self._read_index()}
        if os.path.isdir(self.state_dir):
            for name in sorted(os.listdir(self.state_dir)):
                if name in entries or not MIGRATION_ID_RE.match(name):
                    continue
                if os.path.exists(os.path.join(self.state_dir, name, "state.json")):
                    entries[name] = self._entry_from_file(name)
        return sorted(entries.values(), key=lambda item: (item.get("started") or "", item["id"]))

    def _entry_from_file(self, migration_id):
        try:
            return index_entry(self.load_state(migration_id))
        except StateError:
            return {"id": migration_id, "source_env": None, "target_env": None, "status": None,
                    "started": None, "updated": None}

    def _update_index(self, state):
        with self._index_guard():
            entries = {entry["id"]: entry for entry in self._read_index()}
            if state["id"] not in entries:
                entries = {entry["id"]: entry for entry in self._entries()}
            entries[state["id"]] = index_entry(state)
            ordered = sorted(entries.values(), key=lambda item: (item.get("started") or "", item["id"]))
            write_atomic(self.index_path, json_bytes({"schema_version": SCHEMA_VERSION, "migrations": ordered}))

    # actions

    def create(self, source_env, target_env, options=None, sites=None, site_info=None, network_tables=None,
               check_mode=False):
        check_env_name(source_env, "source_env")
        check_env_name(target_env, "target_env")
        if source_env == target_env:
            raise StateError("source_env and target_env are both %r: a migration needs two environments" % source_env)
        self._refuse_if_locked_by_another_run(target_env)
        saved_options = without_secrets(dict(options or {}))
        mode = normalize_network_tables(saved_options.get("network_tables") if network_tables is None else network_tables)
        now = self.clock()
        base_id = "%s-to-%s-%s" % (source_env, target_env, now.strftime("%Y-%m-%dT%H-%M-%S"))
        saved_options["network_tables"] = mode
        state = {
            "schema_version": SCHEMA_VERSION,
            "id": base_id,
            "source_env": source_env,
            "target_env": target_env,
            "status": "running",
            "reason": None,
            "started": format_time(now),
            "updated": format_time(now),
            "finished": None,
            "options": saved_options,
            "network_tables": {"status": "pending" if mode else "skipped", "attempts": 0, "started": None,
                               "finished": None, "duration": None, "error": None, "phase": None},
            "consecutive_failures": 0,
            "counters": {},
            "resumes": [],
            "site_order": [],
            "sites": {},
        }
        add_sites(state, sites, site_info)
        state["counters"] = count_sites(state)
        if check_mode:
            state["id"] = self._free_id(base_id)
        else:
            make_private_dir(self.state_dir)
            state["id"] = self._claim_id(base_id)
            paths = self.paths(state["id"])
            make_private_dir(paths["logs"])
            write_atomic(paths["options"], json_bytes(saved_options))
            self.save_state(state)
            self._attach_to_lock(target_env, state["id"])
        return {"changed": True, "created": True, "migration": self.summary(state)}

    def _free_id(self, base_id):
        candidate, number = base_id, 1
        while os.path.exists(os.path.join(self.state_dir, candidate)):
            number += 1
            candidate = "%s-%d" % (base_id, number)
        return candidate

    def _claim_id(self, base_id):
        """Create the migration's directory; mkdir is atomic, so two runs never get one id."""
        number = 1
        while True:
            candidate = base_id if number == 1 else "%s-%d" % (base_id, number)
            try:
                os.mkdir(os.path.join(self.state_dir, candidate), 0o700)
                return candidate
            except FileExistsError:
                number += 1

    def load(self, migration_id, source_env=None, target_env=None, options=None, check_mode=False):
        """Resume a migration: saved options overlaid with ``options``, in_progress sites back to pending."""
        migration_id = self._resolve_id(migration_id, source_env, target_env)
        state = self.load_state(migration_id)
        for given, key in ((source_env, "source_env"), (target_env, "target_env")):
            if given is not None and given != state[key]:
                raise StateError("migration %s migrates %s -> %s, not %s -> %s"
                                 % (migration_id, state["source_env"], state["target_env"],
                                    source_env or state["source_env"], target_env or state["target_env"]))
        self._refuse_if_locked_by_another_run(state["target_env"])
        if state["status"] == "completed":
            # Nothing is left to do; loading it again must change nothing (a second run is a no-op).
            if not check_mode:
                self._attach_to_lock(state["target_env"], migration_id)
            return {"changed": False, "migration": self.summary(state), "interrupted": [],
                    "network_interrupted": False, "options_overridden": []}
        before = json.loads(json.dumps(state))
        overrides = {key: value for key, value in without_secrets(options or {}).items() if value is not None}
        if "network_tables" in overrides:
            overrides["network_tables"] = normalize_network_tables(overrides["network_tables"])
        overridden = {key: value for key, value in overrides.items() if state["options"].get(key) != value}
        interrupted = [site_id for site_id in state["site_order"]
                       if state["sites"][str(site_id)]["status"] == "in_progress"]
        network_interrupted = state["network_tables"].get("status") == "in_progress"
        state.update(status="running", reason=None, finished=None)
        state["options"].update(overridden)
        for site_id in interrupted:
            record = state["sites"][str(site_id)]
            record.update(status="pending", finished=None, duration=None,
                          error="interrupted: still in progress when the run stopped; cleaned and redone on resume")
        if network_interrupted:
            state["network_tables"].update(status="pending", error="interrupted: still in progress when the run stopped")
        state["consecutive_failures"] = 0
        changed = state != before
        if not check_mode:
            remove_stale_temp_files(self.paths(migration_id)["dir"])
            remove_stale_temp_files(self.state_dir)
        if changed:
            state.setdefault("resumes", []).append({"at": self.now(), "interrupted": interrupted,
                                                    "options_overridden": overridden})
            if not check_mode:
                if overridden:
                    write_atomic(self.paths(migration_id)["options"], json_bytes(state["options"]))
                self.save_state(state)
                for site_id in interrupted:
                    self._log_site(state, site_id, "interrupted: found in_progress at resume; set back to pending")
        if not check_mode:
            self._attach_to_lock(state["target_env"], migration_id)
        return {"changed": changed, "migration": self.summary(state), "interrupted": interrupted,
                "network_interrupted": network_interrupted, "options_overridden": sorted(overridden)}

    def set_sites(self, migration_id, sites=None, site_info=None, check_mode=False):
        if not sites and not site_info:
            raise StateError("set_sites needs sites (ids in migration order) or site_info")
        state = self.load_state(migration_id)
        before = json.loads(json.dumps(state))
        added = add_sites(state, sites, site_info)
        changed = state != before
        if changed and not check_mode:
            self.save_state(state)
        return {"changed": changed, "added": added, "migration": self.summary(state)}

    def mark_site(self, migration_id, site_id, status, error=None, phase=None, failure_class=None, details=None,
                  check_mode=False):
        if status not in SITE_UPDATE_STATUSES:
            raise StateError("a site's status can be set to %s, not %r" % (", ".join(SITE_UPDATE_STATUSES), status))
        state = self.load_state(migration_id)
        key = str(site_id_int(site_id))
        if key not in state["sites"]:
            raise StateError("site %s is not part of migration %s (%d sites); add it with action=set_sites first"
                             % (key, migration_id, len(state["sites"])))
        record = state["sites"][key]
        outcomes_changed = record["status"] in DONE_STATUSES or status in DONE_STATUSES
        now = self.now()
        apply_step(record, status, now, error=error, phase=phase, failure_class=failure_class, details=details)
        if status == "completed":
            state["consecutive_failures"] = 0
        elif status in FAILED_STATUSES:
            state["consecutive_failures"] += 1
        state["counters"] = count_sites(state)
        if not check_mode:
            self.save_state(state, outcomes_changed)
            self._log_site(state, int(key), describe_step(record))
        return {"changed": True, "migration_id": migration_id, "site_id": int(key), "site": dict(record, id=int(key)),
                "counters": state["counters"], "consecutive_failures": state["consecutive_failures"],
                "progress": progress(state, state["counters"], self.clock()),
                "log_file": os.path.join(self.paths(migration_id)["logs"], "site-%s.log" % key)}

    def mark_network(self, migration_id, status, error=None, phase=None, failure_class=None, details=None,
                     check_mode=False):
        if status not in NETWORK_STATUSES:
            raise StateError("the network tables' status can be %s, not %r" % (", ".join(NETWORK_STATUSES), status))
        state = self.load_state(migration_id)
        before = json.loads(json.dumps(state))
        record = state["network_tables"]
        if status == "pending":
            record.update(status="pending", error=None)
        else:
            apply_step(record, status, self.now(), error=error, phase=phase, failure_class=failure_class,
                       details=details)
        changed = state != before
        if changed and not check_mode:
            self.save_state(state)
            append_line(os.path.join(self.paths(migration_id)["logs"], "network.log"),
                        "%s network tables %s\n" % (self.now(), describe_step(record)))
        return {"changed": changed, "migration_id": migration_id, "network_tables": record}

    def finish(self, migration_id, status, reason=None, check_mode=False):
        if status not in FINISH_STATUSES:
            raise StateError("a migration finishes as %s, not %r" % (", ".join(FINISH_STATUSES), status))
        state = self.load_state(migration_id)
        before = json.loads(json.dumps(state))
        state["status"] = status
        state["reason"] = redact(reason)
        if state != before:
            state["finished"] = self.now()
        changed = state != before
        if changed and not check_mode:
            self.save_state(state)
        released = self._release_lock_of(state["target_env"], migration_id, check_mode)
        return {"changed": changed or released, "lock_released": released, "migration": self.summary(state)}

    def list_migrations(self):
        rows = []
        for entry in self._entries():
            row = dict(entry, pair=None, progress=None, completed=None, total=None, failures=None,
                       resumable=False, error=None)
            try:
                state = self.load_state(entry["id"])
            except StateError as exc:
                row["error"] = str(exc)
            else:
                counters = count_sites(state)
                row.update(index_entry(state), completed=counters["completed"], total=counters["total"],
                           failures=counters["failed"] + counters["timeout"],
                           resumable=state["status"] != "completed")
                row["progress"] = "%d/%d" % (counters["completed"], counters["total"])
            if row.get("source_env"):
                row["pair"] = "%s -> %s" % (row["source_env"], row["target_env"])
            rows.append(row)
        return {"changed": False, "migrations": rows, "table": format_table(rows), "state_dir": self.state_dir}

    def status(self, migration_id="latest", source_env=None, target_env=None):
        """One migration in detail; 'latest' here is the newest migration whatever its status."""
        migration_id = self._resolve_id(migration_id or "latest", source_env, target_env, resumable_only=False)
        state = self.load_state(migration_id)
        summary = self.summary(state)
        failed_sites = [dict(state["sites"][str(site_id)], id=site_id) for site_id in state["site_order"]
                        if state["sites"][str(site_id)]["status"] in FAILED_STATUSES]
        durations = duration_stats(state)
        lock = self._read_lock_or_damaged(state["target_env"])
        if lock is not None and not lock.get("damaged"):
            lock["holder"] = holder_liveness(lock, self.me())
        return {"changed": False, "migration": summary, "failed_sites": failed_sites, "durations": durations,
                "lock": lock, "resume_command": summary["resume_command"],
                "report": format_report(summary, failed_sites, durations)}

    def summary(self, state):
        """The compact view returned to the playbook (and as the wfu_migration fact)."""
        by_status = {status: [] for status in SITE_STATUSES}
        counters = count_sites(state)
        large = []
        for site_id in state["site_order"]:
            record = state["sites"][str(site_id)]
            by_status[record["status"]].append(site_id)
            if record.get("large"):
                large.append(site_id)
        return {
            "id": state["id"],
            "source_env": state["source_env"],
            "target_env": state["target_env"],
            "status": state["status"],
            "reason": state.get("reason"),
            "started": state["started"],
            "updated": state["updated"],
            "finished": state.get("finished"),
            "options": state["options"],
            "network_tables": state["network_tables"],
            "consecutive_failures": state["consecutive_failures"],
            "counters": counters,
            "progress": progress(state, counters, self.clock()),
            "site_order": list(state["site_order"]),
            "sites_by_status": by_status,
            "large_sites": large,
            "resumable": state["status"] != "completed",
            "resume_command": RESUME_COMMAND % state["id"],
            "state_dir": self.state_dir,
            "paths": self.paths(state["id"]),
        }

    # site logs

    def _log_site(self, state, site_id, text):
        line = "%s migration=%s site=%d %s\n" % (self.now(), state["id"], site_id, text)
        append_line(os.path.join(self.paths(state["id"])["logs"], "site-%d.log" % site_id), line)

    # locks

    @contextlib.contextmanager
    def _lock_guard(self, check_mode=False):
        """Serialize lock decisions: check-then-take must not interleave between two runs.

        flock is released by the kernel when the process dies, so the guard itself can never go stale.
        Check mode only reads, and creates nothing (not even the guard).
        """
        if check_mode:
            yield
            return
        locks_dir = os.path.join(self.state_dir, "locks")
        make_private_dir(self.state_dir)
        make_private_dir(locks_dir)
        fd = os.open(os.path.join(locks_dir, ".guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            remove_stale_temp_files(locks_dir)
            yield
        finally:
            os.close(fd)

    def _read_lock(self, target_env):
        path = self.lock_path(target_env)
        try:
            lock = read_json(path, "lock file")
        except FileNotFoundError:
            return None
        if not isinstance(lock, dict):
            raise StateError("lock file %s is not a wfu.multisite lock. If no run is migrating into %s, remove it "
                             "with `%s`." % (path, target_env, UNLOCK_COMMAND % target_env), path=path)
        return lock

    def _write_new_lock(self, target_env, lock):
        """Create the lock file with its content in one step: link() fails if the name exists (like O_EXCL)."""
        path = self.lock_path(target_env)
        fd, temp = temp_path_for(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json_bytes(lock))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temp, path)
        finally:
            os.unlink(temp)
        fsync_dir(os.path.dirname(path))

    def lock(self, target_env, migration_id=None, force=False, check_mode=False):
        """Take the lock of ``target_env`` for this playbook run; see the module documentation for the rules."""
        path = self.lock_path(target_env)
        me = self.me()
        with self._lock_guard(check_mode):
            current = self._read_lock_or_damaged(target_env)
            result = {"lock_file": path, "stale_lock_taken_over": False, "previous_holder": None,
                      "already_held": False}
            if current is not None:
                liveness = "damaged" if current.get("damaged") else holder_liveness(current, me)
                if liveness == "self":
                    result["already_held"] = True
                    if migration_id and current.get("migration_id") != migration_id:
                        current["migration_id"] = migration_id
                        if not check_mode:
                            write_atomic(path, json_bytes(current))
                        return dict(result, changed=True, lock=current)
                    return dict(result, changed=False, lock=current)
                if liveness == "alive":
                    raise StateError(
                        "target environment %s is locked by %s, which is still running: another run is migrating "
                        "into %s. Wait for it to finish or stop it (kill %s); the lock goes with it."
                        % (target_env, describe_holder(current), target_env, current.get("pid")),
                        holder=current, lock_file=path)
                if liveness in ("unknown", "damaged") and not force:
                    raise StateError(
                        "target environment %s is locked by %s, and this host (%s) cannot tell whether that run is "
                        "still going. If it is not, take the lock with force: true, or clear it with `%s`."
                        % (target_env, describe_holder(current), me["host"], UNLOCK_COMMAND % target_env),
                        holder=current, lock_file=path)
                result.update(stale_lock_taken_over=True, previous_holder=current)
                if not check_mode:
                    os.unlink(path)
            lock = dict(me, migration_id=migration_id, target_env=target_env, started=self.now())
            if not check_mode:
                self._write_new_lock(target_env, lock)
            return dict(result, changed=True, lock=lock)

    def _read_lock_or_damaged(self, target_env):
        try:
            return self._read_lock(target_env)
        except StateError as exc:
            return {"damaged": True, "error": str(exc)}

    def unlock(self, target_env, migration_id=None, force=False, check_mode=False):
        """Release the lock of ``target_env`` if it is this migration's, this run's, or stale; force: any lock."""
        path = self.lock_path(target_env)
        with self._lock_guard(check_mode):
            current = self._read_lock_or_damaged(target_env)
            if current is None:
                return {"changed": False, "released": False, "lock_file": path, "previous_holder": None}
            if not force and not self._lock_is_releasable(current, migration_id):
                raise StateError(
                    "the lock of %s belongs to %s, not to %s; it was left in place. Use force: true (or `%s`) only "
                    "if that run is not active." % (target_env, describe_holder(current),
                                                    migration_id or "this run", UNLOCK_COMMAND % target_env),
                    holder=current, lock_file=path)
            if not check_mode:
                os.unlink(path)
            return {"changed": True, "released": True, "lock_file": path, "previous_holder": current}

    def _lock_is_releasable(self, lock, migration_id):
        if lock.get("damaged"):
            return False
        if migration_id and lock.get("migration_id") == migration_id:
            return True
        liveness = holder_liveness(lock, self.me())
        return liveness == "dead" or (liveness == "self" and lock.get("migration_id") in (None, migration_id))

    def _release_lock_of(self, target_env, migration_id, check_mode):
        """finish: drop the target's lock when it is this migration's (or this run's, not yet named)."""
        if not os.path.exists(self.lock_path(target_env)):
            return False
        with self._lock_guard(check_mode):
            lock = self._read_lock_or_damaged(target_env)
            if lock is None or lock.get("damaged"):
                return False
            ours = lock.get("migration_id") == migration_id or (
                lock.get("migration_id") is None and holder_liveness(lock, self.me()) == "self")
            if ours and not check_mode:
                os.unlink(self.lock_path(target_env))
            return ours

    def _attach_to_lock(self, target_env, migration_id):
        """create/load: name the migration in the lock this run took before it had an id."""
        if not os.path.exists(self.lock_path(target_env)):
            return
        with self._lock_guard():
            lock = self._read_lock_or_damaged(target_env)
            if (lock is not None and not lock.get("damaged") and lock.get("migration_id") is None
                    and holder_liveness(lock, self.me()) == "self"):
                lock["migration_id"] = migration_id
                write_atomic(self.lock_path(target_env), json_bytes(lock))

    def _refuse_if_locked_by_another_run(self, target_env):
        lock = self._read_lock_or_damaged(target_env)
        if lock is None or lock.get("damaged"):
            return
        if holder_liveness(lock, self.me()) == "alive":
            raise StateError("target environment %s is locked by %s, which is still running; wait for it to finish "
                             "or stop it before starting or resuming a migration into %s."
                             % (target_env, describe_holder(lock), target_env), holder=lock)


# --- state helpers ----------------------------------------------------------------------------

def add_sites(state, sites, site_info):
    """Add sites not yet in the state as pending (keeping every existing record); returns the added ids.

    The new order is ``sites`` (or site_info's order), followed by earlier sites it leaves out, so
    no site the state knows about is ever forgotten.
    """
    info, info_order = normalize_site_info(site_info)
    wanted = [site_id_int(site_id) for site_id in (sites if sites else info_order)]
    if len(set(wanted)) != len(wanted):
        raise StateError("the site list names some sites twice")
    added = []
    for site_id in wanted:
        key = str(site_id)
        if key not in state["sites"]:
            state["sites"][key] = new_site_record()
            added.append(site_id)
        state["sites"][key].update(info.get(site_id, {}))
    listed = set(wanted)
    state["site_order"] = wanted + [site_id for site_id in state["site_order"] if site_id not in listed]
    state["sites"] = {str(site_id): state["sites"][str(site_id)] for site_id in state["site_order"]}
    return added


def apply_step(record, status, now, error=None, phase=None, failure_class=None, details=None):
    """Record one status change of a site (or of the network tables) in its record."""
    was_running = record["status"] == "in_progress"
    if status == "in_progress":
        record.update(status=status, attempts=record.get("attempts", 0) + 1, started=now, finished=None,
                      duration=None, error=None, phase=phase, failure_class=None, result=None)
        return
    if status != "skipped" and not was_running:
        # An attempt that was never announced as in_progress is still an attempt.
        record["attempts"] = record.get("attempts", 0) + 1
        record["started"] = None
    record["status"] = status
    record["finished"] = now
    record["duration"] = seconds_between(record["started"], now) if was_running and record.get("started") else None
    if status in FAILED_STATUSES:
        record["error"] = shorten(redact(error)) or "%s without an error message" % status
        record["phase"] = phase or record.get("phase")
        record["failure_class"] = failure_class
    else:
        record["error"] = shorten(redact(error)) if error else None
        record["phase"] = phase
        record["failure_class"] = None
    record["result"] = compact_result(details)


def describe_step(record):
    parts = ["status=%s" % record["status"], "attempt=%s" % record.get("attempts")]
    if record.get("phase"):
        parts.append("phase=%s" % record["phase"])
    if record.get("failure_class"):
        parts.append("class=%s" % record["failure_class"])
    if record.get("duration") is not None:
        parts.append("duration=%.3fs" % record["duration"])
    if record.get("result"):
        parts.append("result=%s" % json.dumps(record["result"], ensure_ascii=False, sort_keys=True, default=str))
    line = " ".join(parts)
    if record.get("error"):
        line += "\n    error: " + record["error"].replace("\n", "\n    ")
    return line


def count_sites(state):
    counters = {status: 0 for status in SITE_STATUSES}
    for record in state["sites"].values():
        counters[record["status"]] += 1
    counters["total"] = len(state["sites"])
    return counters


def outcome_lists(state):
    completed, failed = [], []
    for site_id in state["site_order"]:
        record = state["sites"][str(site_id)]
        if record["status"] == "completed":
            completed.append(site_id)
        elif record["status"] in FAILED_STATUSES:
            failed.append({"id": site_id, "status": record["status"], "error": record.get("error"),
                           "phase": record.get("phase"), "failure_class": record.get("failure_class"),
                           "attempts": record.get("attempts"), "finished": record.get("finished")})
    return completed, failed


def progress(state, counters, moment):
    done = sum(counters[status] for status in DONE_STATUSES)
    durations = [record["duration"] for record in state["sites"].values()
                 if record["status"] == "completed" and record.get("duration") is not None]
    average = round(sum(durations) / len(durations), 3) if durations else None
    remaining = counters["pending"] + counters["in_progress"]
    return {
        "done": done,
        "total": counters["total"],
        "percent": round(100.0 * done / counters["total"], 1) if counters["total"] else 100.0,
        "elapsed_seconds": round((moment - parse_time(state["started"])).total_seconds(), 3),
        "average_site_seconds": average,
        "eta_seconds": round(average * remaining, 1) if average is not None else None,
    }


def duration_stats(state):
    timed = [(record["duration"], int(site_key)) for site_key, record in state["sites"].items()
             if record["status"] == "completed" and record.get("duration") is not None]
    if not timed:
        return {"count": 0, "total": 0.0, "average": None, "min": None, "max": None, "slowest": []}
    values = [duration for duration, _site_id in timed]
    slowest = sorted(timed, key=lambda item: (-item[0], item[1]))[:5]
    return {"count": len(values), "total": round(sum(values), 3), "average": round(sum(values) / len(values), 3),
            "min": min(values), "max": max(values),
            "slowest": [{"id": site_id, "duration": duration} for duration, site_id in slowest]}


def index_entry(state):
    return {key: state.get(key) for key in ("id", "source_env", "target_env", "status", "started", "updated")}


def remove_stale_temp_files(directory):
    """Temporary files of writers that were killed mid-write (their pid is gone)."""
    for name in os.listdir(directory):
        match = TEMP_FILE_RE.match(name)
        if match and process_stat(int(match.group(1))) is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))


def short_time(text):
    return text[:19].replace("T", " ") if text else "-"


def format_table(rows):
    """The migrations as a fixed-width text table, one line per migration."""
    header = ("ID", "PAIR", "STATUS", "PROGRESS", "FAILED", "STARTED (UTC)", "UPDATED (UTC)", "RESUMABLE")
    lines = [header]
    for row in rows:
        lines.append((row["id"], row["pair"] or "?", row["status"] or "unreadable", row["progress"] or "-",
                      "-" if row["failures"] is None else str(row["failures"]), short_time(row.get("started")),
                      short_time(row.get("updated")), "yes" if row["resumable"] else "no"))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]


def format_report(summary, failed_sites, durations):
    counters = summary["counters"]
    reason = " (%s)" % summary["reason"] if summary["reason"] else ""
    finished = ", finished %s UTC" % short_time(summary["finished"]) if summary["finished"] else ""
    lines = [
        "Migration %s (%s -> %s): %s%s" % (summary["id"], summary["source_env"], summary["target_env"],
                                           summary["status"], reason),
        "Started %s UTC, updated %s UTC%s" % (short_time(summary["started"]), short_time(summary["updated"]), finished),
        "Sites: %d total, %d completed, %d failed, %d timed out, %d skipped, %d pending, %d in progress"
        % (counters["total"], counters["completed"], counters["failed"], counters["timeout"], counters["skipped"],
           counters["pending"], counters["in_progress"]),
        "Network tables: %s" % summary["network_tables"].get("status"),
    ]
    if durations["count"]:
        lines.append("Durations: %.1f s over %d sites, average %.1f s, longest site %d (%.1f s)"
                     % (durations["total"], durations["count"], durations["average"],
                        durations["slowest"][0]["id"], durations["slowest"][0]["duration"]))
    if failed_sites:
        lines.append("Failed sites:")
        for site in failed_sites:
            first_line = (site.get("error") or "").splitlines()[0] if site.get("error") else ""
            lines.append("  site %d: %s in phase %s (%s, %d attempts): %s"
                         % (site["id"], site["status"], site.get("phase") or "?", site.get("failure_class") or "?",
                            site.get("attempts") or 0, first_line))
    if summary["resumable"]:
        lines.append("Resume: %s" % summary["resume_command"])
    lines.append("State: %s; logs: %s" % (summary["paths"]["state"], summary["paths"]["logs"]))
    return lines


# --- the module's options -> the store ----------------------------------------------------------

def run_action(params, check_mode=False, holder_pid=None):
    """Do what the module's ``params`` ask; returns the task result (raises StateError for user errors).

    create, load, set_sites, finish and status also return ``ansible_facts.wfu_migration`` (the
    summary); site and network return only their small result, to stay cheap on large runs.
    """
    store = StateStore(params["state_dir"], holder_pid=holder_pid)
    action = params["action"]
    if action == "create":
        result = store.create(params["source_env"], params["target_env"], options=params.get("options"),
                              sites=params.get("sites"), site_info=params.get("site_info"),
                              network_tables=params.get("network_tables"), check_mode=check_mode)
    elif action == "load":
        result = store.load(params["migration_id"], source_env=params.get("source_env"),
                            target_env=params.get("target_env"), options=params.get("options"),
                            check_mode=check_mode)
    elif action == "set_sites":
        result = store.set_sites(params["migration_id"], sites=params.get("sites"),
                                 site_info=params.get("site_info"), check_mode=check_mode)
    elif action == "site":
        result = store.mark_site(params["migration_id"], params["site_id"], params["status"],
                                 error=params.get("error"), phase=params.get("phase"),
                                 failure_class=params.get("failure_class"), details=params.get("details"),
                                 check_mode=check_mode)
    elif action == "network":
        result = store.mark_network(params["migration_id"], params["status"], error=params.get("error"),
                                    phase=params.get("phase"), failure_class=params.get("failure_class"),
                                    details=params.get("details"), check_mode=check_mode)
    elif action == "finish":
        result = store.finish(params["migration_id"], params["status"], reason=params.get("reason"),
                              check_mode=check_mode)
    elif action == "list":
        result = store.list_migrations()
    elif action == "status":
        result = store.status(params.get("migration_id") or "latest", source_env=params.get("source_env"),
                              target_env=params.get("target_env"))
    elif action == "lock":
        result = store.lock(params["target_env"], migration_id=params.get("migration_id"),
                            force=params.get("force", False), check_mode=check_mode)
    else:
        result = store.unlock(params["target_env"], migration_id=params.get("migration_id"),
                              force=params.get("force", False), check_mode=check_mode)
    if "migration" in result:
        result["migration_id"] = result["migration"]["id"]
        result["ansible_facts"] = {"wfu_migration": result["migration"]}
    if store.warnings:
        result["warnings"] = list(store.warnings)
    return result
