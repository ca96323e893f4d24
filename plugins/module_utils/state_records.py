# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a migration's state holds, whatever stores it: statuses, records, times, and their validation.

The shape is the state contract (``docs/state.md``): ``sites`` maps a site id (a string of digits) to
``{status, attempts, started, finished, duration, error, phase}`` plus ``failure_class``, ``result``
and what discovery recorded (``bytes``, ``large``, ``domain``, ``path``).  ``check_state`` refuses a
state that does not have that shape with a message naming the field; ``apply_step`` is the only code
that changes a record.
"""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.wfu.multisite.plugins.module_utils.atomic_files import StateError
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.errors import redact
from ansible_collections.wfu.multisite.plugins.module_utils.tables import validate_site_id

SCHEMA_VERSION = 1

MIGRATION_STATUSES = ("running", "paused", "failed", "aborted", "completed")
FINISH_STATUSES = ("completed", "failed", "aborted", "paused")
SITE_STATUSES = ("pending", "in_progress", "completed", "failed", "timeout", "skipped")
SITE_UPDATE_STATUSES = ("in_progress", "completed", "failed", "timeout", "skipped")
NETWORK_STATUSES = ("pending", "in_progress", "completed", "failed", "skipped")
FAILURE_CLASSES = ("systemic", "site")
FAILED_STATUSES = ("failed", "timeout")
DONE_STATUSES = ("completed", "failed", "timeout", "skipped")
# The parts of a site that finish on their own, in order, before the site is completed: ``tables`` (the
# pipeline: copy, replace, swap), then ``media`` (its uploads).  A site's ``phases_done`` lists those done in its
# current attempt, so that a resume of a site that failed (or was killed) in a later part does only what is left.
SITE_PHASES = ("tables", "media")
# Shown instead of ``running`` when the run that holds the migration is gone (derived, never stored).
INTERRUPTED = "interrupted"

ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SECRET_KEY_RE = re.compile(r"pass(word|wd)|secret", re.IGNORECASE)
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

MAX_ERROR_CHARS = 4000
MAX_RESULT_CHARS = 4096
SITE_INFO_KEYS = ("bytes", "large", "domain", "path")
STATE_KEYS = ("source_env", "target_env", "status", "started", "updated", "options", "sites", "site_order",
              "network_tables", "consecutive_failures")


# --- times ------------------------------------------------------------------------------------

def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(moment):
    """ISO 8601 UTC with milliseconds: sortable as text, precise enough for site durations."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{1,6})Z\Z")


def parse_time(text):
    """The moment ``format_time`` wrote (ValueError for anything else).  Not ``strptime``: every Ansible task runs
    in a fresh worker process, and strptime's first call there imports and compiles its patterns (2 ms a task)."""
    found = _TIME_RE.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError("time data %r is not of the form 2026-11-24T02:52:54.990Z" % (text,))
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    return datetime.datetime(year, month, day, hour, minute, second, int(found[7].ljust(6, "0")),
                             tzinfo=datetime.timezone.utc)


def seconds_between(start_text, end_text):
    return round((parse_time(end_text) - parse_time(start_text)).total_seconds(), 3)


def short_time(text):
    """``2026-11-24 02:52:55`` for people (UTC, to the second)."""
    return text[:19].replace("T", " ") if text else "-"


# --- input ------------------------------------------------------------------------------------

def check_env_name(name, what):
    if not isinstance(name, str) or not ENV_NAME_RE.match(name):
        raise StateError("invalid %s %r: use letters, digits, '.', '_' or '-' (at most 64)" % (what, name))
    return name


def site_id_of(value):
    """A site id given by a caller (``tables.validate_site_id``), refused as a StateError."""
    try:
        return validate_site_id(value)
    except ConfigError as exc:
        raise StateError(str(exc)) from None


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


def without_secrets(value, mask_text=False):
    """A copy of ``value`` without mapping keys that name a password or secret, at any depth.

    With ``mask_text`` its strings also go through ``errors.redact`` (for results, whose text may quote an error).
    """
    if isinstance(value, dict):
        return {key: without_secrets(item, mask_text) for key, item in value.items()
                if not SECRET_KEY_RE.search(str(key))}
    if isinstance(value, (list, tuple)):
        return [without_secrets(item, mask_text) for item in value]
    if mask_text and isinstance(value, str):
        return redact(value)
    return value


def shorten(text, limit=MAX_ERROR_CHARS):
    """Keep the head and the tail of a long message: the cause is at one end or the other."""
    if text is None or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head - 40
    return "%s … [%d characters cut] … %s" % (text[:head], len(text) - head - tail, text[-tail:])


def compact_result(details):
    """What a record keeps of a step's ``details``: all of it when small, else its scalars; never a secret."""
    if not details:
        return None
    clean = without_secrets(details, mask_text=True)
    if len(json.dumps(clean, default=str)) <= MAX_RESULT_CHARS:
        return clean
    scalars = {key: value for key, value in clean.items()
               if isinstance(value, (str, int, float, bool)) or value is None}
    scalars = {key: shorten(value, 500) if isinstance(value, str) else value for key, value in scalars.items()}
    scalars["truncated"] = True
    return scalars


def site_records(sites, site_info):
    """The ``sites`` mapping and ``site_order`` of a new migration, from ids and/or discovery's site list.

    ``site_info`` is the ``sites`` list of ``wfu_sites_info`` (mappings with an ``id``) or a mapping of site
    id to such a mapping; of each entry only bytes, large, domain and path are kept.  The order is
    ``sites``, else site_info's.
    """
    info, info_order = _normalize_site_info(site_info)
    order = [site_id_of(site_id) for site_id in (sites if sites else info_order)]
    if len(set(order)) != len(order):
        raise StateError("the site list names some sites twice")
    records = {str(site_id): dict(new_record(), **info.get(site_id, {})) for site_id in order}
    return records, order


def _normalize_site_info(site_info):
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
        site_id = site_id_of(raw_id)
        if not isinstance(entry, dict):
            raise StateError("site_info for site %s must be a mapping" % site_id)
        info[site_id] = {key: entry[key] for key in SITE_INFO_KEYS if key in entry}
        order.append(site_id)
    return info, order


# --- records ----------------------------------------------------------------------------------

def new_record(status="pending"):
    return {"status": status, "attempts": 0, "started": None, "finished": None, "duration": None,
            "error": None, "phase": None}


def apply_step(record, status, now, error=None, phase=None, failure_class=None, details=None, phase_done=None):
    """Record one status change of a site (or of the network tables) in its record.

    ``phase_done`` (one of ``SITE_PHASES``, with status ``in_progress`` on a site in progress) records that part
    of the site as done, its ``details`` merged into the result, without starting a new attempt.  A new attempt
    keeps the parts done before; completing the site forgets them (migrating it again does it all).
    """
    was_running = record["status"] == "in_progress"
    if phase_done is not None:
        if status != "in_progress" or not was_running:
            raise StateError("phase_done is recorded on a site in progress, with status in_progress; this site "
                             "is %s" % record["status"])
        if phase_done not in SITE_PHASES:
            raise StateError("phase_done must be one of %s, not %r" % (", ".join(SITE_PHASES), phase_done))
        done = [name for name in record.get("phases_done") or [] if name != phase_done] + [phase_done]
        record["phases_done"] = [name for name in SITE_PHASES if name in done]
        record["phase"] = phase or record.get("phase")
        record["result"] = compact_result(dict(record.get("result") or {}, **(details or {})))
        return
    # What the parts done before recorded stays (their numbers, the site's url) under what a later step adds.
    kept = record.get("result") if record.get("phases_done") else None
    if status == "in_progress":
        record.update(status=status, attempts=record.get("attempts", 0) + 1, started=now, finished=None,
                      duration=None, error=None, phase=phase, failure_class=None, result=kept)
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
    record["result"] = compact_result(dict(kept, **(details or {}))) if kept else compact_result(details)
    if status in ("completed", "skipped"):
        # Only an unfinished site has parts done; a completed one migrated again starts afresh.
        record.pop("phases_done", None)


# --- validation -------------------------------------------------------------------------------

class BadField(Exception):
    """One field of a state that does not have the contract's shape: where it is and what is wrong."""

    def __init__(self, field, problem, site=None):
        super().__init__(problem)
        self.field = field
        self.problem = problem
        self.site = site

    def where(self):
        if self.site is None:
            return "field %s" % self.field
        return "site %s, field %s" % (self.site, self.field)


def check_state(state):
    """Raise ``BadField`` for the first part of ``state`` (a parsed state.json) that is not the contract's shape."""
    if not isinstance(state, dict):
        raise BadField("(top level)", "it is a %s, not a mapping" % type(state).__name__)
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise BadField(", ".join(missing), "missing")
    _check_choice(state["status"], MIGRATION_STATUSES, "status")
    for key in ("started", "updated"):
        _check_time(state[key], key, allow_none=False)
    _check_time(state.get("finished"), "finished")
    if not isinstance(state["options"], dict):
        raise BadField("options", "it is a %s, not a mapping" % type(state["options"]).__name__)
    _check_count(state["consecutive_failures"], "consecutive_failures")
    _check_record(state["network_tables"], NETWORK_STATUSES, site=None, field_prefix="network_tables.")
    sites, order = state["sites"], state["site_order"]
    if not isinstance(sites, dict):
        raise BadField("sites", "it is a %s, not a mapping of site id to record" % type(sites).__name__)
    if not isinstance(order, list):
        raise BadField("site_order", "it is a %s, not a list of site ids" % type(order).__name__)
    for site_key, record in sites.items():
        if not _is_site_key(site_key):
            raise BadField("sites", "the key %r is not a site id (a positive whole number written in digits)"
                           % (site_key,), site=site_key)
        _check_record(record, SITE_STATUSES, site=site_key)
    if len(order) != len(sites) or {str(site_id) for site_id in order} != sites.keys() or not all(
            isinstance(site_id, int) and not isinstance(site_id, bool) for site_id in order):
        raise BadField("site_order", "it does not list the same sites as 'sites', each once, as numbers")


def _is_site_key(key):
    try:
        return str(validate_site_id(key)) == key
    except ConfigError:
        return False


def _check_record(record, statuses, site, field_prefix=""):
    if not isinstance(record, dict):
        raise BadField(field_prefix.rstrip(".") or "record", "it is a %s, not a mapping" % type(record).__name__,
                       site=site)
    _check_choice(record.get("status"), statuses, field_prefix + "status", site)
    _check_count(record.get("attempts", 0), field_prefix + "attempts", site)
    for key in ("started", "finished"):
        _check_time(record.get(key), field_prefix + key, site=site)
    duration = record.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0):
        raise BadField(field_prefix + "duration", "%r is not a number of seconds" % (duration,), site)
    for key in ("error", "phase"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise BadField(field_prefix + key, "%r is not text" % (record[key],), site)
    if record.get("failure_class") is not None:
        _check_choice(record["failure_class"], FAILURE_CLASSES, field_prefix + "failure_class", site)
    done = record.get("phases_done")
    if done is not None and (not isinstance(done, list) or any(name not in SITE_PHASES for name in done)):
        raise BadField(field_prefix + "phases_done", "%r is not a list of %s" % (done, ", ".join(SITE_PHASES)), site)


def _check_choice(value, choices, field, site=None):
    if value not in choices:
        raise BadField(field, "%r is not one of %s" % (value, ", ".join(choices)), site)


def _check_count(value, field, site=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadField(field, "%r is not a count (a whole number, 0 or more)" % (value,), site)


def _check_time(value, field, site=None, allow_none=True):
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not TIME_RE.match(value):
        raise BadField(field, "%r is not a UTC time like 2026-11-24T02:52:55.120Z" % (value,), site)
