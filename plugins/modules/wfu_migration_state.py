#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_migration_state
short_description: Create, resume, update, finish, list and lock the state of a multisite migration
version_added: 0.1.0
description:
  - Keeps the state of an environment migration under O(state_dir) so that a run cut short (failure, timeout,
    killed process, Ctrl-C) can be resumed without repeating finished work.
  - "Layout: C(index.json) (every migration), C(<id>/state.json) (the whole state; C(state.json.bak) is the version
    before the last write), C(<id>/options.json), C(<id>/completed.json), C(<id>/failed.json),
    C(<id>/logs/site-<N>.log) and C(locks/<target_env>.lock)."
  - Every file is replaced atomically (temporary file in the same directory, fsync, rename, fsync of the directory)
    with mode 0600; directories are created 0700.
  - A damaged or foreign C(state.json) (invalid JSON, no or a newer C(schema_version), another migration's id) stops
    the task with a message naming the file and, for invalid JSON, the byte position; nothing is changed or reset.
  - "An action plugin of the same name does the work inside the controller's ansible-playbook process when the task
    runs on the controller (local connection, for example C(delegate_to: localhost)) without C(become); otherwise
    the module runs on the target host."
  - "Locks: O(action=lock) creates C(locks/<target_env>.lock) exclusively, recording its holder - the
    ansible-playbook process of the run (pid, host, process start time, boot id, pid namespace), O(awx_job_id) and
    O(awx_workflow_job_id) when given, the migration id and since when. Without O(force), a lock is taken over or
    removed only when its holder is this run or provably gone (its process ended, its pid now belongs to another
    process, or the host rebooted since); a live holder, a holder on another host or container (nothing here can
    check it) and an unreadable lock file are refused with the holder's name. O(force=true) takes over or removes
    any lock and warns what it overrode (the holder and whether it was alive)."
  - "State in the database: with O(state_backend=database) the same state lives in tables of O(state_db) -
    C(wfu_state_meta) (the tables' schema_version; a foreign or newer one is refused, never reset),
    C(wfu_state_migrations) (one row per migration - the index columns, the state, the options), C(wfu_state_logs)
    (the log lines), C(wfu_state_runs), C(wfu_state_locks) and C(wfu_state_claims). Every action writes in one
    transaction. Every controller, container or AWX job that reaches the database sees the same migrations."
  - "Locks and claims on the database: the first V(lock) or V(claim) of a run starts its keeper, a small process
    in the run's process group that holds a server-side C(GET_LOCK) on one connection and renews a lease every
    second, and ends with the ansible-playbook process. A lock or claim is alive while its keeper's server lock is
    held and its lease (O(state_lease_seconds)) runs; once the holder is killed (its connection closes) or its lease
    has run out (a container that vanished), the next run takes it without any unlock. Slices of one AWX workflow
    job (same O(awx_workflow_job_id)) share the run lock; claims stay per site."
  - "A state records its holder too (the same identity), whenever a run creates or loads it. A migration whose
    status is C(running) while its holder is gone (the run was killed, or stopped by Ctrl-C or SIGTERM) is shown by
    V(status) and V(list) as C(interrupted) (RV(migration.effective_status)); the file is not rewritten for it."
author:
  - WFU Web Platform Team (@wfu)
options:
  action:
    description:
      - V(create) starts a migration from O(source_env) to O(target_env) with id
        C(<source>-to-<target>-<UTC YYYY-MM-DDTHH-MM-SS>) (a C(-2), C(-3)... suffix when that id exists), status
        C(running). O(options), O(sites), O(site_info) and O(network_tables) are recorded.
      - V(load) resumes O(migration_id) (an id or V(latest), the newest migration not completed, an interrupted
        one included, limited to O(source_env)/O(target_env) when given). Saved options are the base and O(options)
        override them; the status goes back to C(running) (a completed migration stays completed); sites found
        C(in_progress) are set back to C(pending) (attempts kept) and returned in RV(interrupted); this run becomes
        the holder. A C(running) migration whose holder is alive is refused unless O(force=true).
      - V(site) records a status change of one site (O(site_id), O(status), O(error), O(phase), O(failure_class),
        O(details)) and appends it to C(logs/site-<N>.log).
      - V(network) records a status change of the network tables.
      - V(finish) sets the final O(status) and O(reason), and releases the target's lock if this migration holds it.
      - V(list) returns every migration with its progress, and a text table.
      - V(status) returns one migration in detail (O(migration_id), default V(latest), which here is the newest
        migration whatever its status).
      - V(lock) takes the lock O(target_env) (a target environment, or any lock name such as the migration
        database's) for this playbook run; V(unlock) releases it.
      - V(validate) checks a run's settings before anything is locked or written - O(environments),
        O(migration_db), the O(source_env)/O(target_env) pair (or, with O(migration_id), the migration to resume and
        whether it can go on) and the run O(options) - and returns them normalized (RV(options), RV(effective),
        RV(filters)). Nothing is written. With O(purpose=cleanup) only the settings and O(target_env) are checked.
      - V(plan) returns the sites this run migrates, in order (RV(queue)), from the migration (O(migration), or
        the stored state of O(migration_id)), the run O(options) and this run's O(filters).
      - V(decide) returns the run policy's RV(decision) after a health check (O(health), O(trigger)), with the
        operator's O(answer) when a prompt was asked. Unless the decision is V(ask), it is recorded in the state
        (C(health_check)) for the workers waiting for it, and a stop is recorded as the run's C(stopping).
      - V(conclude) finishes the migration with the status the run policy gives - O(stop_status) when the run was
        stopped, else the C(stopping) a worker of the run recorded, else failed, paused or completed from the
        counters - and O(reason). Not while another run still works on it (a site claimed by a live run, or
        another live job that shares the run lock, such as a slice); it waits up to O(conclude_wait) seconds for
        them to end, then fails naming them, and nothing is closed or released.
      - With O(status=failed) or O(status=timeout), V(site) also returns the run policy's RV(decision), for the
        whole run - the counters are the migration's, whichever worker failed. A stop is recorded in the state as
        C(stopping) (status, reason; the first one stands), after which no worker claims a new site. A health check
        is run by one worker - the first that asks gets V(check_health); while it runs, the others get
        V(wait_health) and follow the verdict V(decide) records.
      - V(claim) claims O(site_id) of O(migration_id) for this run, atomically - of any number of runs claiming one
        site at once exactly one wins. RV(claimed) says whether this run holds it; a claim of a live run is refused
        (RV(claim_refused) names it, the task does not fail); one whose run is gone is taken over with
        RV(dead_holder) true (clean the site and redo it). On V(files) a claim is C(<id>/claims/site-<N>.lock),
        judged by pid and host - it holds between processes of one machine only.
      - V(release) releases this run's claim of O(site_id) (a gone run's too; anyone's with O(force)). Recording a
        site V(completed), V(failed), V(timeout) or V(skipped) releases this run's claim of it, or a gone run's.
      - V(rollback) records a rollback of O(migration_id) (by C(wfu.multisite.migration_rollback)) - the O(sites)
        put back, O(network_tables) when the network tables were, the O(failed_sites) and the O(error) - in the
        state's C(rollbacks) and in C(logs/rollback.log); each site put back gets C(rolled_back) (the time) in its
        record, whose status stays.
    type: str
    required: true
    choices: [create, load, site, network, finish, list, status, lock, unlock, rollback, claim, release, validate,
              plan, decide, conclude]
  state_dir:
    description: Directory of the migration states (C(wfu_state_dir)) for O(state_backend=files).
    type: path
    default: ~/.wfuwp/migrations
  state_backend:
    description:
      - Where the state lives (C(wfu_state_backend)) - V(files) under O(state_dir), or V(database) in tables of
        O(state_db).
    type: str
    choices: [files, database]
    default: files
  state_lease_seconds:
    description:
      - With O(state_backend=database), how long the lease of a run's locks and claims lasts without renewal (its
        keeper renews it every second). A holder whose lease has run out is gone even though the server still sees
        its connection (a container that vanished). At least 5.
    type: int
    default: 30
  migration_id:
    description:
      - The migration, for O(action=load), O(action=site), O(action=network), O(action=finish) and
        O(action=status); V(latest) is accepted by O(action=load) and O(action=status).
      - With O(action=lock) it names the migration in the lock; with O(action=unlock) this run's lock is released
        only when it names this migration (or none).
    type: str
  source_env:
    description:
      - The source environment, required by O(action=create).
      - With O(action=load) and O(action=status) it narrows V(latest) and must match the migration.
    type: str
  target_env:
    description:
      - The target environment, required by O(action=create); the name of the lock for O(action=lock) and
        O(action=unlock).
      - With O(action=load) and O(action=status) it narrows V(latest) and must match the migration.
    type: str
  options:
    description:
      - The playbook options of the run (O(action=create)), saved to C(options.json); or, with O(action=load),
        the options that override the saved ones (keys whose value is null are ignored).
      - Keys that name a password or secret are left out at any depth.
    type: dict
  sites:
    description:
      - Site ids in migration order (O(action=create)).
      - The sites put back (O(action=rollback)).
    type: list
    elements: int
  failed_sites:
    description: The sites a rollback did not put back (O(action=rollback)).
    type: list
    elements: int
  site_info:
    description:
      - Details of the sites (O(action=create)) - the RV(wfu.multisite.wfu_sites_info#module:sites) list returned by
        M(wfu.multisite.wfu_sites_info) (mappings with C(id)), or a mapping of site id to a mapping.
      - The keys C(bytes), C(large), C(domain) and C(path) are kept in each site's record; others are ignored.
      - Without O(sites), the order of a list gives the migration order.
    type: raw
  network_tables:
    description:
      - Whether the network tables are migrated - V(true), V(false) or V(only) (O(action=create)). When not given,
        C(options.network_tables) decides, else V(true). V(false) marks them C(skipped).
      - Whether a rollback put the network tables back (O(action=rollback)).
    type: raw
  site_id:
    description: The site whose status changes (O(action=site)), or that is claimed or released (O(action=claim),
      O(action=release)).
    type: int
  status:
    description:
      - O(action=site) - V(in_progress), V(completed), V(failed), V(timeout) or V(skipped).
      - O(action=network) - V(pending), V(in_progress), V(completed), V(failed) or V(skipped).
      - O(action=finish) - V(completed), V(failed), V(aborted) or V(paused).
    type: str
    choices: [aborted, completed, failed, in_progress, paused, pending, skipped, timeout]
  error:
    description:
      - The error of a failed or timed-out site (or network step). Anything that looks like a password
        (C(password=...), credentials in URLs, C(IDENTIFIED BY ...)) is masked; long messages keep their head and tail.
    type: str
  phase:
    description: The phase the site reached or failed in (for example C(copy), C(replace), C(swap), C(verify)).
    type: str
  phase_done:
    description:
      - O(action=site) with O(status=in_progress) - record this part of the site in progress as done, with
        O(details) merged into its C(result), without starting a new attempt. C(tables) is the pipeline (copy,
        replace, swap), C(media) the site's uploads.
      - The record lists them as C(phases_done); a later attempt of the site (a resume after a failure or a killed
        run) keeps them, so the role does only the parts left. Migrating a completed site again starts afresh.
    type: str
    choices: [tables, media]
  failure_class:
    description: Whether a failure is C(systemic) (connection, authentication, disk full...) or specific to the C(site).
    type: str
    choices: [systemic, site]
  details:
    description:
      - Numbers of the step (durations, bytes, rows...), kept compactly as the site record's C(result)
        (only the scalar values when it is larger than 4 KiB).
    type: dict
  reason:
    description: Why the migration finishes with O(status) (O(action=finish)).
    type: str
  force:
    description:
      - O(action=lock) - take over the lock whoever holds it, even a live run; a warning names the holder and
        whether it was alive.
      - O(action=unlock) - remove the lock whoever holds it, with the same warning.
      - O(action=load) - resume even though the migration's recorded holder is alive.
    type: bool
    default: false
  worker:
    description:
      - With O(action=claim), claim for a worker of the run (the env_migrate role's C(sites) entry point) - the
        claim is kept only while the run still wants the site. It is released again, with RV(claimed) false and
        RV(skip_reason), once the run is stopping (RV(stopping)) or when the run policy no longer queues the site
        (completed, skipped, failed with O(options) C(retry_failed) off, left out); a kept claim returns the site's
        RV(plan).
    type: bool
    default: false
  awx_job_id:
    description:
      - The AWX job this run is (C(awx_job_id) of the job's extra variables). Recorded with the holder of a lock
        or a state, and named when another run is refused.
      - Default, when the task runs on the controller - the job variable C(awx_job_id) (or C(tower_job_id)), which
        AWX sets on every job, so that every task of a job is the same run.
    type: str
  awx_workflow_job_id:
    description:
      - The AWX workflow job this run belongs to (C(awx_workflow_job_id)). Recorded like O(awx_job_id), and with
        the same default (C(awx_workflow_job_id) or C(tower_workflow_job_id)).
    type: str
  environments:
    description:
      - With O(action=validate), the run's C(wfu_environments) (checked, never returned).
    type: dict
  migration_db:
    description:
      - With O(action=validate), the run's C(wfu_migration_db) (checked, never returned).
    type: dict
  filters:
    description:
      - With O(action=plan), the C(include_sites)/C(exclude_sites) given to a resumed run; they narrow this run's
        queue only (RV(filters) of V(validate)).
    type: dict
  check_paths:
    description:
      - With O(action=validate), whether C(backup_dir) and C(work_dir) are checked on this machine; false when
        the pipeline runs on another host.
    type: bool
    default: true
  purpose:
    description:
      - With O(action=validate), what the run is - V(run) (a migration, new or resumed) or V(cleanup).
    type: str
    choices: [run, cleanup]
    default: run
  migration:
    description:
      - With O(action=plan), the migration summary to plan from instead of the stored state (check mode, where a
        new migration has no state yet).
    type: dict
  health:
    description:
      - With O(action=decide), the RV(wfu.multisite.wfu_db_health#module:databases) result of a health check.
    type: dict
  trigger:
    description:
      - With O(action=decide), what asked for the health check (the RV(decision) C(trigger) of a failed site, or
        V(periodic)).
    type: str
    choices: [systemic, timeout, consecutive, periodic, start]
  last_error:
    description:
      - With O(action=decide), the last site failure's message, quoted in the reason.
    type: str
  answer:
    description:
      - With O(action=decide), the operator's reply to the continue/pause/abort prompt (V(c), V(p), other aborts).
    type: str
  interactive:
    description:
      - With O(action=decide), whether a prompt can be answered; default - not under AWX (O(awx_job_id)) and the
        ansible-playbook process reads a terminal.
    type: bool
  stop_status:
    description:
      - With O(action=conclude), the status of a run that was stopped (the RV(decision) C(status)).
    type: str
    choices: [aborted, paused, failed]
  conclude_wait:
    description:
      - With O(action=conclude), how many seconds to wait for other live runs of the migration to end (their
        processes' locks go a second or so after them) before refusing to close it.
    type: int
    default: 60
notes:
  - "Site and network updates (O(action=site), O(action=network)) return small results; V(create), V(load),
    V(finish) and V(status) return the summary as RV(migration). No facts are set: register the result."
  - Taking over the lock of a run that is gone does not prove that every module process that run started has
    stopped (Ansible's workers outlive a killed ansible-playbook); the pipeline's own per-site locks on the
    database servers keep such a process and a new run apart.
  - "Run the state tasks on the controller (C(delegate_to: localhost)) - the action plugin then avoids a module
    process per call, and the lock can check the ansible-playbook process that holds it."
  - Resuming a migration that another live run is working on (it holds the target's lock) fails.
seealso:
  - module: wfu.multisite.wfu_site_migrate
  - module: wfu.multisite.wfu_migration_cleanup
extends_documentation_fragment:
  - wfu.multisite.connection.state_db
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Nothing is written; V(create) returns the id it would use.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  facts:
    support: none
  idempotent:
    description: When run twice with the same arguments, the second run reports no change.
    support: partial
    details:
      - V(load), V(network), V(finish), V(conclude), V(list), V(status), V(lock), V(unlock), V(validate), V(plan) and
        V(decide) are idempotent.
      - V(create) starts a new migration each time and V(site) records one more event (an attempt) each time.
"""

EXAMPLES = r"""
- name: Take the lock of the target environment
  wfu.multisite.wfu_migration_state:
    action: lock
    target_env: uat
  delegate_to: localhost

- name: Start a migration from dev to uat
  wfu.multisite.wfu_migration_state:
    action: create
    source_env: dev
    target_env: uat
    options:
      site_timeout: 1800
      max_consecutive_failures: 5
    site_info: "{{ dev_sites.sites }}"
  delegate_to: localhost
  register: migration

- name: Resume the newest unfinished migration into uat, with a longer timeout
  wfu.multisite.wfu_migration_state:
    action: load
    migration_id: latest
    target_env: uat
    options:
      site_timeout: 3600
  delegate_to: localhost

- name: Mark site 43 as failed
  wfu.multisite.wfu_migration_state:
    action: site
    migration_id: "{{ migration.migration_id }}"
    site_id: 43
    status: failed
    phase: copy
    failure_class: site
    error: "Lost connection to server during query"
  delegate_to: localhost
  register: marked

- name: Finish the migration and release the lock
  wfu.multisite.wfu_migration_state:
    action: finish
    migration_id: "{{ migration.migration_id }}"
    status: completed
  delegate_to: localhost

- name: Show every migration
  wfu.multisite.wfu_migration_state:
    action: list
  delegate_to: localhost
  register: migrations

- name: Print the table
  ansible.builtin.debug:
    msg: "{{ migrations.table }}"
"""

RETURN = r"""
migration_id:
  description: The migration the task worked on.
  returned: when the action concerns one migration
  type: str
  sample: dev-to-uat-2026-11-24T02-52-55
migration:
  description: Summary of the migration.
  returned: create, load, finish, status
  type: dict
  contains:
    id:
      description: The migration id.
      type: str
    source_env:
      description: The source environment.
      type: str
    target_env:
      description: The target environment.
      type: str
    status:
      description: C(running), C(paused), C(failed), C(aborted) or C(completed), as stored.
      type: str
    effective_status:
      description: RV(migration.status), or C(interrupted) when it is C(running) but its holder is gone.
      type: str
    holder:
      description:
        - The run that created or last loaded the migration - C(pid), C(host), C(start_time), C(boot_id),
          C(pid_namespace), C(since), C(awx_job_id) and C(awx_workflow_job_id) when given - with C(liveness) seen
          from this run - C(self), C(alive), C(dead) or C(unknown) (another host or container). Null for a state
          written before holders were recorded.
      type: dict
    reason:
      description: The reason given at finish.
      type: str
    stopping:
      description: The stop the run policy recorded for the run that holds the migration (C(status), C(reason),
        C(at), C(by)); null while it is not stopping. A resume clears it.
      type: dict
    health_check:
      description: The last health check a worker ran for a failure (C(status) V(running) or V(done), C(trigger),
        C(started), C(by), C(decision)), or null.
      type: dict
    started:
      description: When the migration was created (UTC, ISO 8601).
      type: str
    updated:
      description: The last write (UTC, ISO 8601).
      type: str
    finished:
      description: When it was last finished (UTC, ISO 8601), null while running.
      type: str
    options:
      description: The options the migration runs with (saved options with the overrides of the last resume).
      type: dict
    network_tables:
      description: The network tables' record (status, attempts, started, finished, duration, error, phase).
      type: dict
    consecutive_failures:
      description: Failed or timed-out sites in a row (reset by a completed site and at resume).
      type: int
    counters:
      description: Sites per status, and C(total).
      type: dict
      sample: {"total": 555, "pending": 488, "in_progress": 0, "completed": 64, "failed": 2, "timeout": 1, "skipped": 0}
    progress:
      description: C(done) (sites no longer pending), C(total), C(percent), C(elapsed_seconds) since creation,
        C(average_site_seconds) of completed sites, C(eta_seconds) for the pending ones.
      type: dict
    site_order:
      description: Every site id in migration order.
      type: list
      elements: int
    sites_by_status:
      description: Site ids per status (pending, in_progress, completed, failed, timeout, skipped), in migration order.
      type: dict
    phases_done:
      description:
        - The parts already done (C(tables), C(media)) of each site that is not completed yet and has some, by site
          id; a resume does only the rest of such a site.
      type: dict
    rollbacks:
      description: The rollbacks recorded by O(action=rollback), oldest first.
      type: list
      elements: dict
    large_sites:
      description: Ids of the sites recorded as large, in migration order.
      type: list
      elements: int
    resumable:
      description: Whether the migration can be resumed (it is not completed).
      type: bool
    resume_command:
      description: The command that resumes it.
      type: str
      sample: ansible-playbook wfu.multisite.env_migrate -e resume=dev-to-uat-2026-11-24T02-52-55
    state_dir:
      description: The state directory.
      type: str
    paths:
      description: Paths of C(dir), C(state), C(options), C(completed), C(failed), C(logs) and C(index).
      type: dict
interrupted:
  description: Sites that were C(in_progress) when the migration was loaded; now C(pending), to be cleaned and redone.
  returned: load
  type: list
  elements: int
network_interrupted:
  description: Whether the network tables were C(in_progress) when loaded (now C(pending)).
  returned: load
  type: bool
options_overridden:
  description: The option names whose saved value O(options) changed.
  returned: load
  type: list
  elements: str
created:
  description: Always true for O(action=create).
  returned: create
  type: bool
site_id:
  description: The site that was updated.
  returned: site
  type: int
site:
  description:
    - The site's record - C(id), C(status), C(attempts), C(started), C(finished), C(duration) (seconds, for an attempt
      that was announced C(in_progress)), C(error), C(phase), C(failure_class), C(result) (compact O(details)), and
      C(bytes)/C(large)/C(domain)/C(path) when recorded.
  returned: site
  type: dict
counters:
  description: Sites per status, and C(total), after the update.
  returned: site
  type: dict
consecutive_failures:
  description: Failed or timed-out sites in a row after the update.
  returned: site
  type: int
progress:
  description: As RV(migration.progress), after the update.
  returned: site
  type: dict
log_file:
  description: The site's log file.
  returned: site
  type: str
network_tables:
  description: The network tables' record after the update.
  returned: network
  type: dict
lock_released:
  description: Whether finishing released the target's lock.
  returned: finish
  type: bool
migrations:
  description:
    - Every migration, oldest first - C(id), C(source_env), C(target_env), C(pair), C(status),
      C(effective_status) (C(interrupted) for a running one whose run is gone), C(started), C(updated),
      C(progress) (completed/total), C(completed), C(total), C(failures) (failed and timed out), C(resumable)
      and C(error) (why its state cannot be read, else null).
  returned: list
  type: list
  elements: dict
table:
  description: The migrations as lines of a fixed-width text table.
  returned: list
  type: list
  elements: str
failed_sites:
  description: Records (with C(id)) of the failed and timed-out sites, in migration order.
  returned: status
  type: list
  elements: dict
durations:
  description: C(count), C(total), C(average), C(min), C(max) seconds of the completed sites, and the five C(slowest).
  returned: status
  type: dict
rollback:
  description: The rollback recorded - C(at), C(holder), C(sites), C(network_tables), C(failed_sites), C(error).
  returned: rollback
  type: dict
media:
  description:
    - O(action=validate) - whether the run syncs each site's media after its tables (a bool) - the C(media) option
      (C(auto) - when both environments define C(media)) against the two environments' settings.
    - O(action=status) - what the sites' media syncs recorded, summed (a mapping) - C(sites), C(copied) objects,
      C(bytes), C(deleted) objects; null when no site synced media.
  returned: validate, status
  type: raw
resume_command:
  description: The command that resumes the migration.
  returned: status
  type: str
report:
  description: A readable report of the migration, as lines.
  returned: status
  type: list
  elements: str
lock:
  description:
    - The lock - C(pid), C(host), C(start_time), C(boot_id), C(pid_namespace), C(awx_job_id) and
      C(awx_workflow_job_id) when given, C(migration_id), C(target_env) (the lock's name), C(started).
    - With O(action=status), the target's current lock (null when none) with C(liveness) - C(self), C(alive),
      C(dead), C(unknown) or C(damaged).
  returned: lock, status
  type: dict
lock_name:
  description: The name of the lock (O(target_env)), to release it with O(action=unlock).
  returned: lock, unlock
  type: str
lock_file:
  description: Path of the lock file.
  returned: lock, unlock
  type: str
already_held:
  description: Whether this playbook run already held the lock (or the claim).
  returned: lock, claim
  type: bool
stale_lock_taken_over:
  description: Whether a lock of another run was replaced (its holder gone or, with O(force), any).
  returned: lock
  type: bool
forced:
  description: Whether O(force) overrode a holder that was not provably gone (alive, unknown or unreadable).
  returned: lock, unlock
  type: bool
previous_holder:
  description: The lock or claim that was replaced or removed, with C(liveness) as in RV(lock).
  returned: lock, unlock, claim, release
  type: dict
released:
  description: Whether a lock (or, for O(action=release), a claim) was removed.
  returned: unlock, release
  type: bool
holder:
  description: The lock (or the state's holder) that blocked the task, with C(liveness).
  returned: failure because the target is locked or the migration is held by a live run
  type: dict
decision:
  description:
    - What the run does next - C(action) (V(continue), V(check_health), V(wait_health) - another worker of the
      run is checking, follow its verdict -, V(ask) or V(stop)), C(status) of a stop (aborted, paused), C(trigger),
      C(reason) and C(stop).
  returned: site with status failed or timeout, decide
  type: dict
  sample: {"action": "check_health", "trigger": "systemic", "reason": "a systemic failure", "status": null,
           "stop": false}
options:
  description: The run options this run gives, normalized (validate), or the options the plan used (plan).
  returned: validate, plan
  type: dict
effective:
  description: The options the run runs with - defaults, then the resumed migration's, then this run's.
  returned: validate
  type: dict
filters:
  description: The include_sites/exclude_sites of a resumed run, to hand to O(action=plan).
  returned: validate
  type: dict
migration_lock:
  description: The name of the lock of the migration database, which runs sharing it take.
  returned: validate
  type: str
queue:
  description: The site ids this run migrates, in order.
  returned: plan
  type: list
  elements: int
limits:
  description: Seconds each queued site may take, keyed by site id.
  returned: plan
  type: dict
phases_done:
  description:
    - The queued sites that an earlier attempt took part of the way, keyed by site id, with the parts it finished
      (C(tables), then C(media)); the role does only what is left of them.
  returned: plan
  type: dict
  sample: {"7": ["tables"]}
check_before:
  description: The queued sites before which the periodic health check runs.
  returned: plan
  type: list
  elements: int
skip_large:
  description: Pending large sites to mark skipped (skip_large_sites).
  returned: plan
  type: list
  elements: int
run_network:
  description: Whether this run migrates the network tables.
  returned: plan
  type: bool
claimed:
  description: Whether this run holds the claim of the site now.
  returned: claim
  type: bool
claim_refused:
  description: Why the claim was refused - the live run that holds it.
  returned: claim, when refused
  type: str
dead_holder:
  description: Whether the claim was taken over from a run that is gone (the site must be cleaned and redone).
  returned: claim
  type: bool
claim_note:
  description: What to do with a site taken over from a gone run.
  returned: claim, when taken over from a gone run
  type: str
skip_reason:
  description: Why a worker's claim (O(worker=true)) was not kept - the run is stopping, or the site is done.
  returned: claim with worker, when not kept
  type: str
stopping:
  description: The stop recorded for the run (C(status), C(reason), C(at), C(by)), when a worker's claim was not
    kept for it.
  returned: claim with worker, when the run is stopping
  type: dict
plan:
  description: The plan of the claimed site for its worker - C(queue) (the site), C(limits) (its seconds),
    C(phases_done) (the parts an earlier attempt did), C(check_before) (the site, when this worker is to run the
    periodic health check before it, else empty) and C(options).
  returned: claim with worker, when kept
  type: dict
claims:
  description: The claims of the migration by site id, each its holder with C(liveness).
  returned: status
  type: dict
candidates:
  description: The nearest existing migration ids.
  returned: failure because the migration id is unknown
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
    REQUIRED_IF, USER_ERRORS, argument_spec, run_action, task_failure)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    try:
        result = run_action(module.params, check_mode=module.check_mode)
    except USER_ERRORS as exc:
        module.fail_json(**task_failure(exc, module.params))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
