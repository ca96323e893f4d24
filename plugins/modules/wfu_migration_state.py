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
  - "Locks: O(action=lock) creates C(locks/<target_env>.lock) exclusively, recording the ansible-playbook process
    that holds it (pid, host, process start time, boot id) and the migration id. A lock whose holder is gone from
    this host (or whose pid now belongs to another process, or which predates a reboot) is stale and taken over;
    a lock held by a live process is never taken; a lock from another host (or without a pid) needs O(force=true)."
author:
  - WFU Web Platform Team (@wfu)
options:
  action:
    description:
      - V(create) starts a migration from O(source_env) to O(target_env) with id
        C(<source>-to-<target>-<UTC YYYY-MM-DDTHH-MM-SS>) (a C(-2), C(-3)... suffix when that id exists), status
        C(running). O(options), O(sites), O(site_info) and O(network_tables) are recorded.
      - V(load) resumes O(migration_id) (an id or V(latest), the newest migration not completed, limited to
        O(source_env)/O(target_env) when given). Saved options are the base and O(options) override them;
        the status goes back to C(running) (a completed migration stays completed); sites found C(in_progress)
        are set back to C(pending) (attempts kept) and returned in RV(interrupted).
      - V(set_sites) records the sites in migration order; sites not yet known are added as C(pending),
        known sites keep their record.
      - V(site) records a status change of one site (O(site_id), O(status), O(error), O(phase), O(failure_class),
        O(details)) and appends it to C(logs/site-<N>.log).
      - V(network) records a status change of the network tables.
      - V(finish) sets the final O(status) and O(reason), and releases the target's lock if this migration holds it.
      - V(list) returns every migration with its progress, and a text table.
      - V(status) returns one migration in detail (O(migration_id), default V(latest), which here is the newest
        migration whatever its status).
      - V(lock) takes the lock of O(target_env) for this playbook run; V(unlock) releases it.
    type: str
    required: true
    choices: [create, load, set_sites, site, network, finish, list, status, lock, unlock]
  state_dir:
    description: Directory of the migration states (C(wfu_state_dir)).
    type: path
    default: ~/.wfuwp/migrations
  migration_id:
    description:
      - The migration, for O(action=load), O(action=set_sites), O(action=site), O(action=network),
        O(action=finish) and O(action=status); V(latest) is accepted by O(action=load) and O(action=status).
      - With O(action=lock) it names the migration in the lock; with O(action=unlock) the lock is released when it
        names this migration.
    type: str
  source_env:
    description:
      - The source environment, required by O(action=create).
      - With O(action=load) and O(action=status) it narrows V(latest) and must match the migration.
    type: str
  target_env:
    description:
      - The target environment, required by O(action=create), O(action=lock) and O(action=unlock).
      - With O(action=load) and O(action=status) it narrows V(latest) and must match the migration.
    type: str
  options:
    description:
      - The playbook options of the run (O(action=create)), saved to C(options.json); or, with O(action=load),
        the options that override the saved ones (keys whose value is null are ignored).
      - Keys that name a password or secret are left out at any depth.
    type: dict
  sites:
    description: Site ids in migration order (O(action=create), O(action=set_sites)).
    type: list
    elements: int
  site_info:
    description:
      - Details of the sites (O(action=create), O(action=set_sites)) - the RV(wfu.multisite.wfu_sites_info#module:sites) list returned by
        M(wfu.multisite.wfu_sites_info) (mappings with C(id)), or a mapping of site id to a mapping.
      - The keys C(bytes), C(large), C(domain) and C(path) are kept in each site's record; others are ignored.
      - Without O(sites), the order of a list gives the migration order.
    type: raw
  network_tables:
    description:
      - Whether the network tables are migrated - V(true), V(false) or V(only) (O(action=create)). When not given,
        C(options.network_tables) decides, else V(true). V(false) marks them C(skipped).
    type: raw
  site_id:
    description: The site whose status changes (O(action=site)).
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
      - O(action=lock) - take over a lock whose holder cannot be checked from here (another host, or no pid recorded).
        A lock held by a live process on this host is never taken.
      - O(action=unlock) - remove the lock whoever holds it.
    type: bool
    default: false
notes:
  - "Site and network updates (O(action=site), O(action=network)) return small results and no facts; V(create),
    V(load), V(set_sites), V(finish) and V(status) return the summary as the C(wfu_migration) fact."
  - "Run the state tasks on the controller (C(delegate_to: localhost)) - the action plugin then avoids a module
    process per call, and the lock can check the ansible-playbook process that holds it."
  - Resuming a migration that another live run is working on (it holds the target's lock) fails.
seealso:
  - module: wfu.multisite.wfu_site_migrate
  - module: wfu.multisite.wfu_migration_cleanup
extends_documentation_fragment:
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
    support: full
  idempotent:
    description: When run twice with the same arguments, the second run reports no change.
    support: partial
    details:
      - V(load), V(set_sites), V(network), V(finish), V(list), V(status), V(lock) and V(unlock) are idempotent.
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
    migration_id: "{{ wfu_migration.id }}"
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
    migration_id: "{{ wfu_migration.id }}"
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
  description: Summary of the migration (also set as the C(wfu_migration) fact).
  returned: create, load, set_sites, finish, status
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
      description: C(running), C(paused), C(failed), C(aborted) or C(completed).
      type: str
    reason:
      description: The reason given at finish.
      type: str
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
added:
  description: Site ids that were new to the migration.
  returned: set_sites
  type: list
  elements: int
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
    - Every migration, oldest first - C(id), C(source_env), C(target_env), C(pair), C(status), C(started),
      C(updated), C(progress) (completed/total), C(completed), C(total), C(failures) (failed and timed out),
      C(resumable) and C(error) (why its state cannot be read, else null).
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
    - The lock - C(pid), C(host), C(start_time), C(boot_id), C(migration_id), C(target_env), C(started).
    - With O(action=status), the target's current lock (null when none) with C(holder) - C(self), C(alive),
      C(dead) or C(unknown).
  returned: lock, status
  type: dict
lock_file:
  description: Path of the lock file.
  returned: lock, unlock
  type: str
already_held:
  description: Whether this playbook run already held the lock.
  returned: lock
  type: bool
stale_lock_taken_over:
  description: Whether a stale lock (or, with O(force), one that could not be checked) was replaced.
  returned: lock
  type: bool
previous_holder:
  description: The lock that was replaced or removed.
  returned: lock, unlock
  type: dict
released:
  description: Whether a lock was removed.
  returned: unlock
  type: bool
holder:
  description: The lock that blocked the task.
  returned: failure because the target is locked
  type: dict
candidates:
  description: The nearest existing migration ids.
  returned: failure because the migration id is unknown
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.wfu.multisite.plugins.module_utils.state import (
    REQUIRED_IF, StateError, argument_spec, run_action)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    try:
        result = run_action(module.params, check_mode=module.check_mode)
    except StateError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    except OSError as exc:
        module.fail_json(msg="cannot use the state directory %s: %s" % (module.params["state_dir"], exc))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
