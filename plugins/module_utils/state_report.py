# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Views of a migration's state: counters, progress and ETA, the summary a task returns, the texts people read.

Everything here reads a state (a ``state.json`` mapping) and returns new values; nothing is written.
Whether the migration's run is still alive is judged by the caller (``run_lock.liveness``) and handed
in, so the views are the same whichever backend stores the state.
"""

from __future__ import annotations

import json

from ansible_collections.wfu.multisite.plugins.module_utils.processes import DEAD
from ansible_collections.wfu.multisite.plugins.module_utils.run_lock import describe_holder
from ansible_collections.wfu.multisite.plugins.module_utils.state_records import (
    DONE_STATUSES, FAILED_STATUSES, INTERRUPTED, SITE_STATUSES, parse_time, short_time)

RESUME_COMMAND = "ansible-playbook wfu.multisite.env_migrate -e resume=%s"


def count_sites(state):
    counters = {status: 0 for status in SITE_STATUSES}
    for record in state["sites"].values():
        counters[record["status"]] += 1
    counters["total"] = len(state["sites"])
    return counters


def effective_status(state, liveness):
    """The stored status, or ``interrupted`` when it says running but the run that holds it is gone."""
    if state["status"] == "running" and liveness == DEAD:
        return INTERRUPTED
    return state["status"]


def outcome_lists(state):
    """The contents of completed.json (ids) and failed.json (failed and timed-out records), in migration order."""
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


def summary(state, paths, state_dir, moment, holder):
    """The compact view a task returns as ``migration``.

    ``holder`` is the state's recorded holder with its ``liveness`` (see ``run_lock.liveness``), or None.
    """
    by_status = {status: [] for status in SITE_STATUSES}
    counters = count_sites(state)
    large = []
    # The parts already done of sites not completed (see state_records.SITE_PHASES): a resume does the rest.
    phases_done = {}
    for site_id in state["site_order"]:
        record = state["sites"][str(site_id)]
        by_status[record["status"]].append(site_id)
        if record.get("large"):
            large.append(site_id)
        if record.get("phases_done") and record["status"] != "completed":
            phases_done[str(site_id)] = list(record["phases_done"])
    return {
        "id": state["id"],
        "source_env": state["source_env"],
        "target_env": state["target_env"],
        "status": state["status"],
        "effective_status": effective_status(state, (holder or {}).get("liveness")),
        "reason": state.get("reason"),
        "started": state["started"],
        "updated": state["updated"],
        "finished": state.get("finished"),
        "holder": holder,
        "options": state["options"],
        "network_tables": state["network_tables"],
        "consecutive_failures": state["consecutive_failures"],
        # Set once the run policy stopped the run: {status, reason, at, by}; no worker claims a new site after it.
        "stopping": state.get("stopping"),
        "health_check": state.get("health_check"),
        "counters": counters,
        "progress": progress(state, counters, moment),
        "site_order": list(state["site_order"]),
        "sites_by_status": by_status,
        "rollbacks": list(state.get("rollbacks") or []),
        "phases_done": phases_done,
        "large_sites": large,
        "resumable": state["status"] != "completed",
        "resume_command": RESUME_COMMAND % state["id"],
        "state_dir": state_dir,
        "paths": paths,
    }


def describe_step(record):
    """One log line for a status change of a site or of the network tables (the error on an indented line)."""
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


def list_row(entry, state=None, error=None, liveness=None):
    """One migration in ``list``: its index entry, and what its state says (or why it cannot be read)."""
    row = dict(entry, pair=None, effective_status=entry.get("status"), progress=None, completed=None, total=None,
               failures=None, resumable=False, error=error)
    if state is not None:
        counters = count_sites(state)
        row.update(completed=counters["completed"], total=counters["total"],
                   failures=counters["failed"] + counters["timeout"], resumable=state["status"] != "completed",
                   effective_status=effective_status(state, liveness),
                   progress="%d/%d" % (counters["completed"], counters["total"]))
    if row.get("source_env"):
        row["pair"] = "%s -> %s" % (row["source_env"], row["target_env"])
    return row


def format_table(rows):
    """The migrations as a fixed-width text table, one line per migration."""
    header = ("ID", "PAIR", "STATUS", "PROGRESS", "FAILED", "STARTED (UTC)", "UPDATED (UTC)", "RESUMABLE")
    lines = [header]
    for row in rows:
        lines.append((row["id"], row["pair"] or "?", row["effective_status"] or "unreadable", row["progress"] or "-",
                      "-" if row["failures"] is None else str(row["failures"]), short_time(row.get("started")),
                      short_time(row.get("updated")), "yes" if row["resumable"] else "no"))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]


def media_totals(state):
    """What the sites' media syncs recorded, summed (``{sites, copied, bytes, deleted}``); None when none did."""
    totals = {"sites": 0, "copied": 0, "bytes": 0, "deleted": 0}
    for site_id in state["site_order"]:
        result = state["sites"][str(site_id)].get("result") or {}
        if "media_copied" not in result:
            continue
        totals["sites"] += 1
        for key, field in (("copied", "media_copied"), ("bytes", "media_bytes"), ("deleted", "media_deleted")):
            try:
                totals[key] += int(result.get(field) or 0)
            except (TypeError, ValueError):
                continue
    return totals if totals["sites"] else None


def describe_rollback(rollback, with_error=False):
    """``sites 20, 2 and the network tables; not rolled back: sites 3`` for one entry of a state's ``rollbacks``."""
    put_back = ", ".join(str(site_id) for site_id in rollback.get("sites") or [])
    text = ("sites " + put_back) if put_back else "no site"
    if rollback.get("network_tables"):
        text += " and the network tables"
    if rollback.get("failed_sites"):
        text += "; not rolled back: sites %s" % ", ".join(str(site_id) for site_id in rollback["failed_sites"])
        if with_error:
            text += " (%s)" % (rollback.get("error") or "failed")
    return text


def format_report(migration, failed_sites, durations, media=None):
    """``status``'s report: what the migration is, how far it got, what failed, how to go on."""
    counters = migration["counters"]
    reason = " (%s)" % migration["reason"] if migration["reason"] else ""
    finished = ", finished %s UTC" % short_time(migration["finished"]) if migration["finished"] else ""
    lines = [
        "Migration %s (%s -> %s): %s%s" % (migration["id"], migration["source_env"], migration["target_env"],
                                           migration["effective_status"], reason),
        "Started %s UTC, updated %s UTC%s" % (short_time(migration["started"]), short_time(migration["updated"]),
                                              finished),
    ]
    holder = migration.get("holder")
    if migration["effective_status"] == INTERRUPTED:
        lines.append("Its run (%s) is gone: it stopped while the migration was running (killed, Ctrl-C or "
                     "SIGTERM)." % describe_holder(holder))
    elif migration["status"] == "running" and holder:
        lines.append("Run by %s%s" % (describe_holder(holder), {
            "unknown": " (another host or container: it cannot be checked from here)",
            "self": " (this run)"}.get(holder.get("liveness"), "")))
    lines += [
        "Sites: %d total, %d completed, %d failed, %d timed out, %d skipped, %d pending, %d in progress"
        % (counters["total"], counters["completed"], counters["failed"], counters["timeout"], counters["skipped"],
           counters["pending"], counters["in_progress"]),
        "Network tables: %s" % migration["network_tables"].get("status"),
    ]
    if durations["count"]:
        lines.append("Durations: %.1f s over %d sites, average %.1f s, longest site %d (%.1f s)"
                     % (durations["total"], durations["count"], durations["average"],
                        durations["slowest"][0]["id"], durations["slowest"][0]["duration"]))
    if media:
        lines.append("Media: %d objects (%d bytes) copied and %d deleted for %d sites"
                     % (media["copied"], media["bytes"], media["deleted"], media["sites"]))
    for rollback in migration.get("rollbacks") or []:
        lines.append("Rolled back %s UTC: %s" % (short_time(rollback.get("at")), describe_rollback(rollback)))
    if failed_sites:
        lines.append("Failed sites:")
        for site in failed_sites:
            first_line = (site.get("error") or "").splitlines()[0] if site.get("error") else ""
            lines.append("  site %d: %s in phase %s (%s, %d attempts): %s"
                         % (site["id"], site["status"], site.get("phase") or "?", site.get("failure_class") or "?",
                            site.get("attempts") or 0, first_line))
    if migration["resumable"]:
        lines.append("Resume: %s" % migration["resume_command"])
    lines.append("State: %s; logs: %s" % (migration["paths"]["state"], migration["paths"]["logs"]))
    return lines
