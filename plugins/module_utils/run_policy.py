# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run policy: which sites a run takes, whether a failure stops it, and how it ends.

Every decision the role makes between two sites is taken here, from the migration's state (the summary the
state store returns: counters, ``consecutive_failures``, ``sites_by_status``, ``site_order``, ``large_sites``,
``network_tables``) and the run's effective options.  The functions are pure: they read what they are given and
return a decision, so any worker that holds the state can ask them, and tests can ask them without a database.

Decisions (``Decision.action``):

* ``continue`` - go on with the next site;
* ``check_health`` - test every database now, then ask ``after_health_check``;
* ``ask`` - every database answers but failures piled up and someone can answer a prompt;
* ``stop`` - no new site is started; ``status`` (aborted, paused, failed) and ``reason`` say why.
"""

from __future__ import annotations

import dataclasses

SYSTEMIC = "systemic"
FAILED_STATUSES = ("failed", "timeout")
RESUME_COMMAND = "ansible-playbook wfu.multisite.env_migrate -e resume=%s"


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str
    reason: str = ""
    status: str | None = None
    trigger: str | None = None

    def as_dict(self):
        return {"action": self.action, "reason": self.reason, "status": self.status, "trigger": self.trigger,
                "stop": self.action == "stop"}


# -- the queue ------------------------------------------------------------------------------------------------------

def plan_run(migration, options, run_filters=None):
    """The sites this run migrates, in order, and what it does before them.

    ``run_filters`` are include_sites/exclude_sites given to this run: on a new migration they already chose
    the migration's sites; on resume they narrow this run's queue (sites left out stay as they are).
    Returns a mapping: ``queue`` (site ids in order), ``large`` (the large ones among all sites),
    ``skip_large`` (pending large sites to mark skipped), ``run_network`` (bool), ``limits`` (seconds per queued
    site), ``left_out`` (queued sites removed by this run's filters) and ``phases_done`` (queued sites whose
    tables, or tables and media, an earlier attempt finished: only the rest is done again).
    """
    by_status = migration.get("sites_by_status") or {}
    phases_done = migration.get("phases_done") or {}
    order = [int(site_id) for site_id in migration.get("site_order") or []]
    large = set(int(site_id) for site_id in migration.get("large_sites") or [])
    large.update(options.get("large_sites") or [])
    network_tables = str(options.get("network_tables", "true")).lower()
    run_filters = run_filters or {}

    wanted = set(by_status.get("pending") or []) | set(by_status.get("in_progress") or [])
    if options.get("retry_failed", True) and not options.get("exclude_failed", False):
        for status in FAILED_STATUSES:
            wanted.update(by_status.get(status) or [])
    if not options.get("skip_completed", True):
        wanted.update(by_status.get("completed") or [])

    include = run_filters.get("include_sites")
    unknown = sorted(set(include or []) - set(order))
    if unknown:
        raise ValueError("include_sites names site(s) %s, which migration %s does not have; start a new migration "
                         "for them" % (", ".join(str(site_id) for site_id in unknown), migration.get("id")))
    exclude = set(run_filters.get("exclude_sites") or [])

    queue, left_out, skip_large = [], [], []
    for site_id in order:
        if site_id not in wanted:
            continue
        if (include is not None and site_id not in include) or site_id in exclude:
            left_out.append(site_id)
            continue
        if site_id in large and options.get("skip_large_sites", False):
            if site_id in (by_status.get("pending") or []):
                skip_large.append(site_id)
            continue
        queue.append(site_id)
    if network_tables == "only":
        queue = []
    if options.get("defer_large_sites", True):
        queue = ([site_id for site_id in queue if site_id not in large]
                 + [site_id for site_id in queue if site_id in large])
    network_status = (migration.get("network_tables") or {}).get("status", "pending")
    return {
        "queue": queue,
        "large": sorted(large),
        "skip_large": skip_large,
        "left_out": left_out,
        "run_network": network_tables in ("true", "only") and network_status != "completed",
        "limits": {str(site_id): site_limit(site_id, large, options) for site_id in queue},
        # Queued sites with parts already done in an earlier attempt: the role skips those parts.
        "phases_done": {str(site_id): list(phases_done[str(site_id)]) for site_id in queue
                        if phases_done.get(str(site_id))},
    }


def site_limit(site_id, large, options):
    """Seconds site ``site_id`` may take: site_timeout, times large_site_timeout_factor for a large site."""
    seconds = int(options.get("site_timeout", 3600))
    if site_id in large:
        seconds *= int(options.get("large_site_timeout_factor", 3))
    return seconds


def check_intervals(options):
    """The site counts of the periodic checks that are on: ``health_check_interval``, ``connection_test_interval``."""
    intervals = (int(options.get(name) or 0) for name in ("health_check_interval", "connection_test_interval"))
    return [every for every in intervals if every > 0]


def health_check_due(index, options):
    """Whether the periodic health or connection check runs before the site at ``index`` (0-based) of the queue."""
    return index > 0 and any(index % every == 0 for every in check_intervals(options))


def periodic_check_due(ended, last, options):
    """Whether a worker's periodic check is due: another interval's worth of sites has ended (``ended``, over the
    whole migration) since the last check (at ``last`` ended sites)."""
    return any(ended // every > last // every for every in check_intervals(options))


# -- failures -------------------------------------------------------------------------------------------------------

def after_failure(migration, options, failure_class=None, status="failed"):
    """What the run does after a site failed, from the state *after* the failure was recorded.

    A systemic failure (connection, authentication, disk full, a server that does not answer) stops the run
    at once, after one health check that names the failing database.  A task timeout without a class is
    judged by a health check too: a hung server looks exactly like that.  Otherwise the totals decide.
    """
    counters = migration.get("counters") or {}
    failed = int(counters.get("failed", 0)) + int(counters.get("timeout", 0))
    total = int(counters.get("total", 0))
    percentage = int(options.get("max_fail_percentage") or 0)
    if percentage > 0 and failed * 100 > percentage * total:
        reason = "%d of %d sites failed, more than max_fail_percentage (%d%%)" % (failed, total, percentage)
        return Decision("stop", status="aborted", trigger="percentage", reason=reason)
    if failure_class == SYSTEMIC:
        return Decision("check_health", trigger="systemic", reason="a systemic failure")
    if status == "timeout" and not failure_class:
        return Decision("check_health", trigger="timeout", reason="a site timed out")
    limit = int(options.get("max_consecutive_failures") or 0)
    consecutive = int(migration.get("consecutive_failures") or 0)
    if limit > 0 and consecutive >= limit:
        return Decision("check_health", trigger="consecutive", reason="%d failures in a row" % consecutive)
    return Decision("continue")


def after_health_check(health, trigger, options, interactive, last_error="", answer=None, consecutive=0):
    """The decision once every database was tested.

    ``health`` maps each database's label (``the target database of uat (127.0.0.1:3307)``) to
    ``{"ok": bool, "msg": str}``.  ``trigger`` is what ``after_failure`` (or the periodic check) asked for.
    ``answer`` is the operator's reply to a prompt (``c``, ``p``, anything else) when one was asked.
    """
    sick = ["%s does not answer: %s." % (label, sentence(result.get("msg") or "no reply"))
            for label, result in sorted(health.items()) if not result.get("ok")]
    if sick:
        reason = "Systemic failure (%s): %s Fix it, then resume." % (_trigger_text(trigger, consecutive),
                                                                     " ".join(sick))
        return Decision("stop", status="aborted", trigger=trigger, reason=reason)
    if trigger == "periodic":
        return Decision("continue")
    if trigger == "systemic":
        return Decision("stop", status="aborted", trigger=trigger,
                        reason="Systemic failure: %s. Every database answers, so the cause is elsewhere (disk space, "
                               "privileges, a client program); fix it, then resume." % sentence(last_error, 300))
    if trigger == "timeout":
        return Decision("continue", trigger=trigger)
    # consecutive failures while every database answers
    base = "%d consecutive failures while every database answers (the last: %s)" % (
        consecutive, sentence(last_error, 300))
    if not options.get("pause_on_failure"):
        return Decision("stop", status="aborted", trigger=trigger, reason=base + "; aborted (pause_on_failure is off)")
    if not interactive:
        return Decision("stop", status="paused", trigger=trigger,
                        reason=base + "; paused, since nobody can answer a prompt in this run")
    if answer is None:
        return Decision("ask", trigger=trigger, reason=base)
    reply = str(answer).strip().lower()
    if reply == "c":
        return Decision("continue", trigger=trigger)
    if reply == "p":
        return Decision("stop", status="paused", trigger=trigger, reason=base + "; paused by the operator")
    return Decision("stop", status="aborted", trigger=trigger, reason=base + "; aborted by the operator")


def final_status(migration, stop_status=None):
    """How the migration ends after this run: the stop's status, else failed/paused/completed from the counters."""
    if stop_status:
        return stop_status
    counters = migration.get("counters") or {}
    if (migration.get("network_tables") or {}).get("status") == "failed":
        return "failed"
    if int(counters.get("failed", 0)) + int(counters.get("timeout", 0)) > 0:
        return "failed"
    if int(counters.get("pending", 0)) + int(counters.get("in_progress", 0)) > 0:
        return "paused"
    return "completed"


def _trigger_text(trigger, consecutive):
    return {"systemic": "after a systemic failure", "timeout": "after a site timed out",
            "periodic": "periodic check", "consecutive": "%d failures in a row" % consecutive,
            "start": "before the run"}.get(trigger, trigger or "health check")


def sentence(text, limit=500):
    """``text`` on one line, without its closing full stop, at most ``limit`` characters."""
    text = " ".join(str(text or "").split()).rstrip(". ")
    return text if len(text) <= limit else text[:limit - 3] + "..."
