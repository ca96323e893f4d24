#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_migration_cleanup
short_description: Drop leftover migration tables of one site, of the network, or of everything
version_added: 0.1.0
description:
  - For one site (or the network), drops the work tables a migration left in the migration database (C(m<N>__*)
    for site N, C(mnet__*) for the network tables) and, when O(target) is given, the staging (C(wfu_stage__*)) and
    replaced (C(wfu_old__*)) tables left in the target database. A replaced table whose live table is missing is
    renamed back instead.
  - Without O(site_id), empties the migration database of everything no live run owns (every table and view, also
    tables other tools left there) and drops every staging and replaced table in the target.
  - Never touches C(wfu_state_*) tables (the migration state store's), nor the tables of a site whose server-side
    lock a live connection holds (a run is migrating it now); those are reported in RV(in_use).
  - Running it twice changes nothing the second time.
  - Refuses to run when the migration database is also the database of an environment listed in
    O(protected_databases), and refuses a full sweep of a database that holds a WordPress network's own tables.
author:
  - WFU Web Platform Team (@wfu)
options:
  site_id:
    description:
      - A site id to clean only that site's tables, or C(network) for the network tables' leftovers.
      - Omit it to sweep every leftover.
    type: str
  target_prefix:
    description: The target's table prefix (decides which site a staging table belongs to).
    type: str
    default: wp_
  protected_names:
    description: Names of the O(protected_databases), in the same order, for error messages (when they have no C(name)).
    type: list
    elements: str
    default: []
  keep_backup_tables:
    description: Keep C(wfu_old__*) tables (previous versions of swapped tables) in the target.
    type: bool
    default: false
  target_env:
    description:
      - The name of the target's environment, for messages, and the environment whose backups O(keep_backups) prunes.
    type: str
  backup_dir:
    description: The directory of the migrations' backups (the run option C(backup_dir)), for O(keep_backups).
    type: path
  keep_backups:
    description:
      - Keep the backups of the newest this many migrations into O(target_env) in O(backup_dir) and remove the older
        ones (C(<backup_dir>/<migration id>/) with its dumps and manifests). A migration counts from when it first
        replaced something (its earliest manifest). A directory that holds anything but backup files is left whole.
      - Omit it to remove no backup. Needs O(target_env) and O(backup_dir) or O(backup_s3) (both are pruned when
        both are given). In check mode nothing is removed and RV(backups) / RV(backups_s3) say what would be.
    type: int
  backup_s3:
    description:
      - The bucket the migrations also uploaded their backups to (run option C(backup_s3)), C(s3://bucket/prefix)
        or a mapping with C(bucket), C(prefix), C(region), C(endpoint_url); O(keep_backups) prunes it the same way.
        Credentials come from boto3's default chain only.
    type: raw
  timeout:
    description:
      - Seconds the whole cleanup may take; every connection and statement is bounded by it, so a server that does
        not answer cannot block the call. When it runs out, the call fails naming the database that did not answer.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    support: full
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - wfu.multisite.connection
  - wfu.multisite.connection.migration_db
  - wfu.multisite.connection.cleanup
"""

EXAMPLES = r"""
- name: Drop what a failed attempt at site 43 left behind
  wfu.multisite.wfu_migration_cleanup:
    migration_db: "{{ wfu_migration_db }}"
    target: "{{ wfu_environments.uat.db }}"
    site_id: "43"
    protected_databases: "{{ wfu_environments.values() | map(attribute='db') | list }}"
    protected_names: "{{ wfu_environments.keys() | list }}"

- name: See what a full sweep would drop
  wfu.multisite.wfu_migration_cleanup:
    migration_db: "{{ wfu_migration_db }}"
    protected_databases: "{{ wfu_environments.values() | map(attribute='db') | list }}"
    protected_names: "{{ wfu_environments.keys() | list }}"
  check_mode: true
  register: sweep
"""

RETURN = r"""
migration_db:
  description: Tables dropped (or, in check mode, that would be dropped) from the migration database.
  returned: always
  type: list
  elements: str
  sample: ["m43__wp_43_options", "m43__wp_43_posts"]
target:
  description: Staging and replaced tables dropped from the target database.
  returned: always
  type: list
  elements: str
  sample: ["wfu_stage__wp_43_posts"]
restored:
  description:
    - Replaced tables (C(wfu_old__X)) renamed back to C(X) because the live table C(X) was missing, so that the
      only copy of a site's previous tables is never dropped.
  returned: always
  type: list
  elements: str
in_use:
  description: Tables left alone because a live connection holds their site's lock.
  returned: always
  type: list
  elements: dict
  contains:
    site_id:
      description: The site id, or C(network).
      type: raw
    database:
      description: The database the tables are in.
      type: str
    tables:
      description: The tables left.
      type: list
      elements: str
    holder:
      description: The connection that holds the lock (id, user, host).
      type: str
backups_s3:
  description: With O(keep_backups) and O(backup_s3), the same as RV(backups) for the bucket.
  returned: when keep_backups and backup_s3 are given
  type: dict
backups:
  description: With O(keep_backups) and O(backup_dir), the backup sets of O(target_env) by name.
  returned: when keep_backups and backup_dir are given
  type: dict
  contains:
    kept:
      description: The newest O(keep_backups) sets, kept.
      type: list
      elements: str
    removed:
      description: The older sets, removed (in check mode, the ones that would be).
      type: list
      elements: str
    left:
      description: Older sets left whole because their directory holds files that are not backups.
      type: list
      elements: str
    bytes_removed:
      description: The bytes of the removed sets.
      type: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.cleanup import sweep_within
from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR, ConfigError, Database, db_option)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.rollback import prune_backups
from ansible_collections.wfu.multisite.plugins.module_utils.spec import protected_databases_option


def prune(params, check_mode):
    """``keep_backups`` applied to ``backup_dir`` and ``backup_s3``: the ``backups``/``backups_s3`` results."""
    if not ((params["backup_dir"] or params["backup_s3"]) and params["target_env"]):
        raise ConfigError("keep_backups needs target_env and backup_dir (or backup_s3): the retention keeps the "
                          "newest backups of one target environment")
    pruned = {}
    if params["backup_dir"]:
        pruned["backups"] = prune_backups(params["backup_dir"], params["target_env"], params["keep_backups"],
                                          check_mode=check_mode)
    if params["backup_s3"]:
        # Imported only here: boto3 is slow to import, and the rescue of every failed site runs this module.
        from ansible_collections.wfu.multisite.plugins.module_utils import backup_s3

        pruned["backups_s3"] = backup_s3.prune_backups(backup_s3.backup_location(params["backup_s3"]),
                                                       params["target_env"], params["keep_backups"],
                                                       check_mode=check_mode)
    return pruned


def main():
    module = AnsibleModule(
        argument_spec=dict(
            migration_db=db_option(required=True),
            site_id=dict(type="str"),
            target=db_option(),
            target_prefix=dict(type="str", default="wp_"),
            target_env=dict(type="str"),
            protected_databases=protected_databases_option(),
            protected_names=dict(type="list", elements="str", default=[]),
            keep_backup_tables=dict(type="bool", default=False),
            backup_dir=dict(type="path"),
            keep_backups=dict(type="int"),
            backup_s3=dict(type="raw"),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    params = module.params
    nothing = dict(migration_db=[], target=[], restored=[], in_use=[])
    site_id = params["site_id"]
    try:
        names = params["protected_names"]
        protected = {db.get("name") or (names[index] if index < len(names) else "#%d" % (index + 1)):
                     Database.from_params(db) for index, db in enumerate(params["protected_databases"])}
        target = params["target"] and Database.from_params(params["target"], role="target", env=params["target_env"])
        result = sweep_within(params["timeout"], Database.from_params(params["migration_db"], role="migration"),
                              protected=protected, site_id=None if site_id in (None, "", "all") else site_id,
                              target=target or None, target_prefix=params["target_prefix"],
                              keep_backup_tables=params["keep_backup_tables"], check_mode=module.check_mode)
        if params["keep_backups"] is not None:
            result.update(prune(params, module.check_mode))
            result["changed"] = bool(result.get("changed")) or any(
                result.get(key, {}).get("removed") for key in ("backups", "backups_s3"))
    except ConfigError as exc:
        module.fail_json(msg=str(exc), failure_class="config", **nothing)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(**dict(nothing, **failure_result(exc, phase="cleanup", site_id=site_id)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
