#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_site_rollback
short_description: Put back the tables a migration replaced in one site (or the network tables) of the target
version_added: 0.1.0
description:
  - Restores the backup that M(wfu.multisite.wfu_site_migrate) or M(wfu.multisite.wfu_network_migrate) wrote with
    O(backup_dir) and O(backup_name) before its swap - C(<backup_dir>/<backup_name>/site-<N>.sql.gz) and its
    manifest C(site-<N>.json) (C(network.*) for the network tables). The first backup of a site under that name
    that has a manifest is restored; later ones (C(site-<N>-2.*)) are kept for inspection.
  - Before anything is changed the backup is checked - the manifest is there and is of this site, this migration,
    this target database and table prefix; the dump has the manifest's size and SHA-256, decompresses to its end
    (gzip CRC and length), holds exactly the manifest's tables and their row counts. A missing, truncated, damaged
    or foreign backup is refused with a message naming the file.
  - The dump is loaded into the target under staging names (C(wfu_stage__*)), the row counts are verified, and one
    C(RENAME TABLE) statement moves the live tables aside (C(wfu_old__*)), the staged ones in, and the tables the
    migration added (not in the target before) aside too; the C(wfu_old__*) tables are then dropped. When the call
    fails before the swap, the staging tables are dropped and the target is as it was.
  - A site that was new to the target (it had no tables there) is removed again - its tables dropped and its
    C(wp_blogs) row deleted.
  - While it works, the call holds the same server-side lock (on the target's server and on the migration
    database's) as a migration of that site, so no migration writes the site at the same time.
  - In check mode nothing is changed; the backup is checked and the plan returned.
author:
  - WFU Web Platform Team (@wfu)
options:
  site_id:
    description: The blog id of the site to roll back, or V(network) for the network tables.
    type: str
    required: true
  backup_dir:
    description: The directory the migration wrote its backups to (its O(backup_dir)).
    type: path
    required: true
  backup_name:
    description: The name of the migration's backups (its O(backup_name), the migration id).
    type: str
    required: true
  backup_s3:
    description:
      - The bucket the migration also uploaded its backups to (its O(wfu.multisite.wfu_site_migrate#module:backup_s3)),
        C(s3://bucket/prefix) or a mapping with C(bucket), C(prefix), C(region), C(endpoint_url).
      - When O(backup_dir) lacks the backup (another controller wrote it, or a throwaway container), its manifest
        and dump are downloaded from the bucket into O(backup_dir) first; the same checks then apply. Credentials
        come from boto3's default chain only.
    type: raw
  work_dir:
    description: Directory for the client program's error output (default the system temp directory).
    type: path
  timeout:
    description:
      - Seconds after which the call gives up, stops its statements, drops its staging tables and fails; 0 means no
        limit. Set it below the task's C(timeout) keyword.
    type: int
    default: 0
  lock_wait:
    description: Seconds to wait for the server-side lock of the site when another run holds it.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    details: The backup is verified and the plan returned; nothing is changed.
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    support: none
    details: Every run loads the backup again; the result is the same, but the call reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - wfu.multisite.connection
  - wfu.multisite.connection.target_environment
  - wfu.multisite.connection.migration_db
seealso:
  - module: wfu.multisite.wfu_site_migrate
"""

EXAMPLES = r"""
- name: Roll back site 43 of migration dev-to-uat-2026-11-24T02-52-55
  wfu.multisite.wfu_site_rollback:
    site_id: "43"
    target: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
    migration_db: "{{ wfu_migration_db }}"
    backup_dir: /var/backups/wfu
    backup_name: dev-to-uat-2026-11-24T02-52-55
    timeout: 1800
  timeout: 1860

- name: Roll back the network tables
  wfu.multisite.wfu_site_rollback:
    site_id: network
    target: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
    migration_db: "{{ wfu_migration_db }}"
    backup_dir: /var/backups/wfu
    backup_name: dev-to-uat-2026-11-24T02-52-55
"""

RETURN = r"""
site_id:
  description: The site rolled back (an int), or C(network).
  returned: always
  type: raw
restored:
  description: The tables put back, with their row counts.
  returned: success
  type: dict
  sample: {"wp_43_options": 212, "wp_43_posts": 1043}
dropped:
  description: The tables the migration had added (not in the target before), now dropped.
  returned: success
  type: list
  elements: str
missing:
  description: Tables the site had before the migration that neither the target nor the backup has now.
  returned: success
  type: list
  elements: str
blog_row_deleted:
  description: Whether the site's C(wp_blogs) row was deleted (a site new to the target).
  returned: success
  type: bool
new_to_target:
  description: Whether the site had no tables in the target before the migration.
  returned: success
  type: bool
backup:
  description:
    - The backup used - C(file), C(manifest), C(size), C(sha256), C(created), C(target_env), and
      C(fetched_from_s3) (the keys downloaded from O(backup_s3), empty when O(backup_dir) had the backup).
  returned: success
  type: dict
locks:
  description: Names of the server-side locks held (target's server, then migration's).
  returned: success
  type: list
  elements: str
durations:
  description: Seconds spent in each phase (verify_backup, connect, lock, clean, load, verify, swap, cleanup).
  returned: always
  type: dict
plan:
  description:
    - In check mode, what would be done - C(restore) (rows by table), C(replace) (live tables put aside),
      C(drop), C(missing), C(delete_blog_row), C(new_to_target).
  returned: check mode
  type: dict
failure_class:
  description: On failure, C(systemic) or C(site); a backup that cannot be used is C(site) with reason C(verification).
  returned: failure
  type: str
reason:
  description: On failure, why, for example C(verification), C(site_in_use), C(connection) or C(timeout).
  returned: failure
  type: str
phase:
  description: On failure, the phase that failed (C(verify_backup) for a refused backup).
  returned: failure
  type: str
timed_out:
  description: On failure, whether the call ran out of O(timeout).
  returned: failure
  type: bool
cleanup:
  description: On failure, what was undone or dropped.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR, ConfigError, db_option)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError, failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint
from ansible_collections.wfu.multisite.plugins.module_utils.processes import find_playbook_pid
from ansible_collections.wfu.multisite.plugins.module_utils.rollback import Rollback
from ansible_collections.wfu.multisite.plugins.module_utils.spec import environment_option


def main():
    module = AnsibleModule(argument_spec=dict(
        site_id=dict(type="str", required=True),
        target=environment_option(),
        migration_db=db_option(required=True),
        backup_dir=dict(type="path", required=True),
        backup_name=dict(type="str", required=True),
        backup_s3=dict(type="raw"),
        work_dir=dict(type="path"),
        timeout=dict(type="int", default=0),
        lock_wait=dict(type="int", default=60),
    ), supports_check_mode=True)
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    params = module.params
    try:
        rollback = Rollback(Endpoint(params["target"]), params["migration_db"], params["backup_dir"],
                            params["backup_name"], params["site_id"],
                            options={"lock_wait": params["lock_wait"], "work_dir": params["work_dir"],
                                     "backup_s3": params["backup_s3"]},
                            check_mode=module.check_mode)
        result = rollback.run(timeout=params["timeout"], watch_pid=find_playbook_pid())
    except ConfigError as exc:
        module.fail_json(msg=str(exc), failure_class="config", site_id=params["site_id"])
    except MigrationError as exc:
        report = failure_result(exc)
        report.update(site_id=params["site_id"], cleanup=getattr(exc, "cleanup", []),
                      durations=getattr(exc, "durations", {}), timed_out=getattr(exc, "timed_out", False))
        module.fail_json(**report)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
